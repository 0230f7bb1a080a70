r"""σ²/n scaling of the over-fitted least-squares estimator (Nguyen, Ho, Rinaldo, arXiv 2402.02952).

With :math:`Y_i = f_{G_*}(X_i) + \sigma\varepsilon_i`, the LSE minimises
:math:`\frac1n\sum_i (f_{G_*} - f_G)^2(X_i) + \frac{2\sigma}{n}\sum_i \varepsilon_i (f_{G_*} - f_G)(X_i)`
(plus a term free of G). For large n the first sum is :math:`\|f_{G_*} - f_G\|^2_{L^2(\mu)}` and the
second a Gaussian process in G of variance :math:`4\sigma^2/n \cdot \|f_{G_*} - f_G\|^2`, so the law of
:math:`\hat G_n` depends on (σ, n) only through :math:`\sigma^2/n`. The theorems' asymptotics are
:math:`\sigma^2/n \to 0`; the rate studies run two noise levels (σ = 1e-5 and 0.01) on the same
grid of n, which sit at different σ²/n.

:class:`MoEScalingStudy` measures the scaling on a grid of cells (i, j), i, j = 0 … steps − 1:
noise :math:`\sigma_i = \sigma_0 c^i`, size :math:`n_j = n_0 c^{2j}`, so that
:math:`\sigma_i^2 / n_j = (\sigma_0^2/n_0)\, c^{2(i-j)}`: the cells of one diagonal i − j share σ²/n.
Each cell fits ``n_reps`` independent data sets (every σ row draws its own data) with
:class:`~theorylab.simulations.moe_rates.MoERateStudy`'s unit, over-fitted (k = k* + 1).

:func:`scaling_tests` decides the claim from the table:

* **scaling pairs** (i, i) vs (0, 0), i ≥ 1: same σ²/n, two-sample Kolmogorov–Smirnov test on D1
  (``scipy.stats.ks_2samp``), Holm-adjusted over i;
* **non-scaling pairs** (i, 0) vs (0, 0): σ changed at fixed n, σ²/n changed by :math:`c^{2i}`;
  the same test, Holm-adjusted over i ≥ ``power_from`` (it must reject there: the test has power;
  smaller i are reported only);
* **far fraction** (D1 > ``far``) per σ²/n level: a χ² test of homogeneity across the cells of each
  diagonal with ≥ 2 cells (``scipy.stats.chi2_contingency``), Holm-adjusted over levels;
* the **power** of the KS test against each non-scaling change, estimated by redrawing both cells'
  samples with replacement (:func:`ks_power`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from theorylab.constraints import POSITIVE, SEED, Bool, Choice, Int, Real
from theorylab.errors import ConfigError, InputError
from theorylab.seeding import rng_for, seed_for
from theorylab.study import Study

__all__ = ["MoEScalingStudy", "scaling_tests", "ks_power", "holm"]


@dataclass(frozen=True)
class MoEScalingStudy(Study):
    """Over-fitted fits on the grid :math:`(\\sigma_0 c^i, n_0 c^{2j})`, ``n_reps`` per cell.

    Defaults: σ0 = 2.5e-5 at n0 = 100 (σ²/n = 6.25e-12) lies where the share of over-fitted sigmoid
    fits far from G* (D1 > 0.5) changes fastest with σ²/n (≈ 5 % at 1e-12, ≈ 40 % at 1e-10), so a
    change of σ²/n moves the law of D1 and the test can see it; c = 2 and 4 steps put
    n up to 6,400.
    """

    name = "moe-scaling"
    version = 1
    expert: str = "sigmoid"
    sigma0: float = 2.5e-5
    n0: int = 100
    ratio: float = 2.0                     # c: σ grows by c per row, n by c² per column
    steps: int = 4                         # rows/columns: c^0 … c^(steps-1)
    full_grid: bool = True                 # every (i, j); False: only the tested cells
    n_reps: int = 100                      # per cell
    far: float = 0.5                       # D1 above this: a fit "far" from G*
    seed: int = 0

    constraints: ClassVar = {
        "expert": Choice(("sigmoid", "tanh", "linear")),
        "sigma0": POSITIVE,
        "n0": Int(10, 10**6),
        "ratio": Real(1, lo_open=True, hi=100),
        "steps": Int(2, 8),
        "full_grid": Bool(),
        "n_reps": Int(2, 10_000),
        "far": POSITIVE,
        "seed": SEED,
    }

    def check(self):
        if self.n_of(self.steps - 1) > 10**7:
            raise ConfigError(f"the largest size n0 * ratio^(2 (steps - 1)) of MoEScalingStudy must "
                              f"be <= 10^7. Got {self.n_of(self.steps - 1)}.")

    def sigma_of(self, i: int) -> float:
        return self.sigma0 * self.ratio ** i

    def n_of(self, j: int) -> int:
        return int(round(self.n0 * self.ratio ** (2 * j)))

    def cells(self) -> list[tuple[int, int]]:
        """(i, j) of every fitted cell: the whole grid, or the diagonal and the first column."""
        m = range(self.steps)
        if self.full_grid:
            return [(i, j) for i in m for j in m]
        return sorted({(i, i) for i in m} | {(i, 0) for i in m})

    def cell_study(self, i: int, j: int):
        """The one-size :class:`MoERateStudy` of cell (i, j) (its own data seed per σ row)."""
        from theorylab.simulations.moe_rates import case_study
        return case_study(self.expert, "over").replace(
            noise_sd=self.sigma_of(i), ns=(self.n_of(j),), n_reps=self.n_reps,
            seed=seed_for(self.seed, "sigma-row", i))

    def units(self) -> list[dict]:
        cells = sorted(self.cells(), key=lambda c: -c[1])  # largest n first
        return [{"i": i, "j": j, "rep": r} for i, j in cells for r in range(self.n_reps)]

    def run_unit(self, unit: dict, ctx=None) -> dict:
        i, j = unit["i"], unit["j"]
        row = self.cell_study(i, j).run_unit({"n": self.n_of(j), "rep": unit["rep"]})
        keep = ("d1", "over_err", "l2", "obj_fit", "obj_true", "lse_found", "fit_seconds")
        return {"sigma": self.sigma_of(i), "n": self.n_of(j),
                "sigma2_over_n": self.sigma_of(i) ** 2 / self.n_of(j),
                **{k: row[k] for k in keep}}

    def quick(self) -> MoEScalingStudy:
        """CI form: c^0 … c^2 (n up to 1,600), only the tested cells, 60 replicates per cell
        (the KS test's power against a 16-fold change of σ²/n stays near 1)."""
        return self.replace(steps=3, full_grid=False, n_reps=60)


def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (``statsmodels.stats.multitest.multipletests``)."""
    from statsmodels.stats.multitest import multipletests
    p = np.asarray(pvalues, dtype=float)
    return p if p.size == 0 else multipletests(p, method="holm")[1]


def ks_power(a, b, alpha: float = 0.05, draws: int = 400, seed: int = 0) -> float:
    """Share of ``draws`` resamples (each sample redrawn with replacement at its own size) on which
    the two-sample KS test rejects at ``alpha``: the power against the difference between the laws
    that ``a`` and ``b`` estimate, at these sample sizes."""
    from scipy.stats import ks_2samp
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = rng_for(seed, "ks-power", a.size, b.size)
    hits = sum(ks_2samp(rng.choice(a, a.size), rng.choice(b, b.size)).pvalue < alpha
               for _ in range(draws))
    return hits / draws


def _cell(table, i: int, j: int) -> np.ndarray:
    x = table.loc[(table["i"] == i) & (table["j"] == j), "d1"].to_numpy(dtype=float)
    if x.size < 2:
        raise InputError(f"cell (i={i}, j={j}) of the scaling table needs >= 2 fits. Got {x.size}.")
    return x


def scaling_tests(table, far: float = 0.5, alpha: float = 0.05, power_from: int = 2) -> dict:
    """The σ²/n scaling tests on a :class:`MoEScalingStudy` table (columns i, j, d1, sigma, n).

    Returns a dict: ``scaling`` and ``nonscaling`` (one entry per pair: i, σ, n of both cells,
    KS statistic, p, Holm-adjusted p; non-scaling pairs also the resampled power), ``far_levels``
    (per σ²/n level with ≥ 2 cells: far fraction per cell, χ² p, Holm-adjusted p), and the three
    summaries ``min_p_scaling``, ``max_p_nonscaling``, ``min_p_far`` (Holm-adjusted; NaN if no test).
    """
    from scipy.stats import chi2_contingency, ks_2samp
    steps = int(table["i"].max()) + 1
    base = _cell(table, 0, 0)
    out: dict = {"alpha": alpha}
    for kind, cells in (("scaling", [(i, i) for i in range(1, steps)]),
                        ("nonscaling", [(i, 0) for i in range(1, steps)])):
        rows = []
        for i, j in cells:
            other = _cell(table, i, j)
            ks = ks_2samp(base, other)
            sub = table[(table["i"] == i) & (table["j"] == j)].iloc[0]
            rows.append({"i": i, "j": j, "sigma": float(sub["sigma"]), "n": int(sub["n"]),
                         "sigma2_over_n": float(sub["sigma2_over_n"]), "n_fits": int(other.size),
                         "ks": float(ks.statistic), "p": float(ks.pvalue)})
            if kind == "nonscaling":
                rows[-1]["power"] = ks_power(base, other, alpha)
        # non-scaling pairs below power_from are reported (p, power), not tested
        tested = [r for r in rows if kind == "scaling" or r["i"] >= power_from]
        for row, adj in zip(tested, holm([r["p"] for r in tested]), strict=True):
            row["p_holm"] = float(adj)
        out[kind] = rows
    levels = []
    for off, group in table.groupby(table["i"] - table["j"]):
        cells = sorted({(int(a), int(b)) for a, b in zip(group["i"], group["j"], strict=True)})
        if len(cells) < 2:
            continue
        d1s = [_cell(table, i, j) for i, j in cells]
        counts = np.array([[(x > far).sum(), (x <= far).sum()] for x in d1s])
        # all near (or all far): the fractions agree exactly, nothing to test
        p = 1.0 if (counts[:, 0] == 0).all() or (counts[:, 1] == 0).all() else float(
            chi2_contingency(counts).pvalue)
        levels.append({"offset": int(off), "sigma2_over_n": float(group["sigma2_over_n"].iloc[0]),
                       "cells": [list(c) for c in cells],
                       "far_fraction": (counts[:, 0] / counts.sum(axis=1)).round(4).tolist(),
                       "p": p})
    for row, adj in zip(levels, holm([r["p"] for r in levels]), strict=True):
        row["p_holm"] = float(adj)
    out["far_levels"] = levels

    def extreme(rows, fn):
        ps = [r["p_holm"] for r in rows if "p_holm" in r]
        return float(fn(ps)) if ps else float("nan")
    out["min_p_scaling"] = extreme(out["scaling"], min)
    out["max_p_nonscaling"] = extreme(out["nonscaling"], max)
    out["min_p_far"] = extreme(levels, min)
    return out
