r"""MoE-LSE claims and figures (Nguyen, Ho, Rinaldo, arXiv 2402.02952, ICML 2024).

Rates are measured as slopes of log-loss against log n (statsmodels OLS, HC3 95 % CI) over the
replicates of :class:`~theorylab.simulations.moe_rates.MoERateStudy`, and compared with the band
between the parametric slope :math:`-r` and the slope of the theorems' :math:`(\log n / n)^{r}`
on the same grid. Every rate claim needs a measured decay (the CI lies below 0). Then:

* exact-fitted (k = k*): the LSE is a regular M-estimator, so :math:`n^{-1/2}` is the exact rate
  (CLT) and the claim is two-sided: the CI meets the band;
* over-fitted (k > k*): the theorems bound the loss, :math:`O_P((\log n/n)^{r})`, and give no
  lower bound at a fixed G* (theirs are minimax, over neighbourhoods). The claim is the bound:
  the decay is not slower, i.e. the CI reaches the band or lies below it. Whether the bound is
  also attained (the two-sided test) is its own report-only claim, ``moe.tight.*``.

Precision: every slope CI must have half-width <= 0.125 (:data:`SLOPE_HALF_WIDTH`), half the gap
between the paper's two rates 1/2 and 1/4, so that a decisive CI cannot contain both; a wider
one is "inconclusive".

Noise regimes: every main-grid claim is registered twice on the same grid (sizes, replicates,
optimiser, criteria): at the default σ = 1e-5 under ``moe.<loss>.<expert>.<case>`` and at
σ = 0.01 under ``moe.sigma1e-2.<loss>.<expert>.<case>`` (:data:`REGIMES`). The LSE depends on
(σ, n) through σ²/n (claim ``moe.scaling.sigma2_over_n``); at σ = 0.01 the grid lies at
σ²/n >= 1e-9, where a fifth to nine tenths of the over-fitted fits are far from G*
(D1 > 0.5), so the over-fitted Voronoi and atom claims there are report-only
(:data:`PRE_ASYMPTOTIC`). The tail claims (σ = 1e-5, sigmoid and tanh, n = 10^4 ... 10^6) test
the bound past the pre-asymptotic range, ``moe.tail.bound.*``, and report its attainment,
``moe.tail.*`` (report-only since the quick sigmoid D1 and atoms decayed faster than the band).

The optimiser claims: ``moe.optimizer.below_truth`` (objective at the fit <= objective at G*,
necessary for the LSE, not sufficient) and ``moe.optimizer.global`` (within 0.1 sigma^2 of a
many-start bounded scipy ``trf`` reference on fresh problems; study ``moe-global``).

Earlier settings: two quick samples were enlarged after their claims were inconclusive (the
criteria unchanged). Each earlier sample is a subset of the new table, and its verdict stays
registered as a report-only claim: ``moe.optimizer.global.sample36`` (replicate 0, 36 problems)
and ``moe.tail.<loss>.sigmoid.over.reps20`` (the first 20 tail replicates per size).

The studies are imported inside the checks and figures (``theorylab list`` stays light).
"""

from __future__ import annotations

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, Equality, RateBand, RateBound, Threshold
from theorylab.plotting import figure, log_ticks, savefig, style

PAPER = "MoE-LSE"
STUDIES = {"moe-rates": "theorylab.simulations.moe_rates",  # study name -> its module
           "moe-scaling": "theorylab.simulations.moe_scaling",
           "moe-global": "theorylab.simulations.moe_global"}
LSE_TOL = 1e-9          # relative slack of "objective at the fit ≤ objective at the truth"
LSE_MIN_FRACTION = 0.99
SLOPE_HALF_WIDTH = 0.125  # half the gap between the rates 1/2 and 1/4: a CI cannot hold both
# the (expert, case) grid of simulations.moe_rates.CASES (kept here so that registering the
# claims imports no study; a test checks that the two agree)
CASES = tuple((e, c) for e in ("sigmoid", "tanh", "linear") for c in ("exact", "over"))
TAIL_EXPERTS = ("sigmoid", "tanh")  # = simulations.moe_rates.TAIL_EXPERTS (a test checks)
FAR_D1 = 0.5  # an over-fitted fit with D1 above this is "far" from G* (details, moe.scaling)

