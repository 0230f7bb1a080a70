r"""Diversity metrics of ideas and the paired comparison of two conditions (Anderson, Shah &
Kreminski, "Homogenization Effects of Large Language Models on Human Creative Ideation",
C&C 2024).

Ideas :math:`a` carry (participant :math:`i`, condition :math:`c`, prompt :math:`k`) and a unit
embedding :math:`x_a`; :math:`\delta(a, b) = 1 - x_a^\top x_b` is the cosine dissimilarity.

* **group-level** dissimilarity of idea :math:`a`: :math:`g_a = \operatorname{mean}\{\delta(a,b)
  : c_b = c_a, k_b = k_a, i_b \ne i_a\}` (the other participants' ideas for the same prompt in
  the same condition); a participant's score in a condition is the mean of :math:`g_a` over
  their ideas there.
* **individual-level** dissimilarity: :math:`h_a = \operatorname{mean}\{\delta(a,b) : i_b = i_a,
  c_b = c_a, b \ne a\}` (``scope="condition"``: all the participant's other ideas in the
  condition, across prompts) or also :math:`k_b = k_a` (``scope="prompt"``); participant score =
  mean of :math:`h_a` (NaN with one idea in scope).
* **fluency**: ideas per prompt (mean over the participant's prompts in the condition);
  **flexibility**: distinct idea clusters per prompt (average-linkage clustering of all ideas of
  a prompt, cut at cosine distance ``cluster_threshold``); **elaboration**: words per idea.

The paired test per metric is ``scipy.stats.ttest_rel`` over participants, with
:math:`d_z = \bar D / s_D = t/\sqrt n` and :math:`d_{av} = \bar D / \tfrac12 (s_1 + s_2)`
(:math:`D` the per-participant difference, :math:`s_1, s_2` the SDs of the two conditions).
:func:`mixed_model` fits idea-level scores with statsmodels' MixedLM: a fixed condition effect
and crossed random intercepts of participant and prompt.

A participant's group-level score depends on the *other* participants' ideas, so the scores of
one condition share a component and are not independent: the paired t-test's SE misses it.
:func:`jackknife_group_test` instead recomputes the mean difference
:math:`\hat\theta = \operatorname{mean}_i (G_{i,b} - G_{i,a})` with each participant
:math:`k` removed from the study altogether (:math:`\hat\theta_{(-k)}`) and uses the jackknife
SE :math:`\sqrt{\tfrac{n-1}{n} \sum_k (\hat\theta_{(-k)} - \bar\theta_{(\cdot)})^2}` with
:math:`t = \hat\theta / \mathrm{SE}` on :math:`n - 1` degrees of freedom.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from theorylab.errors import InputError
from theorylab.validation import check_choice, check_real

__all__ = ["SCOPES", "METRICS", "idea_scores", "participant_scores", "PairedTest",
           "paired_test", "paired_tests", "mixed_model", "cluster_labels", "jackknife_t",
           "jackknife_group_test"]

SCOPES = ("condition", "prompt")
METRICS = ("group", "individual", "fluency", "flexibility", "elaboration")


def _check(ideas: pd.DataFrame, X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != len(ideas):
        raise InputError(f"'X' must have one row per idea ({len(ideas)}). Got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise InputError("'X' must be finite.")
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def idea_scores(ideas: pd.DataFrame, X: np.ndarray, scope: str = "condition") -> pd.DataFrame:
    """``ideas`` with two columns added: ``group`` (:math:`g_a`) and ``individual``
    (:math:`h_a`); NaN where no comparison idea exists."""
    check_choice("idea_scores", "scope", scope, SCOPES)
    X = _check(ideas, X)
    out = ideas.reset_index(drop=True).copy()
    g = np.full(len(out), np.nan)
    h = np.full(len(out), np.nan)
    part = out.participant.to_numpy()
    for _, idx in out.groupby(["condition", "prompt"], sort=False).indices.items():
        D = 1.0 - X[idx] @ X[idx].T
        other = part[idx][:, None] != part[idx][None, :]
        n_other = other.sum(1)
        g[idx] = np.where(n_other > 0, (D * other).sum(1) / np.maximum(n_other, 1), np.nan)
    keys = ["participant", "condition"] + (["prompt"] if scope == "prompt" else [])
    for _, idx in out.groupby(keys, sort=False).indices.items():
        if len(idx) > 1:
            D = 1.0 - X[idx] @ X[idx].T
            h[idx] = (D.sum(1) - np.diag(D)) / (len(idx) - 1)
    return out.assign(group=g, individual=h)


def cluster_labels(X: np.ndarray, threshold: float) -> np.ndarray:
    """Average-linkage clusters of the rows of ``X`` cut at cosine distance ``threshold``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    if len(X) == 1:
        return np.ones(1, dtype=int)
    Z = linkage(X, method="average", metric="cosine")
    return fcluster(Z, t=threshold, criterion="distance")


