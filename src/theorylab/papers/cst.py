r"""Creativity homogenization claims and figures (Anderson, Shah & Kreminski, "Homogenization
Effects of Large Language Models on Human Creative Ideation", C&C 2024, arXiv 2402.01536).

* ``cst.repro.*``: the paper's reported statistics recomputed from its reported summaries
  (:mod:`theorylab.empirical.creativity.summary`), each compared at the paper's rounding.
* ``cst.mech.*``: :class:`~theorylab.empirical.creativity.study.CstMechanismStudy`, ideas sampled
  from small language models trained here (shared model vs own sources).
* ``cst.sim.*``, ``cst.power.*``: :class:`~theorylab.empirical.creativity.study.CstSimStudy`,
  simulated studies calibrated to the reported means and :math:`d_z = t/\sqrt n`; the paired
  t-test's recovery of a planted effect, its false-positive rate, and the power curve.

The studies (numpy, scipy) are imported inside the checks and figures.
"""

from __future__ import annotations

import math

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIBelow, Equality, Measured, Threshold
from theorylab.plotting import figure, legend_below, savefig, style
from theorylab.stats import mean_ci, wilson_ci

PAPER = "CST-HOMOG"
STUDIES = {"cst-sim": "theorylab.empirical.creativity.study",
           "cst-analysis": "theorylab.empirical.creativity.study",
           "cst-mechanism": "theorylab.empirical.creativity.study"}
CONF = 0.95
FPR_BOUND = 0.10       # a false-positive rate whose CI lies below 2α: the test is not liberal
RATE_HALF_WIDTH = 0.05  # Wilson half-width a rate needs to decide
DIFF_TOL = 0.005       # a mean difference this close to its target counts as recovered
DIFF_HALF_WIDTH = 0.003
POWER = 0.8
MECH_HALF_WIDTH = 0.04  # the paper's own group-level difference (.24 vs .28): the CI must resolve it
MECH_FIRST_TEMPERATURE = 1.0  # the first (inconclusive) measurement sampled at T = 1


# ----------------------------------------------------------------------- reproduction
@claim("cst.repro.p", paper=PAPER, kind="theory", must_hold=False,
       statement="the two-sided p recomputed from the reported t(32) = 2.154 prints as the "
                 "reported p = .038 at three decimals (report-only: checks the paper's rounding)")
def _(ctx: Context) -> Verdict:
    from theorylab.empirical.creativity.summary import REPORTED, image, p_from_t, rounding
    g = REPORTED["group"]
    p = p_from_t(g["t"], g["df"])
    lo, hi = image(lambda t: p_from_t(t, g["df"]), rounding(g["t"], 3))
    return Verdict(measured=p, criterion=Equality(g["p"], abs_tol=0.5e-3),
                   details={"p_range_over_t_rounding": (lo, hi),
                            "truncated_to_3_decimals": math.floor(p * 1000) / 1000,
                            "p_one_sided": p / 2})


@claim("cst.repro.p_truncated", paper=PAPER, kind="theory",
       statement="the reported p = .038 is t(32) = 2.154's two-sided p truncated (not rounded) "
                 "to three decimals, for every t that prints as 2.154")
def _(ctx: Context) -> Verdict:
    from theorylab.empirical.creativity.summary import REPORTED, image, p_from_t, rounding
    g = REPORTED["group"]
    lo, hi = image(lambda t: p_from_t(t, g["df"]), rounding(g["t"], 3))
    truncs = {math.floor(lo * 1000) / 1000, math.floor(hi * 1000) / 1000}
    measured = truncs.pop() if len(truncs) == 1 else float("nan")
    return Verdict(measured=measured, criterion=Equality(g["p"], abs_tol=1e-9),
                   details={"p_range_over_t_rounding": (lo, hi)})


@claim("cst.repro.d", paper=PAPER, kind="theory", must_hold=False,
       statement="d_z = t/√n recomputed from t(32) = 2.154 and n = 33 prints as the reported "
                 "d = .47 (report-only: which definition the paper used)")
def _(ctx: Context) -> Verdict:
    from theorylab.empirical.creativity.summary import D_FROM_T, REPORTED, image, rounding
    g, n = REPORTED["group"], REPORTED["n"]
    f = D_FROM_T["d_z = t/sqrt(n)"]
    return Verdict(measured=f(g["t"], n), criterion=Equality(g["d"], abs_tol=0.5e-2),
                   details={"d_z_range_over_t_rounding": image(lambda t: f(t, n),
                                                               rounding(g["t"], 3))})


@claim("cst.repro.d_definition", paper=PAPER, kind="theory",
       statement="no effect size computable from t(32) = 2.154 and n = 33 alone (d_z, t/√df, "
                 "Hedges' g_z, the independent-groups t√(2/n) and 2t/√df) prints as d = .47: "
                 "the paper's d needs the SDs (d_av or d_rm)")