#: Noise regimes, each a full claim set on the same grid (sizes, replicates, criteria): id prefix
#: -> σ. The default σ = 1e-5 (None: the study's default) keeps the unprefixed ids
#: ``moe.<loss>.<expert>.<case>``; σ = 0.01 registers ``moe.sigma1e-2.<the same suffix>``.
REGIMES = {"": None, "sigma1e-2": 0.01}
#: σ = 0.01 claims that are report-only: over-fitted Voronoi and atom losses (and their contrast).
#: There σ²/n >= 1e-9 on the whole grid, where many over-fitted fits are far from G*
#: (D1 > 0.5; moe.scaling): the theorems' asymptotics (σ²/n -> 0) are not reached at n <= 10^5.
PRE_ASYMPTOTIC = {"sigma1e-2": ("d1.sigmoid.over", "d1.tanh.over", "over_err.sigmoid.over",
                                "over_err.tanh.over", "d1.linear_slower_than_sigmoid")}


def _id(prefix: str, suffix: str) -> str:
    return f"moe.{prefix}.{suffix}" if prefix else f"moe.{suffix}"


def _at(noise_sd: float | None) -> str:
    return "" if noise_sd is None else f" at σ = {noise_sd:g}"


def _table(ctx: Context, expert: str, case: str, noise_sd: float | None = None):
    from theorylab.simulations.moe_rates import case_study
    return ctx.run(case_study(expert, case, quick=ctx.quick, noise_sd=noise_sd))


def _slope_verdict(table, column: str, r: float, two_sided: bool) -> Verdict:
    """Slope of log ``column`` vs log n against the band of rate r: two-sided (the CI meets the
    band) or the upper bound (the CI reaches the band or lies below); both need a decay."""
    from theorylab.stats import band_overlaps, loglog_slope, rate_band, within_bound
    fit = loglog_slope(table["n"], table[column])
    theory_scale = loglog_slope(table["n"], table[column], scale="logn_over_n")
    band = rate_band(table["n"], r)
    crit = (RateBand if two_sided else RateBound)(band, max_half_width=SLOPE_HALF_WIDTH)
    details = {"band": band, "tight": band_overlaps(fit.ci, band),
               "within_bound": within_bound(fit.ci, band),
               "slope_vs_log(logn/n)": theory_scale.slope,
               "ci_vs_log(logn/n)": theory_scale.ci, "n_obs": fit.n_obs,
               "median_by_n": table.groupby("n")[column].median().to_dict()}
    if "d1" in table:  # the share of fits far from G*, which sets the pre-asymptotic slopes
        details["far_fraction_by_n"] = (table["d1"] > FAR_D1).groupby(table["n"]).mean().to_dict()
    return Verdict(measured=fit.slope, criterion=crit, ci=fit.ci, details=details)


def _rate_verdict(ctx: Context, expert: str, case: str, column: str, r: float,
                  noise_sd: float | None = None) -> Verdict:
    return _slope_verdict(_table(ctx, expert, case, noise_sd), column, r, two_sided=case == "exact")


def _must_hold(prefix: str, suffix: str) -> bool:
    return suffix not in PRE_ASYMPTOTIC.get(prefix, ())


def _report_only_note(prefix: str, suffix: str) -> str:
    return ("" if _must_hold(prefix, suffix) else
            " (report-only: σ²/n >= 1e-9 on this grid, where many of the over-fitted "
            "fits are far from G*, D1 > 0.5; the theorems' σ²/n -> 0 is not reached)")


def _register_rate(prefix: str, noise_sd: float | None, column: str, expert: str, case: str,
                   r: float, what: str) -> None:
    how = (f"decays as n^-{r} (up to the theorems' log factor)" if case == "exact"
           else f"is O_P((log n / n)^{r}): it decays no slower than n^-{r} up to the log factor")
    suffix = f"{column}.{expert}.{case}"
    claim(_id(prefix, suffix), paper=PAPER, kind="simulation", must_hold=_must_hold(prefix, suffix),
          statement=f"{what} of {case}-fitted {expert} experts {how}{_at(noise_sd)}"
                    f"{_report_only_note(prefix, suffix)}")(
        lambda ctx: _rate_verdict(ctx, expert, case, column, r, noise_sd))


