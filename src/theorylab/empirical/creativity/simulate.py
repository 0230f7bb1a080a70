r"""Simulated within-subject creativity studies in embedding space, calibrated to a paper's
reported means, and their analysis by the same paired tests.

Participant :math:`i` writes :math:`L` ideas for each of :math:`m` prompts in each condition
:math:`c \in \{\text{ctrl}, \text{llm}\}` (prompts nested in conditions). In :math:`\mathbb R^d`
an idea is the unit vector along

.. math:: x_{ick\ell} = c_k + \tau_{ic}\, w_{ick} + \sigma_{ic}\, e_{ick\ell},

with prompt centres :math:`c_k = \sqrt\rho\, g + \sqrt{1-\rho}\, h_k` (:math:`g, h_k`
orthonormal: prompts share the direction :math:`g`, cosine :math:`\rho`), a participant's own
angle on the prompt :math:`w_{ick}` and idea noise :math:`e_{ick\ell}`, both
:math:`N(0, I_d/d)`. Homogenization = a smaller spread :math:`\tau` of the participants' angles.
Participants differ: participant :math:`i`'s own level in condition :math:`c` is
:math:`G_{ic} = G_c + \psi z_{ic}`, clipped to the feasible range, with
:math:`z_{ic} = \sqrt r\, z_i + \sqrt{1-r}\, z'_{ic}` standard normal (correlated :math:`r`
across conditions), and :math:`\tau_{ic}` solved from :math:`1 - 1/N_{ic}^2 = G_{ic}`.

**Calibration** (large :math:`d`, where the random parts are orthogonal and
:math:`N^2 = 1 + \tau^2 + \sigma^2` is the squared norm): a participant's pairs of ideas are for
the same prompt with share :math:`q = (L-1)/(mL-1)`, so their individual-level dissimilarity is
:math:`I = 1 - [q(1 + \tau^2) + (1-q)\rho]/N^2`; :math:`\sigma_{ic}` is solved from it so that
every participant has the same :math:`I` in both conditions (no individual-level effect:
:math:`N^2 = [q(1 + \tau^2) + (1-q)\rho]/(1 - I)`). The group-level dissimilarity of ideas of
two participants is :math:`1 - 1/(N_i N_j)`, so :math:`N^2 = 1/(1 - G)`,
:math:`\tau^2 = [(1 - I) N^2 - q - (1-q)\rho]/q` and :math:`\sigma^2 = N^2 - 1 - \tau^2`
(feasible while both are :math:`\ge 0`). :func:`calibrate_psi` sets the heterogeneity
:math:`\psi` so that a large simulated study's :math:`d_z` equals the paper's, and
:func:`calibrate_study` re-centres the :math:`G_c` on the simulated means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from theorylab.errors import ConfigError

__all__ = ["SimParams", "calibrate", "simulate_embeddings", "fast_scores", "to_ideas",
           "simulate_scores", "paired_t", "calibrate_psi", "calibrate_study", "group_jackknife",
           "mean_scores"]

CONDITIONS = ("ctrl", "llm")


@dataclass(frozen=True)
class SimParams:
    r"""Generative parameters: per condition (ctrl, llm) the centre ``group`` of the
    participants' group-level levels :math:`G_c`; the common individual-level dissimilarity;
    prompt overlap :math:`\rho`; design; heterogeneity :math:`\psi` and its correlation r."""

    group: tuple[float, float]
    individual: float
    rho: float
    n_prompts: int = 3
    n_ideas: int = 8
    dim: int = 256
    psi: float = 0.0
    r: float = 0.2

    @property
    def q(self) -> float:
        return (self.n_ideas - 1) / (self.n_prompts * self.n_ideas - 1)

    def tau2_sigma2(self, g):
        r"""(:math:`\tau^2`, :math:`\sigma^2`) of group level ``g`` (arrays)."""
        n2 = 1 / (1 - np.asarray(g, float))
        tau2 = ((1 - self.individual) * n2 - self.q - (1 - self.q) * self.rho) / self.q
        return tau2, n2 - 1 - tau2

    def feasible(self) -> tuple[float, float]:
        r"""The range of group levels G with :math:`\tau^2, \sigma^2 \ge 0`."""
        a = (self.q + (1 - self.q) * self.rho) / (1 - self.individual)  # N^2 at tau^2 = 0
        lo = 1 - 1 / max(a, 1.0)
        slack = (1 - self.individual) - self.q  # sigma^2 >= 0 <=> N^2 slack <= (1-q) rho
        hi = 1 - slack / ((1 - self.q) * self.rho) if slack > 0 else 1.0
        return lo, hi

    def null(self) -> SimParams:
        """The same model without an effect: both conditions use the control's parameters."""
        return replace(self, group=(self.group[0],) * 2)