def _(ctx: Context) -> Verdict:
    from theorylab.empirical.creativity.summary import (
        D_FROM_T,
        REPORTED,
        image,
        implied_r,
        matches,
        rounding,
    )
    g, n = REPORTED["group"], REPORTED["n"]
    t_iv = rounding(g["t"], 3)
    values = {name: f(g["t"], n) for name, f in D_FROM_T.items()}
    hits = [name for name, f in D_FROM_T.items()
            if matches(image(lambda t, f=f: f(t, n), t_iv), g["d"], 2)]
    d_z = values["d_z = t/sqrt(n)"]
    diff = image(lambda a, b: a - b, rounding(g["mean_ctrl"], 2), rounding(g["mean_llm"], 2))
    ind = REPORTED["individual"]
    from theorylab.empirical.creativity.summary import t_from_p
    t_ind = t_from_p(ind["p"], ind["df"])
    return Verdict(measured=", ".join(hits) or "none", criterion=Equality("none"),
                   details={"candidates": values,
                            "implied_r_if_d_av_equal_sds": implied_r(g["d"], d_z),
                            "implied_average_sd_range": (diff[0] / g["d"], diff[1] / g["d"]),
                            "mean_difference_range": diff,
                            "individual_t_from_p": t_ind,
                            "individual_d_z_from_p": t_ind / math.sqrt(n)})


# ------------------------------------------------------------------------- simulation
def _sim(ctx: Context):
    from theorylab.empirical.creativity.study import CstSimStudy
    return ctx.sized(CstSimStudy())


def _reps(ctx: Context, setting: str, n: int | None = None):
    from theorylab.study import records
    study = _sim(ctx)
    table = records(ctx.run(study), "replicate")
    n = study.ns[0] if n is None else n
    return study, table[(table.setting == setting) & (table.n == n)]


def _calibration(ctx: Context) -> dict:
    from theorylab.study import records
    cal = records(ctx.run(_sim(ctx)), "calibration")
    return {k: float(v) for k, v in cal.iloc[0].items() if k.startswith(("param_", "truth_"))}


def _rate(hits: np.ndarray) -> Measured:
    k, n = float(hits.sum()), float(hits.size)
    return Measured(k / n, wilson_ci(k, n, CONF))


@claim("cst.sim.recovers_planted", paper=PAPER, kind="simulation",
       statement="on simulated studies of the paper's size (n = 33) with a planted "
                 "homogenization effect, the pipeline's mean group-level difference (LLM − "
                 "control) is below 0 and within 0.005 of the planted one, the individual-level "
                 "difference within 0.005 of 0, and the individual-level test rejects at most at "
                 "a rate whose CI lies below 2α")
def _(ctx: Context) -> Verdict:
    study, reps = _reps(ctx, "planted")
    truth = _calibration(ctx)
    gm, gci = mean_ci(reps.group_diff, CONF)
    bias = reps.group_diff.to_numpy() - truth["truth_group_diff"]
    bm, bci = mean_ci(bias, CONF)
    im, ici = mean_ci(reps.individual_diff, CONF)
    parts = {"group_diff": Measured(gm, gci), "group_bias": Measured(bm, bci),
             "individual_diff": Measured(im, ici),
             "individual_rejections": _rate(reps.individual_p.to_numpy() < study.alpha)}
    crit = AllOf({"group_diff": CIBelow(0.0, DIFF_HALF_WIDTH),
                  "group_bias": Equality(0.0, abs_tol=DIFF_TOL, max_half_width=DIFF_HALF_WIDTH),
                  "individual_diff": Equality(0.0, abs_tol=DIFF_TOL,
                                              max_half_width=DIFF_HALF_WIDTH),
                  "individual_rejections": CIBelow(2 * study.alpha, RATE_HALF_WIDTH)})
    return Verdict(measured=gm, ci=gci, criterion=crit, parts=parts,
                   details={"n": int(study.ns[0]), "replicates": int(len(reps)),
                            "planted_group_diff": truth["truth_group_diff"],
                            "planted_group_means": (truth["truth_group_ctrl"],
                                                    truth["truth_group_llm"]),
                            "planted_individual_means": (truth["truth_individual_ctrl"],
                                                         truth["truth_individual_llm"]),
                            "planted_d_z": truth["truth_group_dz"]})


def _null_parts(ctx: Context):
    study, reps = _reps(ctx, "null")
    return study, reps, {"group_jackknife": _rate(reps.group_jk_p.to_numpy() < study.alpha),
                         "group_ttest": _rate(reps.group_p.to_numpy() < study.alpha),
                         "individual_ttest": _rate(reps.individual_p.to_numpy() < study.alpha)}