def _register_tightness(prefix: str, noise_sd: float | None, column: str, expert: str, r: float,
                        what: str) -> None:
    """Report-only: is the over-fitted O_P bound attained on the main grid (the two-sided test)?
    The paper proves upper bounds only, so "faster than the bound" is not a failure of the paper;
    the tail claims (n = 10^4 ... 10^6) test attainment past the pre-asymptotic range."""
    claim(_id(prefix, f"tight.{column}.{expert}.over"), paper=PAPER, kind="simulation",
          must_hold=False,
          statement=f"{what} of over-fitted {expert} experts attains the bound's rate n^-{r} on "
                    f"the main grid{_at(noise_sd)} (two-sided; report-only: the theorems give "
                    "upper bounds)")(
        lambda ctx: _slope_verdict(_table(ctx, expert, "over", noise_sd), column, r,
                                   two_sided=True))


def _register_contrast(prefix: str, noise_sd: float | None) -> None:
    suffix = "d1.linear_slower_than_sigmoid"

    @claim(_id(prefix, suffix), paper=PAPER, kind="simulation", must_hold=_must_hold(prefix, suffix),
           statement="over-fitted linear experts converge markedly slower in D1 than sigmoid "
                     f"experts{_at(noise_sd)} (non-overlapping slope CIs)"
                     f"{_report_only_note(prefix, suffix)}")
    def _(ctx: Context) -> Verdict:
        from theorylab.stats import loglog_slope
        slopes = {e: loglog_slope(t["n"], t["d1"]) for e in ("sigmoid", "linear")
                  for t in [_table(ctx, e, "over", noise_sd)]}
        lin, sig = slopes["linear"], slopes["sigmoid"]
        # the CIs are disjoint (linear above) iff this interval of the difference lies above 0
        return Verdict(measured=lin.slope - sig.slope,
                       criterion=CIAbove(0.0, max_half_width=2 * SLOPE_HALF_WIDTH),
                       ci=(lin.ci_lo - sig.ci_hi, lin.ci_hi - sig.ci_lo),
                       details={"linear": lin._asdict(), "sigmoid": sig._asdict()})


def _register_below_truth(prefix: str, noise_sd: float | None) -> None:
    @claim(_id(prefix, "optimizer.below_truth"), paper=PAPER, kind="simulation",
           statement=f"in >= {LSE_MIN_FRACTION:.0%} of the rate study's fits{_at(noise_sd)} the "
                     f"objective at the fit is <= the objective at G* (+{LSE_TOL:g} relative): "
                     "necessary for the fit to be the LSE, not sufficient (moe.optimizer.global "
                     "measures globality)")
    def _(ctx: Context) -> Verdict:
        found = {f"{e}.{c}": _table(ctx, e, c, noise_sd)["lse_found"].astype(bool)
                 for e, c in CASES}
        allfits = np.concatenate([v.to_numpy() for v in found.values()])
        frac = float(allfits.mean())
        return Verdict(measured=frac, criterion=Threshold(">=", LSE_MIN_FRACTION),
                       details={"n_fits": int(allfits.size),
                                "fraction_by_case": {k: float(v.mean()) for k, v in found.items()}})


def _register_regime(prefix: str, noise_sd: float | None) -> None:
    """Every claim on the main grid at noise ``noise_sd``: rates, tightness, the linear-vs-sigmoid
    contrast and the optimiser check, ids under ``moe.<prefix>.``."""
    for expert, case in CASES:
        _register_rate(prefix, noise_sd, "l2", expert, case, 0.5,
                       "the L2 regression error ‖f_Ĝ − f_G*‖")
        if case == "over":
            _register_tightness(prefix, noise_sd, "l2", expert, 0.5, "the L2 regression error")
    for expert in ("sigmoid", "tanh"):
        for case in ("exact", "over"):
            _register_rate(prefix, noise_sd, "d1", expert, case, 0.5, "the Voronoi loss D1")
        _register_rate(prefix, noise_sd, "exact_err", expert, "exact", 0.5,
                       "the parameter error of exactly-specified atoms")
        _register_rate(prefix, noise_sd, "over_err", expert, "over", 0.25,
                       "the parameter error of over-specified atoms")
        _register_tightness(prefix, noise_sd, "d1", expert, 0.5, "the Voronoi loss D1")
        _register_tightness(prefix, noise_sd, "over_err", expert, 0.25,
                            "the parameter error of over-specified atoms")
    _register_contrast(prefix, noise_sd)
    _register_below_truth(prefix, noise_sd)


for _prefix, _noise in REGIMES.items():
    _register_regime(_prefix, _noise)