def calibrate(group: tuple[float, float], individual: float, rho: float, n_prompts: int = 3,
              n_ideas: int = 8, **kw) -> SimParams:
    """:class:`SimParams` for targets ``group`` = (ctrl, llm) and ``individual``; targets outside
    the feasible range are a one-line :class:`ConfigError`."""
    p = SimParams(tuple(float(g) for g in group), individual, rho, n_prompts, n_ideas, **kw)
    lo, hi = p.feasible()
    for g in group:
        if not lo < g < hi:
            raise ConfigError(f"target group={g} is infeasible with individual={individual}, "
                              f"rho={rho}, {n_prompts} prompts x {n_ideas} ideas: the range is "
                              f"({lo:.3g}, {hi:.3g}); change rho.")
    return p


def simulate_embeddings(p: SimParams, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit idea vectors, shape (n, 2, m, L, d): participant, condition, prompt, idea, dim."""
    m, L, d = p.n_prompts, p.n_ideas, p.dim
    if d < 1 + 2 * m:
        raise ConfigError(f"'dim' must be >= 1 + 2 x n_prompts = {1 + 2 * m}. Got {d}.")
    basis = np.linalg.qr(rng.standard_normal((d, 1 + 2 * m)))[0].T  # g, then h per (c, k)
    centres = (math.sqrt(p.rho) * basis[0] + math.sqrt(1 - p.rho) * basis[1:]).reshape(2, m, d)
    z = (math.sqrt(p.r) * rng.standard_normal(n)[:, None]
         + math.sqrt(1 - p.r) * rng.standard_normal((n, 2)))
    lo, hi = p.feasible()
    g = np.clip(np.asarray(p.group)[None, :] + p.psi * z, lo, hi)
    tau2, sigma2 = p.tau2_sigma2(g)
    tau = np.sqrt(np.maximum(tau2, 0))[:, :, None, None, None]
    sigma = np.sqrt(np.maximum(sigma2, 0))[:, :, None, None, None]
    w = rng.standard_normal((n, 2, m, 1, d)) / math.sqrt(d)
    e = rng.standard_normal((n, 2, m, L, d)) / math.sqrt(d)
    X = centres[None, :, :, None, :] + tau * w + sigma * e
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def fast_scores(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Participant-level group and individual dissimilarity (scope "condition"), shape (n, 2)
    each, of embeddings shaped as :func:`simulate_embeddings` returns (equal to
    :func:`~theorylab.empirical.creativity.metrics.participant_scores`, vectorised)."""
    n, C, m, L, _ = X.shape
    # group: sum over all ideas of the prompt minus the participant's own, per idea
    total = X.sum(axis=(0, 3))                                  # (C, m, d)
    own = X.sum(axis=3)                                         # (n, C, m, d)
    dots_other = np.einsum("icmld,icmd->icml", X, total[None] - own)
    group = (1 - dots_other / ((n - 1) * L)).mean(axis=(2, 3))
    # individual: all of the participant's other ideas in the condition
    allown = X.sum(axis=(2, 3))                                 # (n, C, d)
    dots_own = np.einsum("icmld,icd->icml", X, allown) - 1.0    # minus the idea itself
    individual = (1 - dots_own / (m * L - 1)).mean(axis=(2, 3))
    return group, individual


def group_jackknife(X: np.ndarray) -> tuple[float, float, float]:
    r"""Jackknife (SE, t, p) of the mean group-level difference llm − ctrl of a balanced study
    (shape as :func:`simulate_embeddings`), in closed form: with :math:`S_{ik}` the sum of
    participant :math:`i`'s idea vectors for prompt :math:`k`, the mean dissimilarity of
    :math:`i`'s and :math:`j`'s ideas is :math:`M_{ij} = 1 - \sum_k S_{ik}^\top S_{jk}/(mL^2)`,
    :math:`G_i = \sum_{j \ne i} M_{ij}/(n-1)`; for :math:`A = M^{llm} - M^{ctrl}` (zero
    diagonal) with total :math:`T`, row and column sums :math:`r_k, c_k`:
    :math:`\hat\theta_{(-k)} = (T - r_k - c_k)/((n-1)(n-2))`."""
    from theorylab.empirical.creativity.metrics import jackknife_t
    n, C, m, L, _ = X.shape
    S = X.sum(axis=3)                                            # (n, C, m, d)
    M = 1 - np.einsum("icmd,jcmd->cij", S, S) / (m * L * L)
    A = M[1] - M[0]
    np.fill_diagonal(A, 0.0)
    total = A.sum()
    theta = total / (n * (n - 1))
    loo = (total - A.sum(1) - A.sum(0)) / ((n - 1) * (n - 2))
    return jackknife_t(theta, loo)


def to_ideas(X: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The simulated study as an ideas table (placeholder texts) and its (N, d) embeddings."""
    n, C, m, L, d = X.shape
    idx = np.indices((n, C, m, L)).reshape(4, -1).T
    df = pd.DataFrame({"participant": [f"P{i}" for i in idx[:, 0]],
                       "condition": [CONDITIONS[c] for c in idx[:, 1]],
                       "prompt": [f"{CONDITIONS[c]}-{k}" for c, k in idx[:, 1:3]],
                       "idea": ["idea"] * len(idx)})
    return df, X.reshape(-1, d)


def paired_t(x_ctrl: np.ndarray, x_llm: np.ndarray) -> tuple[float, float, float]:
    """(t, two-sided p, d_z) of llm − ctrl (``scipy.stats.ttest_rel``)."""
    from scipy import stats
    res = stats.ttest_rel(x_llm, x_ctrl)
    diff = x_llm - x_ctrl
    return float(res.statistic), float(res.pvalue), float(diff.mean() / diff.std(ddof=1))


def simulate_scores(p: SimParams, n: int, rng: np.random.Generator) -> dict:
    """One simulated study's paired tests: group and individual means, t, p, d_z."""
    X = simulate_embeddings(p, n, rng)
    g, h = fast_scores(X)
    se, t, pv = group_jackknife(X)
    out = {"group_jk_se": se, "group_jk_t": t, "group_jk_p": pv}
    for name, s in (("group", g), ("individual", h)):
        t, pv, dz = paired_t(s[:, 0], s[:, 1])
        out.update({f"{name}_ctrl": float(s[:, 0].mean()), f"{name}_llm": float(s[:, 1].mean()),
                    f"{name}_diff": float((s[:, 1] - s[:, 0]).mean()), f"{name}_t": t,
                    f"{name}_p": pv, f"{name}_dz": dz})
    return out


def calibrate_psi(p: SimParams, d_z: float, rng: np.random.Generator, n: int = 500,
                  k: int = 4, lo: float = 0.0, hi: float = 0.3, iters: int = 8) -> SimParams:
    r"""Bisection on :math:`\psi` so that the group-level :math:`d_z`, averaged over ``k``
    simulated studies of ``n`` participants (common random numbers), equals ``d_z`` (a negative
    number: llm − ctrl); :math:`|d_z|` falls as :math:`\psi` grows."""
    seeds = rng.integers(2**63, size=k)

    def dz(psi: float) -> float:
        return float(np.mean([simulate_scores(replace(p, psi=psi), n,
                                              np.random.default_rng(int(s)))["group_dz"]
                              for s in seeds]))

    if not dz(lo) < d_z:
        raise ConfigError(f"the effect without heterogeneity (d_z={dz(lo):.3g}) is already "
                          f"weaker than the target {d_z:.3g}.")
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if dz(mid) < d_z else (lo, mid)
    return replace(p, psi=(lo + hi) / 2)


def mean_scores(p: SimParams, n: int, seeds) -> dict:
    """:func:`simulate_scores` averaged over studies seeded by ``seeds``."""
    runs = [simulate_scores(p, n, np.random.default_rng(int(s))) for s in seeds]
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}


def calibrate_study(group: tuple[float, float], individual: float, d_z: float, rho: float,
                    rng: np.random.Generator, n_cal: int = 500, k: int = 4, rounds: int = 2,
                    **kw) -> tuple[SimParams, dict]:
    """:func:`calibrate` then :func:`calibrate_psi`, repeated ``rounds`` times with the mean
    targets shifted by the simulated means' offset (clipping and mixing shift them); returns the
    parameters and the planted truth: scores averaged over ``4 k`` fresh studies of ``n_cal``."""
    tg, ti = np.array(group, float), float(individual)
    for r in range(rounds):
        p = calibrate(tuple(tg), ti, rho, **kw)
        p = calibrate_psi(p, d_z, rng, n=n_cal, k=k)
        check = mean_scores(p, n_cal, rng.integers(2**63, size=4 * k if r == rounds - 1 else k))
        tg = tg - (np.array([check["group_ctrl"], check["group_llm"]]) - np.array(group))
        ti = ti - ((check["individual_ctrl"] + check["individual_llm"]) / 2 - individual)
    return p, check
