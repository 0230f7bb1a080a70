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

The optimiser claims: ``moe.optimizer.below_truth`` (objective at the fit <= objective at G*,
necessary for the LSE, not sufficient) and ``moe.optimizer.global`` (within 0.1 sigma^2 of a
many-start bounded scipy ``trf`` reference on fresh problems; study ``moe-global``).

The studies are imported inside the checks and figures (``theorylab list`` stays light).
"""

from __future__ import annotations

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, Equality, RateBand, RateBound, Threshold
from theorylab.plotting import figure, savefig, style

PAPER = "MoE-LSE"
STUDIES = {"moe-rates": "theorylab.simulations.moe_rates",  # study name -> its module
           "moe-global": "theorylab.simulations.moe_global"}
LSE_TOL = 1e-9          # relative slack of "objective at the fit ≤ objective at the truth"
LSE_MIN_FRACTION = 0.99
SLOPE_HALF_WIDTH = 0.125  # half the gap between the rates 1/2 and 1/4: a CI cannot hold both
# the (expert, case) grid of simulations.moe_rates.CASES (kept here so that registering the
# claims imports no study; a test checks that the two agree)
CASES = tuple((e, c) for e in ("sigmoid", "tanh", "linear") for c in ("exact", "over"))


def _table(ctx: Context, expert: str, case: str):
    from theorylab.simulations.moe_rates import case_study
    return ctx.run(case_study(expert, case, quick=ctx.quick))


def _slope_verdict(table, column: str, r: float, two_sided: bool) -> Verdict:
    """Slope of log ``column`` vs log n against the band of rate r: two-sided (the CI meets the
    band) or the upper bound (the CI reaches the band or lies below); both need a decay."""
    from theorylab.stats import band_overlaps, loglog_slope, rate_band, within_bound
    fit = loglog_slope(table["n"], table[column])
    theory_scale = loglog_slope(table["n"], table[column], scale="logn_over_n")
    band = rate_band(table["n"], r)
    crit = (RateBand if two_sided else RateBound)(band, max_half_width=SLOPE_HALF_WIDTH)
    return Verdict(measured=fit.slope, criterion=crit, ci=fit.ci,
                   details={"band": band, "tight": band_overlaps(fit.ci, band),
                            "within_bound": within_bound(fit.ci, band),
                            "slope_vs_log(logn/n)": theory_scale.slope,
                            "ci_vs_log(logn/n)": theory_scale.ci, "n_obs": fit.n_obs,
                            "median_by_n": table.groupby("n")[column].median().to_dict()})


def _rate_verdict(ctx: Context, expert: str, case: str, column: str, r: float) -> Verdict:
    return _slope_verdict(_table(ctx, expert, case), column, r, two_sided=case == "exact")


def _register_rate(column: str, expert: str, case: str, r: float, what: str) -> None:
    how = (f"decays as n^-{r} (up to the theorems' log factor)" if case == "exact"
           else f"is O_P((log n / n)^{r}): it decays no slower than n^-{r} up to the log factor")
    claim(f"moe.{column}.{expert}.{case}", paper=PAPER, kind="simulation",
          statement=f"{what} of {case}-fitted {expert} experts {how}")(
        lambda ctx: _rate_verdict(ctx, expert, case, column, r))


def _register_tightness(column: str, expert: str, r: float, what: str) -> None:
    """Report-only: is the over-fitted O_P bound attained on the main grid (the two-sided test)?
    The paper proves upper bounds only, so "faster than the bound" is not a failure of the paper;
    the tail claims (n = 10^4 ... 10^6) test attainment past the pre-asymptotic range."""
    claim(f"moe.tight.{column}.{expert}.over", paper=PAPER, kind="simulation", must_hold=False,
          statement=f"{what} of over-fitted {expert} experts attains the bound's rate n^-{r} on "
                    "the main grid (two-sided; report-only: the theorems give upper bounds)")(
        lambda ctx: _slope_verdict(_table(ctx, expert, "over"), column, r, two_sided=True))


for _expert, _case in CASES:
    _register_rate("l2", _expert, _case, 0.5, "the L2 regression error ‖f_Ĝ − f_G*‖")
    if _case == "over":
        _register_tightness("l2", _expert, 0.5, "the L2 regression error")
for _expert in ("sigmoid", "tanh"):
    for _case in ("exact", "over"):
        _register_rate("d1", _expert, _case, 0.5, "the Voronoi loss D1")
    _register_rate("exact_err", _expert, "exact", 0.5, "the parameter error of exactly-specified atoms")
    _register_rate("over_err", _expert, "over", 0.25, "the parameter error of over-specified atoms")
    _register_tightness("d1", _expert, 0.5, "the Voronoi loss D1")
    _register_tightness("over_err", _expert, 0.25, "the parameter error of over-specified atoms")


def _register_tail(column: str, r: float, what: str) -> None:
    claim(f"moe.tail.{column}.sigmoid.over", paper=PAPER, kind="simulation",
          statement=f"{what} of over-fitted sigmoid experts attains n^-{r} on n = 10^4 ... 10^6 "
                    "(two-sided): the O_P bound is sharp once past the pre-asymptotic range")(
        lambda ctx: _slope_verdict(_tail_table(ctx), column, r, two_sided=True))


def _tail_table(ctx: Context):
    from theorylab.simulations.moe_rates import tail_study
    return ctx.run(tail_study(ctx.quick))


_register_tail("l2", 0.5, "the L2 regression error")
_register_tail("d1", 0.5, "the Voronoi loss D1")
_register_tail("over_err", 0.25, "the parameter error of over-specified atoms")


@claim("moe.d1.linear_slower_than_sigmoid", paper=PAPER, kind="simulation",
       statement="over-fitted linear experts converge markedly slower in D1 than sigmoid experts "
                 "(non-overlapping slope CIs)")
def _(ctx: Context) -> Verdict:
    from theorylab.stats import loglog_slope
    slopes = {e: loglog_slope(t["n"], t["d1"]) for e in ("sigmoid", "linear")
              for t in [_table(ctx, e, "over")]}
    lin, sig = slopes["linear"], slopes["sigmoid"]
    # the CIs are disjoint (linear above) iff this interval of the difference lies above 0
    return Verdict(measured=lin.slope - sig.slope,
                   criterion=CIAbove(0.0, max_half_width=2 * SLOPE_HALF_WIDTH),
                   ci=(lin.ci_lo - sig.ci_hi, lin.ci_hi - sig.ci_lo),
                   details={"linear": lin._asdict(), "sigmoid": sig._asdict()})


@claim("moe.optimizer.below_truth", paper=PAPER, kind="simulation",
       statement=f"in >= {LSE_MIN_FRACTION:.0%} of the rate study's fits the objective at the fit "
                 f"is <= the objective at G* (+{LSE_TOL:g} relative): necessary for the fit to be "
                 "the LSE, not sufficient (moe.optimizer.global measures globality)")
def _(ctx: Context) -> Verdict:
    found = {f"{e}.{c}": _table(ctx, e, c)["lse_found"].astype(bool) for e, c in CASES}
    allfits = np.concatenate([v.to_numpy() for v in found.values()])
    frac = float(allfits.mean())
    return Verdict(measured=frac, criterion=Threshold(">=", LSE_MIN_FRACTION),
                   details={"n_fits": int(allfits.size),
                            "fraction_by_case": {k: float(v.mean()) for k, v in found.items()}})


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
    """The over-fitted sigmoid losses on n = 10^4 ... 10^6 (claims moe.tail.*)."""
    import matplotlib.pyplot as plt

    from theorylab.simulations.moe_rates import tail_study
    with style():
        fig, ax = plt.subplots(figsize=(5.5, 5.6))
        _panel(ax, ctx.load(tail_study(quick=ctx.quick)), "sigmoid experts, over-fitted (k = k*+1), tail")
        return savefig(fig, ctx.figdir / "moe-tail")