def participant_scores(ideas: pd.DataFrame, X: np.ndarray, scope: str = "condition",
                       cluster_threshold: float = 0.6) -> pd.DataFrame:
    """One row per (participant, condition): the five :data:`METRICS` and ``n_ideas``."""
    check_real("participant_scores", "cluster_threshold", cluster_threshold, 0, 2, lo_open=True)
    scored = idea_scores(ideas, X, scope)
    Xn = _check(ideas, X)
    cluster = np.zeros(len(scored), dtype=int)
    for _, idx in scored.groupby("prompt", sort=False).indices.items():
        cluster[idx] = cluster_labels(Xn[idx], cluster_threshold)
    scored = scored.assign(cluster=cluster,
                           words=scored.idea.str.split().str.len().astype(float))
    per_prompt = scored.groupby(["participant", "condition", "prompt"], sort=True).agg(
        n=("idea", "size"), k=("cluster", "nunique"))
    pp = per_prompt.groupby(["participant", "condition"]).agg(
        fluency=("n", "mean"), flexibility=("k", "mean"), n_ideas=("n", "sum"))
    means = scored.groupby(["participant", "condition"])[["group", "individual", "words"]].mean()
    return (pp.join(means).rename(columns={"words": "elaboration"}).reset_index()
            [["participant", "condition", *METRICS, "n_ideas"]])


class PairedTest(NamedTuple):
    """A paired t-test of ``metric``, condition ``b`` minus condition ``a``."""

    metric: str
    a: str
    b: str
    n: int
    mean_a: float
    mean_b: float
    sd_a: float
    sd_b: float
    mean_diff: float
    sd_diff: float
    t: float
    df: int
    p: float
    d_z: float
    d_av: float


def paired_test(scores: pd.DataFrame, metric: str, a: str, b: str) -> PairedTest:
    """Paired t-test (``scipy.stats.ttest_rel``) of ``metric`` over the participants with a
    finite score in both conditions, and the effect sizes :math:`d_z`, :math:`d_{av}`."""
    from scipy import stats
    check_choice("paired_test", "metric", metric, METRICS)
    wide = scores.pivot(index="participant", columns="condition", values=metric)
    for c in (a, b):
        if c not in wide.columns:
            raise InputError(f"'scores' has no condition {c!r}; it has {', '.join(wide.columns)}.")
    wide = wide[[a, b]].dropna()
    n = len(wide)
    if n < 2:
        raise InputError(f"a paired test of {metric!r} needs >= 2 participants scored in both "
                         f"conditions. Got {n}.")
    xa, xb = wide[a].to_numpy(float), wide[b].to_numpy(float)
    diff = xb - xa
    res = stats.ttest_rel(xb, xa)
    sd_d = float(diff.std(ddof=1))
    sd_a, sd_b = float(xa.std(ddof=1)), float(xb.std(ddof=1))
    md = float(diff.mean())
    return PairedTest(metric, a, b, n, float(xa.mean()), float(xb.mean()), sd_a, sd_b, md, sd_d,
                      float(res.statistic), n - 1, float(res.pvalue),
                      md / sd_d if sd_d > 0 else math.nan,
                      md / ((sd_a + sd_b) / 2) if sd_a + sd_b > 0 else math.nan)