@claim("cst.sim.null_fpr", paper=PAPER, kind="simulation",
       statement="with no effect planted (n = 33), the jackknife test of the group-level "
                 "difference and the paired t-test of the individual-level one reject at "
                 "α = .05 at rates whose 95 % Wilson CIs lie below 2α = .10")
def _(ctx: Context) -> Verdict:
    study, reps, parts = _null_parts(ctx)
    parts = {k: parts[k] for k in ("group_jackknife", "individual_ttest")}
    crit = AllOf({k: CIBelow(FPR_BOUND, RATE_HALF_WIDTH) for k in parts})
    return Verdict(measured=parts["group_jackknife"].value, ci=parts["group_jackknife"].ci,
                   criterion=crit, parts=parts,
                   details={"alpha": study.alpha, "replicates": int(len(reps))})


@claim("cst.sim.null_fpr_ttest", paper=PAPER, kind="simulation", must_hold=False,
       statement="with no effect planted (n = 33), the paper's paired t-test of group-level "
                 "dissimilarity rejects at α = .05 at a rate whose 95 % Wilson CI lies below "
                 "2α = .10 (report-only: participants' group-level scores share the other "
                 "participants' ideas, which the paired t-test treats as independent)")
def _(ctx: Context) -> Verdict:
    study, reps, parts = _null_parts(ctx)
    m = parts["group_ttest"]
    return Verdict(measured=m.value, ci=m.ci, criterion=CIBelow(FPR_BOUND, RATE_HALF_WIDTH),
                   details={"alpha": study.alpha, "replicates": int(len(reps)),
                            "jackknife_rate": parts["group_jackknife"].value})


def _analytic_power(d_z: float, n, alpha: float):
    from statsmodels.stats.power import TTestPower
    return TTestPower().power(effect_size=abs(d_z), nobs=n, alpha=alpha)


def _analytic_n(d_z: float, alpha: float) -> float:
    from statsmodels.stats.power import TTestPower
    return float(TTestPower().solve_power(effect_size=abs(d_z), power=POWER, alpha=alpha))


def power_curve(ctx: Context, test: str = "group_jk_p") -> tuple:
    """Simulated power (share of planted replicates with p < α in the right direction) per n,
    with Wilson CIs, of the jackknife test (``group_jk_p``) or the paired t-test
    (``group_p``)."""
    from theorylab.study import records
    study = _sim(ctx)
    reps = records(ctx.run(study), "replicate")
    reps = reps[reps.setting == "planted"]
    rows = []
    for n, g in reps.groupby("n"):
        hits = (g[test] < study.alpha) & (g.group_diff < 0)
        lo, hi = wilson_ci(float(hits.sum()), float(len(g)), CONF)
        rows.append((int(n), float(hits.mean()), lo, hi))
    return study, rows


def _probit_n(rows) -> float:
    r"""n at 80 % power from a fit of :math:`\Phi^{-1}(\text{power}) = a + b\sqrt n` (the
    normal approximation of a test's power) to the simulated curve; NaN if it does not rise."""
    from scipy import stats
    ns = np.array([r[0] for r in rows], float)
    z = stats.norm.ppf(np.clip([r[1] for r in rows], 1e-3, 1 - 1e-3))
    b, a = np.polyfit(np.sqrt(ns), z, 1)
    return float(((stats.norm.ppf(POWER) - a) / b) ** 2) if b > 0 else float("nan")


def _crossing(rows) -> float:
    """n where the power curve first reaches 0.8 (linear interpolation; NaN off the grid)."""
    ns = np.array([r[0] for r in rows], float)
    pw = np.array([r[1] for r in rows])
    above = np.flatnonzero(pw >= POWER)
    if above.size == 0 or above[0] == 0:
        return float("nan")
    i = above[0]
    return float(ns[i - 1] + (POWER - pw[i - 1]) * (ns[i] - ns[i - 1]) / (pw[i] - pw[i - 1]))


@claim("cst.power.n33", paper=PAPER, kind="simulation", must_hold=False,
       statement="the paper's study (n = 33) had 80 % power for its own effect: simulated "
                 "power of the (valid) jackknife group-level test at n = 33 (report-only)")
def _(ctx: Context) -> Verdict:
    study, rows = power_curve(ctx)
    _, rows_t = power_curve(ctx, "group_p")
    truth = _calibration(ctx)
    n, pw, lo, hi = next(r for r in rows if r[0] == 33)
    return Verdict(measured=pw, ci=(lo, hi), criterion=Threshold(">=", POWER),
                   details={"planted_d_z": truth["truth_group_dz"],
                            "ttest_rejection_rate_n33": next(r[1] for r in rows_t if r[0] == 33),
                            "noncentral_t_power_at_paper_d_z": float(_analytic_power(
                                study.d_z, 33, study.alpha))})