def _register_tail(column: str, expert: str, r: float, what: str) -> None:
    """Two claims per tail loss, as on the main grid: the theorems' upper bound (must hold) and
    its attainment (two-sided, report-only). Attainment was must-hold until 2026-12-01, when the
    quick sigmoid tail on 40 replicates per size decayed faster than the band in D1 and the
    over-specified atoms: the theorems give no lower bound at a fixed G*, so "faster" is not a
    failure of the paper; the attained-rate verdicts stay registered under the same ids."""
    claim(f"moe.tail.bound.{column}.{expert}.over", paper=PAPER, kind="simulation",
          statement=f"{what} of over-fitted {expert} experts is O_P((log n / n)^{r}) on n = 10^4 "
                    f"... 10^6: past the pre-asymptotic range it decays no slower than n^-{r} up "
                    "to the log factor")(
        lambda ctx: _slope_verdict(_tail_table(ctx, expert), column, r, two_sided=False))
    claim(f"moe.tail.{column}.{expert}.over", paper=PAPER, kind="simulation", must_hold=False,
          statement=f"{what} of over-fitted {expert} experts attains n^-{r} on n = 10^4 ... 10^6 "
                    "(two-sided): the O_P bound is sharp once past the pre-asymptotic range "
                    "(report-only since 2026-12-01: the theorems give upper bounds; must-hold "
                    "before, until the sigmoid D1 and atoms decayed faster than the band)")(
        lambda ctx: _slope_verdict(_tail_table(ctx, expert), column, r, two_sided=True))


def _tail_table(ctx: Context, expert: str):
    from theorylab.simulations.moe_rates import tail_study
    return ctx.run(tail_study(ctx.quick, expert))


for _expert in TAIL_EXPERTS:
    _register_tail("l2", _expert, 0.5, "the L2 regression error")
    _register_tail("d1", _expert, 0.5, "the Voronoi loss D1")
    _register_tail("over_err", _expert, 0.25, "the parameter error of over-specified atoms")

#: Replicates per size of the sigmoid tail until 2026-12-01, when its D1 claim was inconclusive
#: in both forms (simulations.moe_rates.TAIL_SIGMOID_REPS raised them to 40); the first
#: TAIL_PREVIOUS_REPS replicates of the table are those draws, so the verdicts of the three
#: sigmoid tail claims at that setting stay registered (report-only).
TAIL_PREVIOUS_REPS = 20


def _register_tail_previous(column: str, r: float) -> None:
    claim(f"moe.tail.{column}.sigmoid.over.reps{TAIL_PREVIOUS_REPS}", paper=PAPER,
          kind="simulation", must_hold=False,
          statement=f"report-only, the earlier setting: moe.tail.{column}.sigmoid.over on the "
                    f"first {TAIL_PREVIOUS_REPS} replicates per size (both forms had "
                    f"{TAIL_PREVIOUS_REPS} until the D1 claim was inconclusive there)")(
        lambda ctx: _slope_verdict(_first_reps(_tail_table(ctx, "sigmoid"), TAIL_PREVIOUS_REPS),
                                   column, r, two_sided=True))


def _first_reps(table, reps: int):
    return table[table["rep"] < reps]


for _column, _r in (("l2", 0.5), ("d1", 0.5), ("over_err", 0.25)):
    _register_tail_previous(_column, _r)


SCALING_ALPHA = 0.05  # level of every σ²/n scaling test (after Holm)


@claim("moe.scaling.sigma2_over_n", paper=PAPER, kind="simulation",
       statement="the over-fitted LSE depends on (σ, n) through σ²/n: D1 of sigmoid experts at "
                 "(cσ0, c²n0) has the law of D1 at (σ0, n0) for c = 2, 4 (8 in the full study) "
                 "(two-sample KS, Holm over c, no rejection at 5 %), and so has the share of far "
                 "fits (D1 > 0.5) at each σ²/n (χ² homogeneity, Holm); the same KS test rejects "
                 "(cσ0, n0) vs (σ0, n0) for c >= 4 (σ²/n x 16 or more), so it has power")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.moe_scaling import MoEScalingStudy, scaling_tests
    study = ctx.sized(MoEScalingStudy())
    res = scaling_tests(ctx.run(study), far=study.far, alpha=SCALING_ALPHA)
    parts = {"scaling_min_p_holm": res["min_p_scaling"], "far_min_p_holm": res["min_p_far"],
             "nonscaling_max_p_holm": res["max_p_nonscaling"]}
    return Verdict(measured=res["min_p_scaling"], parts=parts, details=res,
                   criterion=AllOf({"scaling_min_p_holm": Threshold(">=", SCALING_ALPHA),
                                    "far_min_p_holm": Threshold(">=", SCALING_ALPHA),
                                    "nonscaling_max_p_holm": Threshold("<", SCALING_ALPHA)}))