def paired_tests(scores: pd.DataFrame, a: str, b: str, metrics=METRICS) -> pd.DataFrame:
    """:func:`paired_test` of each metric, one row each."""
    return pd.DataFrame([paired_test(scores, m, a, b)._asdict() for m in metrics])


def mixed_model(scored: pd.DataFrame, metric: str, a: str, b: str) -> dict:
    r"""Fit :math:`y_a = \beta_0 + \beta\,[c_a = b] + u_{i_a} + v_{k_a} + \varepsilon_a` with
    crossed random intercepts :math:`u_i \sim N(0, \sigma_u^2)` (participant) and
    :math:`v_k \sim N(0, \sigma_v^2)` (prompt), by REML (statsmodels ``MixedLM`` with one group
    and two variance components). Returns :math:`\hat\beta`, its SE, 95 % CI and p, and the
    variance estimates."""
    import warnings

    import statsmodels.formula.api as smf
    check_choice("mixed_model", "metric", metric, ("group", "individual"))
    d = scored[scored.condition.isin([a, b])].dropna(subset=[metric])
    d = pd.DataFrame({"y": d[metric].to_numpy(float), "treat": (d.condition == b).astype(float),
                      "participant": d.participant.astype(str).to_numpy(),
                      "prompt": d.prompt.astype(str).to_numpy(), "one": 1})
    model = smf.mixedlm("y ~ treat", d, groups="one", re_formula="0",
                        vc_formula={"participant": "0 + C(participant)",
                                    "prompt": "0 + C(prompt)"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # boundary / convergence notes: the estimates are reported
        fit = model.fit(reml=True)
    lo, hi = fit.conf_int().loc["treat"]
    vc = dict(zip(model.exog_vc.names, np.asarray(fit.vcomp, float), strict=True))
    return {"metric": metric, "beta": float(fit.params["treat"]), "se": float(fit.bse["treat"]),
            "ci_lo": float(lo), "ci_hi": float(hi), "p": float(fit.pvalues["treat"]),
            "var_participant": vc["participant"], "var_prompt": vc["prompt"],
            "var_residual": float(fit.scale), "n_ideas": int(len(d))}


def jackknife_t(theta: float, leave_out: np.ndarray) -> tuple[float, float, float]:
    """(SE, t, two-sided p on n − 1 df) of ``theta`` from its leave-one-out values."""
    from scipy import stats
    leave_out = np.asarray(leave_out, float)
    n = leave_out.size
    se = math.sqrt((n - 1) / n * float(((leave_out - leave_out.mean()) ** 2).sum()))
    t = theta / se if se > 0 else math.nan
    return se, t, float(2 * stats.t.sf(abs(t), n - 1)) if se > 0 else math.nan


def jackknife_group_test(ideas: pd.DataFrame, X: np.ndarray, a: str, b: str) -> dict:
    """Jackknife test of the mean group-level difference (b − a) over the participants seen in
    both conditions, each leave-one-out value recomputed from :func:`idea_scores` on the study
    without that participant (the other participants' scores change too)."""
    X = _check(ideas, X)
    ideas = ideas.reset_index(drop=True)

    def theta(mask: np.ndarray) -> float:
        s = idea_scores(ideas[mask], X[mask])
        wide = s.groupby(["participant", "condition"]).group.mean().unstack()
        return float((wide[b] - wide[a]).dropna().mean())

    both = ideas.groupby("participant").condition.nunique()
    people = [p for p in both.index if both[p] == 2]
    if len(people) < 3:
        raise InputError(f"the jackknife needs >= 3 participants in both conditions. Got {len(people)}.")
    part = ideas.participant.to_numpy()
    full = theta(np.ones(len(ideas), bool))
    loo = np.array([theta(part != p) for p in people])
    se, t, p = jackknife_t(full, loo)
    return {"metric": "group", "n": len(people), "mean_diff": full, "se": se, "t": t,
            "df": len(people) - 1, "p": p}