@claim("cst.power.n80", paper=PAPER, kind="simulation", must_hold=False,
       statement="participants needed for 80 % power at the paper's effect (jackknife test; "
                 "probit fit of the simulated power curve in √n) are at most the paper's 33 "
                 "(report-only)")
def _(ctx: Context) -> Verdict:
    study, rows = power_curve(ctx)
    _, rows_t = power_curve(ctx, "group_p")
    return Verdict(measured=_probit_n(rows), criterion=Threshold("<=", 33),
                   details={"interpolated_crossing": _crossing(rows),
                            "power_by_n": {int(r[0]): (r[1], r[2], r[3]) for r in rows},
                            "ttest_rate_by_n": {int(r[0]): r[1] for r in rows_t},
                            "ttest_crossing": _crossing(rows_t),
                            "noncentral_t_n80_at_paper_d_z": math.ceil(_analytic_n(
                                study.d_z, study.alpha))})


# ------------------------------------------------------------------ mechanism with LMs
def _mechanism(ctx: Context, **change):
    from theorylab.empirical.creativity.study import CstMechanismStudy
    study = ctx.sized(CstMechanismStudy()).replace(**change)
    return study, ctx.run(study)


def _mechanism_verdict(ctx: Context, **change) -> Verdict:
    study, t = _mechanism(ctx, **change)
    gm, gci = mean_ci(t.group_diff, CONF)
    im, ici = mean_ci(t.individual_diff, CONF)
    return Verdict(measured=gm, ci=gci, criterion=CIBelow(0.0, MECH_HALF_WIDTH),
                   details={"replicates": int(len(t)), "participants": study.n_participants,
                            "temperature": study.temperature, "embedder": str(t.embedder.iloc[0]),
                            "group_own": float(t.group_own.mean()),
                            "group_shared": float(t.group_shared.mean()),
                            "individual_diff": (im, ici),
                            "train_loss_mean": float(t.train_loss_mean.mean())})


@claim("cst.mech.shared_lower_group", paper=PAPER, kind="empirical",
       statement="when every participant samples ideas from one shared language model (trained "
                 "here on a slice of the fortunes corpus) instead of each from a model trained on "
                 "their own slice, group-level dissimilarity is lower: mean over replicates of "
                 "(shared − own) has a 95 % CI below 0, half-width <= 0.04 (the paper's own "
                 "difference); sampling temperature 0.7")
def _(ctx: Context) -> Verdict:
    return _mechanism_verdict(ctx)


@claim("cst.mech.shared_lower_group_t1", paper=PAPER, kind="empirical", must_hold=False,
       statement="the same measurement with ideas sampled at temperature 1 from the same "
                 "trained models (the first, unregistered measurement sampled at T = 1 from "
                 "models trained 4 epochs and was inconclusive; the book keeps its numbers) "
                 "(report-only)")
def _(ctx: Context) -> Verdict:
    return _mechanism_verdict(ctx, temperature=MECH_FIRST_TEMPERATURE)


# ----------------------------------------------------------------------------- figures
@figure("cst-power", paper=PAPER)
def power_figure(ctx: Context):
    """Power of the group-level test vs n: jackknife (valid) and the paired t-test (whose
    rejection rate includes its excess false positives), with the noncentral-t curve."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    study = _sim(ctx)
    table = ctx.load(study)
    reps = records(table, "replicate")
    reps = reps[reps.setting == "planted"]
    with style():
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        for test, color, label in (("group_jk_p", "C0", "jackknife test"),
                                   ("group_p", "C1", "paired t-test (the paper's)")):
            rows = []
            for n, g in reps.groupby("n"):
                hits = (g[test] < study.alpha) & (g.group_diff < 0)
                rows.append((n, hits.mean(), *wilson_ci(float(hits.sum()), float(len(g)), CONF)))
            r = np.array(rows)
            yerr = np.clip([r[:, 1] - r[:, 2], r[:, 3] - r[:, 1]], 0, None)  # float rounding
            ax.errorbar(r[:, 0], r[:, 1], yerr=yerr, fmt="o-",
                        color=color, capsize=3, label=label)
        grid = np.linspace(10, reps.n.max(), 200)
        ax.plot(grid, _analytic_power(study.d_z, grid, study.alpha), ":", color="C3",
                label=f"noncentral t, paper's d_z = {abs(study.d_z):.3f}")
        ax.axhline(POWER, ls=":", color="k", lw=1, label="80 % power")
        ax.axvline(33, ls="--", color="0.5", lw=1, label="the paper's n = 33")
        ax.set(xlabel="participants n (within-subject)",
               ylabel="share of studies with p < .05\n(bars: 95 % Wilson CI)", ylim=(0, 1.02))
        legend_below(fig, ncol=2)
        return savefig(fig, ctx.figdir / "cst-power")