# Globality against the many-start trf reference (simulations.moe_global), fixed before the
# first measurement. A fit is global when its objective is within GLOBAL_GAP noise variances of
# the reference's (or below): 0.1 sigma^2 is far below the objective's statistical resolution
# (each free parameter moves the LSE's objective by ~sigma^2), so two such fits are the same
# estimate for every loss the claims measure. The fraction must exceed GLOBAL_MIN_FRACTION =
# 0.9, decided on its Wilson 95 % CI (lower end > 0.9; half-width <= 0.05, else inconclusive).
# Why 0.9: a miss is an outlier in log D1 of size delta (the log-ratio of D1 at the miss and at
# the reference). Misses concentrate at small n; a fraction q of all fits missing at the smallest
# of the quick grid's 5 log-spaced sizes (10^2...10^4) shifts the OLS slope of log D1 on log n
# by ~0.87 q delta (x_1 - mean x = -2.3, var x = 2.65). q = 0.1 keeps that below the rate
# claims' precision 0.125 for misses up to delta ~ 1.4 (a factor 4 in D1); the measured delta of
# the misses is reported (details) so a reader can see whether that premise holds.
GLOBAL_GAP = 0.1
GLOBAL_MIN_FRACTION = 0.9
GLOBAL_HALF_WIDTH = 0.05


def globality_verdict(table, gap: str = "gap") -> Verdict:
    """The globality verdict on a :class:`~theorylab.simulations.moe_global.MoEGlobalStudy`
    table: Wilson CI of the fraction of fits with ``gap`` <= GLOBAL_GAP (sigma^2 units) against
    GLOBAL_MIN_FRACTION; details: the gap distribution, misses by case and noise level, D1 at
    the misses, and the fraction before the split–merge moves (``gap_base``)."""
    from theorylab.stats import wilson_ci
    ok = table[gap] <= GLOBAL_GAP
    n, k = int(ok.size), int(ok.sum())
    ci = wilson_ci(k, n)
    miss = table[~ok]
    qs = (0.5, 0.9, 0.99, 1.0)
    by = table.assign(ok=ok).groupby(["case", "noise_sd"])["ok"]
    return Verdict(measured=k / n, ci=ci,
                   criterion=CIAbove(GLOBAL_MIN_FRACTION, max_half_width=GLOBAL_HALF_WIDTH),
                   details={"n_fits": n, "within": k,
                            "gap_quantiles_sigma2": {f"q{q:g}": float(table[gap].quantile(q)) for q in qs},
                            "fraction_by_case_noise": {f"{c}@{s:g}": float(v.mean()) for (c, s), v in by},
                            "misses": [{"expert": r.expert, "case": r.case, "noise_sd": r.noise_sd,
                                        "n": int(r.n), "gap_sigma2": float(getattr(r, gap)),
                                        "d1_fit": float(r.d1_fit), "d1_ref": float(r.d1_ref)}
                                       for r in miss.itertuples()],
                            "log_d1_ratio_at_misses": [float(np.log(r.d1_fit / r.d1_ref))
                                                       for r in miss.itertuples()],
                            "fraction_without_moves": float((table["gap_base"] <= GLOBAL_GAP).mean()),
                            "fit_seconds": float(table["fit_seconds"].sum()),
                            "fit_seconds_without_moves": float(table["base_seconds"].sum())})


@claim("moe.optimizer.global", paper=PAPER, kind="simulation",
       statement=f"the rate study's fit is the global LSE over the box: in > {GLOBAL_MIN_FRACTION:.0%} "
                 f"of its problems (fresh seeds; every family, exact/over-fitted, sigma = 1e-5 and "
                 f"0.01, n = 10^2...10^4) the objective at the fit is within {GLOBAL_GAP:g} sigma^2 "
                 "of a many-start bounded scipy least_squares (trf) reference, or below it")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.moe_global import MoEGlobalStudy
    return globality_verdict(ctx.run(ctx.sized(MoEGlobalStudy())))


