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
  also attained (the two-sided test) is reported as ``tight`` in the verdict's details.
"""

from __future__ import annotations

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.plotting import figure, savefig, style
from theorylab.simulations.moe_rates import CASES, case_study, tail_study
from theorylab.simulations.rates import band_overlaps, loglog_slope, rate_band, within_bound
from theorylab.theory import moe as theory_moe

PAPER = "MoE-LSE"
LSE_TOL = 1e-9          # relative slack of "objective at the fit ≤ objective at the truth"
LSE_MIN_FRACTION = 0.99


def _table(ctx: Context, expert: str, case: str):
    return ctx.run(case_study(expert, case, quick=ctx.quick))


def _slope_verdict(table, column: str, r: float, two_sided: bool) -> Verdict:
    """Slope of log ``column`` vs log n against the band of rate r: two-sided (the CI meets the
    band) or the upper bound (the CI reaches the band or lies below); both need a decay."""
    fit = loglog_slope(table["n"], table[column])
    theory_scale = loglog_slope(table["n"], table[column], scale="logn_over_n")
    band = rate_band(table["n"], r)
    decays = fit.ci_hi < 0  # a rate claim needs a measured decay, not just a wide CI
    tight = band_overlaps(fit.ci, band)
    bounded = within_bound(fit.ci, band)  # not slower than (log n / n)^r
    holds = decays and (tight if two_sided else bounded)
    expected = -r if two_sided else f"<= {-r:g} (bound)"
    return Verdict(measured=fit.slope, expected=expected, ci=fit.ci, holds=bool(holds),
                   details={"criterion": "two-sided" if two_sided else "upper bound",
                            "band": band, "tight": tight, "within_bound": bounded,
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


for _expert, _case in CASES:
    _register_rate("l2", _expert, _case, 0.5, "the L2 regression error ‖f_Ĝ − f_G*‖")
for _expert in ("sigmoid", "tanh"):
    for _case in ("exact", "over"):
        _register_rate("d1", _expert, _case, 0.5, "the Voronoi loss D1")
    _register_rate("exact_err", _expert, "exact", 0.5, "the parameter error of exactly-specified atoms")
    _register_rate("over_err", _expert, "over", 0.25, "the parameter error of over-specified atoms")


def _register_tail(column: str, r: float, what: str) -> None:
    claim(f"moe.tail.{column}.sigmoid.over", paper=PAPER, kind="simulation",
          statement=f"{what} of over-fitted sigmoid experts attains n^-{r} on n = 10^4 ... 10^6 "
                    "(two-sided): the O_P bound is sharp once past the pre-asymptotic range")(
        lambda ctx: _slope_verdict(ctx.run(tail_study(ctx.quick)), column, r, two_sided=True))


_register_tail("l2", 0.5, "the L2 regression error")
_register_tail("d1", 0.5, "the Voronoi loss D1")
_register_tail("over_err", 0.25, "the parameter error of over-specified atoms")


@claim("moe.d1.linear_slower_than_sigmoid", paper=PAPER, kind="simulation",
       statement="over-fitted linear experts converge markedly slower in D1 than sigmoid experts "
                 "(non-overlapping slope CIs)")
def _(ctx: Context) -> Verdict:
    slopes = {e: loglog_slope(t["n"], t["d1"]) for e in ("sigmoid", "linear")
              for t in [_table(ctx, e, "over")]}
    lin, sig = slopes["linear"], slopes["sigmoid"]
    return Verdict(measured=lin.slope - sig.slope, expected="> 0, CIs disjoint",
                   ci=(lin.ci_lo - sig.ci_hi, lin.ci_hi - sig.ci_lo),
                   holds=bool(lin.ci_lo > sig.ci_hi),
                   details={"linear": lin._asdict(), "sigmoid": sig._asdict()})


@claim("moe.optimizer.finds_lse", paper=PAPER, kind="simulation",
       statement=f"the optimiser finds the LSE: in >= {LSE_MIN_FRACTION:.0%} of fits the objective "
                 f"at the fit is <= the objective at G* (+{LSE_TOL:g} relative)")
def _(ctx: Context) -> Verdict:
    found = {f"{e}.{c}": _table(ctx, e, c)["lse_found"].astype(bool) for e, c in CASES}
    allfits = np.concatenate([v.to_numpy() for v in found.values()])
    frac = float(allfits.mean())
    return Verdict(measured=frac, expected=f">= {LSE_MIN_FRACTION}", holds=frac >= LSE_MIN_FRACTION,
                   details={"n_fits": int(allfits.size),
                            "fraction_by_case": {k: float(v.mean()) for k, v in found.items()}})


def _register_identifiability(family: str) -> None:
    expected = family in ("sigmoid", "tanh")

    @claim(f"moe.identifiability.{family}", paper=PAPER, kind="theory",
           statement=f"{family} experts are {'' if expected else 'not '}strongly identifiable "
                     "(the condition's function set is linearly independent)")
    def _(ctx: Context) -> Verdict:
        res = theory_moe.verify(family)  # res.holds: the set is linearly independent
        return Verdict(measured=bool(res.holds), expected=expected,
                       holds=bool(res.holds == expected and res.numeric_agrees),
                       details={"method": res.method, "dependence": str(res.dependence),
                                "vanishing": list(res.vanishing),
                                "numeric_singular_ratio": res.numeric_ratio})


for _family in ("sigmoid", "tanh", "linear", "polynomial"):
    _register_identifiability(_family)


COLUMNS = (("l2", "L2 error"), ("d1", "D1"), ("exact_err", "exact atoms"),
           ("over_err", "over-specified atoms"))


def _panel(ax, table, title: str) -> None:
    """Median and IQR per n of each loss in ``table``, with its OLS line, on log-log axes."""
    for name, label in COLUMNS:
        vals = table[["n", name]].dropna()
        if vals.empty:
            continue
        g = vals.groupby("n")[name]
        ns = np.array(sorted(g.groups))
        med = g.median().loc[ns]
        q1, q3 = g.quantile(0.25).loc[ns], g.quantile(0.75).loc[ns]
        fit = loglog_slope(vals["n"], vals[name])
        line, = ax.loglog(ns, med, "o", ms=4,
                          label=f"{label}: slope {fit.slope:.2f} [{fit.ci_lo:.2f}, {fit.ci_hi:.2f}]")
        ax.fill_between(ns, q1, q3, color=line.get_color(), alpha=0.15)
        ax.loglog(ns, np.exp(fit.intercept) * ns ** fit.slope, "-", color=line.get_color(), lw=1)
    ax.set_title(title)
    ax.legend(fontsize=7)


@figure("moe-rates", paper=PAPER)
def rate_figure(ctx: Context):
    """Median and IQR per n of each loss, with the OLS line, for every (expert, case)."""
    import matplotlib.pyplot as plt
    experts = ("sigmoid", "tanh", "linear")
    with style():
        fig, axes = plt.subplots(2, 3, figsize=(12, 7), sharex=True)
        for col, expert in enumerate(experts):
            for row, case in enumerate(("exact", "over")):
                _panel(axes[row, col], ctx.load(case_study(expert, case, quick=ctx.quick)),
                       f"{expert}, {case}-fitted (k={'k*' if case == 'exact' else 'k*+1'})")
                if row == 1:
                    axes[row, col].set_xlabel("n")
        fig.suptitle("MoE-LSE: convergence of the least-squares estimator "
                     "(median, IQR, OLS on all replicates)")
        fig.tight_layout()
        return savefig(fig, ctx.figdir / "moe-rates")


@figure("moe-tail", paper=PAPER)
def tail_figure(ctx: Context):
    """The over-fitted sigmoid losses on n = 10^4 ... 10^6 (claims moe.tail.*)."""
    import matplotlib.pyplot as plt
    with style():
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        _panel(ax, ctx.load(tail_study(quick=ctx.quick)), "sigmoid, over-fitted (k = k*+1), tail")
        ax.set_xlabel("n")
        fig.tight_layout()
        return savefig(fig, ctx.figdir / "moe-tail")