#: The quick form's sample until 2026-12-01, when moe.optimizer.global was inconclusive there:
#: one replicate, 36 problems (simulations.moe_global.MoEGlobalStudy.quick now runs 4); it is
#: replicate 0 of the study's table, so its verdict stays registered.
@claim("moe.optimizer.global.sample36", paper=PAPER, kind="simulation", must_hold=False,
       statement="report-only, the earlier quick setting: moe.optimizer.global on replicate 0 "
                 "of its study alone (36 problems: one per family, case, noise level and n), the "
                 "quick form's sample until the claim was inconclusive there")
def _(ctx: Context) -> Verdict:
    from theorylab.simulations.moe_global import MoEGlobalStudy
    table = ctx.run(ctx.sized(MoEGlobalStudy()))
    return globality_verdict(table[table["rep"] == 0])


def _register_identifiability(family: str) -> None:
    expected = family in ("sigmoid", "tanh")

    @claim(f"moe.identifiability.{family}", paper=PAPER, kind="theory",
           statement=f"{family} experts are {'' if expected else 'not '}strongly identifiable "
                     "(the condition's function set is linearly "
                     f"{'independent' if expected else 'dependent'})")
    def _(ctx: Context) -> Verdict:
        from theorylab.theory import moe as theory_moe
        res = theory_moe.verify(family)  # res.holds: the set is linearly independent
        return Verdict(measured=bool(res.holds),
                       criterion=AllOf({"independent": Equality(expected),
                                        "numeric_agrees": Equality(True)}),
                       parts={"independent": bool(res.holds),
                              "numeric_agrees": res.details["numeric_agrees"]},
                       details={"method": res.method,
                                "dependence": list(res.details["dependence"] or ()),
                                "vanishing": list(res.details["vanishing"]),
                                "merged": [" = ".join(p) for p in res.details["merged"]],
                                "numeric_singular_ratio": res.details["numeric_ratio"]})


for _family in ("sigmoid", "tanh", "linear", "polynomial"):
    _register_identifiability(_family)


COLUMNS = (("l2", "L2 error"), ("d1", "D1"), ("exact_err", "exact atoms"),
           ("over_err", "over-specified atoms"))


YLABEL = "loss (median, IQR)"
XLABEL = "sample size n"


def _panel(ax, table, title: str) -> None:
    """Median and IQR per n of each loss in ``table``, with its OLS line, on log-log axes; the
    legend (loss: fitted slope [95 % CI]) below the axes."""
    from theorylab.stats import loglog_slope
    for i, (name, label) in enumerate(COLUMNS):
        vals = table[["n", name]].dropna()
        if vals.empty:
            continue
        g = vals.groupby("n")[name]
        ns = np.array(sorted(g.groups))
        med = g.median().loc[ns]
        q1, q3 = g.quantile(0.25).loc[ns], g.quantile(0.75).loc[ns]
        fit = loglog_slope(vals["n"], vals[name])
        line, = ax.loglog(ns, med, "o", color=f"C{i}",
                          label=f"{label}: {fit.slope:.2f} [{fit.ci_lo:.2f}, {fit.ci_hi:.2f}]")
        ax.fill_between(ns, q1, q3, color=line.get_color(), alpha=0.15)
        ax.loglog(ns, np.exp(fit.intercept) * ns ** fit.slope, "-", color=line.get_color(), lw=1.2)
    ax.set(title=title, xlabel=XLABEL, ylabel=YLABEL)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8.5, handlelength=1,
              title="slope [95 % CI]", title_fontsize=8.5)


@figure("moe-rates", paper=PAPER)
def rate_figure(ctx: Context):
    """Median and IQR per n of each loss, with the OLS line, for every (expert, case)."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.moe_rates import case_study
    experts = ("sigmoid", "tanh", "linear")
    with style():
        fig, axes = plt.subplots(3, 2, figsize=(8, 12.5), sharex=True)
        for row, expert in enumerate(experts):
            for col, case in enumerate(("exact", "over")):
                _panel(axes[row, col], ctx.load(case_study(expert, case, quick=ctx.quick)),
                       f"{expert} experts, {case}-fitted (k = {'k*' if case == 'exact' else 'k*+1'})")
                axes[row, col].xaxis.set_tick_params(labelbottom=True)
        fig.suptitle("MoE-LSE: convergence of the least-squares estimator\n"
                     "(median and IQR per n; line: OLS fit on all replicates)")
        return savefig(fig, ctx.figdir / "moe-rates")


@figure("moe-tail", paper=PAPER)
def tail_figure(ctx: Context):
    """The over-fitted sigmoid and tanh losses on n = 10^4 ... 10^6 (claims moe.tail.*)."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.moe_rates import tail_study
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(8, 5.6), sharey=True)
        for ax, expert in zip(axes, TAIL_EXPERTS, strict=True):
            _panel(ax, ctx.load(tail_study(ctx.quick, expert)),
                   f"{expert} experts, over-fitted\n(k = k*+1), tail")
        return savefig(fig, ctx.figdir / "moe-tail")


def _far_points(table, key):
    """Far-fit share (D1 > FAR_D1) per group of ``key`` with its Wilson 95 % interval."""
    from theorylab.stats import wilson_ci
    rows = []
    for k, g in table.groupby(key):
        far = int((g["d1"] > FAR_D1).sum())
        lo, hi = wilson_ci(far, len(g))
        rows.append((k, far / len(g), lo, hi))
    return np.array(rows, dtype=float)


def _far_errorbar(ax, pts, **kw):
    """Share of far fits with its Wilson interval (clipped at the share: rounding near 0 and 1)."""
    err = np.clip([pts[:, 1] - pts[:, 2], pts[:, 3] - pts[:, 1]], 0, None)
    ax.errorbar(pts[:, 0], pts[:, 1], yerr=err, capsize=2, lw=1, **kw)


@figure("moe-scaling", paper=PAPER)
def scaling_figure(ctx: Context):
    """Left: the share of far over-fitted sigmoid fits (D1 > 0.5) against σ²/n, one curve per σ
    (the scaling grid and both noise regimes of the main grid). Right: the empirical CDF of D1 in
    the cells of the scaling grid that share σ0²/n0 (solid) and at σ changed alone (dashed)."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.moe_rates import case_study
    from theorylab.simulations.moe_scaling import MoEScalingStudy
    study = ctx.sized(MoEScalingStudy())
    grid = ctx.load(study)
    mains = {sd: ctx.load(case_study("sigmoid", "over", quick=ctx.quick, noise_sd=sd))
             for sd in (1e-5, 0.01)}
    with style():
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(8, 5.4))
        for idx, (sd, t) in enumerate(sorted(mains.items())):
            t = t.assign(s2n=sd ** 2 / t["n"])
            _far_errorbar(ax, _far_points(t, "s2n"), fmt="s-", color=f"C{7 + idx}",
                          label=f"σ = {sd:g}, main grid")
        for i, (sd, t) in enumerate(grid.groupby("sigma")):
            _far_errorbar(ax, _far_points(t, "sigma2_over_n"), fmt="o-", color=f"C{i}",
                          label=f"σ = {sd:g}")
        ax.set(xscale="log", xlabel="σ²/n (noise variance / sample size)",
               ylabel="share of fits with D1 > 0.5", title="far fits vs σ²/n", ylim=(-0.02, 1.02))
        base = grid[(grid["i"] == 0) & (grid["j"] == 0)]
        for (i, j), t in grid.groupby(["i", "j"]):
            if i != j and j != 0:
                continue
            x = np.sort(t["d1"].to_numpy())
            same = i == j
            bx.step(x, np.arange(1, x.size + 1) / x.size, where="post", lw=1.4,
                    ls="-" if same else "--", color=f"C{i}",
                    label=f"σ = {t['sigma'].iloc[0]:g}, n = {int(t['n'].iloc[0])}"
                          + ("" if same else f" (σ²/n × {study.ratio ** (2 * i):g})"))
        bx.set(xscale="log", xlabel="D1 (Voronoi loss)", ylabel="empirical CDF",
               title=f"D1: σ²/n = {base['sigma2_over_n'].iloc[0]:.3g} (solid)\n"
                     "vs σ changed alone (dashed)")
        log_ticks(ax, "x")
        for a in (ax, bx):
            a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8.5, handlelength=1.5)
        fig.suptitle("MoE-LSE, over-fitted sigmoid experts: the LSE depends on σ²/n")
        return savefig(fig, ctx.figdir / "moe-scaling")
