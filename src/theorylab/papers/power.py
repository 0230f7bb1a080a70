r"""Power-system GNN claims and figures (Liao, Bak-Jensen, Pillai, Wang, Wang, "A Review of Graph
Neural Networks and Their Applications in Power Systems", J. Mod. Power Syst. Clean Energy 2022,
arXiv 2101.10025): a power-flow surrogate on pandapower's IEEE 118-bus case.

All claims read :class:`~theorylab.empirical.power.study.PowerFlowStudy`. Ground truth is
pandapower's Newton–Raphson (``pp.runpp``). The surrogates (GNN, MLP) and DC power flow are
scored on held-out cases drawn in the training load range; the comparisons are paired by seed
(every seed trains on the same data) and decided by the 95 % t-interval over seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIBelow, Equality, Measured, Threshold
from theorylab.plotting import figure, legend_beside, savefig, style
from theorylab.stats import mean_ci

if TYPE_CHECKING:
    import pandas as pd

PAPER = "POWER-GNN-review"
STUDIES = {"power-flow": "theorylab.empirical.power.study",
           "power-outage": "theorylab.empirical.power.outage"}
V_MAE_MAX = 1e-3          # p.u.
THETA_MAE_MAX = 0.5       # degrees
V_HALF_WIDTH = 5e-4       # precision of a V MAE (or a difference of two) over seeds, p.u.
THETA_HALF_WIDTH = 0.25   # ... of a θ MAE, degrees
MISMATCH_TOL = 1e-6       # p.u.
SPEEDUP_MIN = 100.0


def _study(ctx: Context):
    from theorylab.empirical.power.study import PowerFlowStudy
    return ctx.sized(PowerFlowStudy())


def _records(ctx: Context, kind: str) -> pd.DataFrame:
    from theorylab.study import records
    return records(ctx.run(_study(ctx)), kind)


def paired(scores: pd.DataFrame, a: str, b: str, column: str, split: str = "test") -> dict:
    """Mean and 95 % t-interval over seeds of ``column``(a) − ``column``(b); a model scored once
    (DC power flow, deterministic) is paired with every seed."""
    s = scores[scores.split == split]
    va = s[s.model == a].set_index("seed")[column]
    vb = s[s.model == b].set_index("seed")[column]
    if len(vb) == 1:
        vb = type(va)(float(vb.iloc[0]), index=va.index)
    d = (va - vb).dropna().to_numpy()
    mean, ci = mean_ci(d)
    return {"mean": mean, "ci": ci, "n_seeds": int(len(d)), a: float(va.mean()),
            b: float(vb.mean())}


@claim("power.mismatch_matches_pandapower", paper=PAPER, kind="empirical",
       statement="the AC power mismatch computed from our admittance matrix agrees with "
                 f"pandapower to {MISMATCH_TOL:g} p.u. on every solved case: it vanishes at "
                 "pandapower's solution and equals pandapower's own mismatch (its Ybus and Sbus) "
                 "at a state moved off the solution")
def _(ctx: Context) -> Verdict:
    d = _records(ctx, "data")
    worst = float(max(d.mismatch_at_solution.max(), d.mismatch_gap.max()))
    return Verdict(measured=worst, criterion=Equality(0.0, abs_tol=MISMATCH_TOL),
                   details={"cases": int(d.n_solved.sum()),
                            "at_solution": float(d.mismatch_at_solution.max()),
                            "vs_pandapower_off_solution": float(d.mismatch_gap.max()),
                            "non_converged": int(d.n_failed.sum())})


@claim("power.case118.gnn_accuracy", paper=PAPER, kind="empirical",
       statement=f"on case118 the GNN surrogate's V MAE is <= {V_MAE_MAX:g} p.u. (PQ buses) and "
                 f"its θ MAE <= {THETA_MAE_MAX:g}° (non-slack buses) on held-out cases in the "
                 "training load range (95 % CI over seeds)")
def _(ctx: Context) -> Verdict:
    s = _records(ctx, "score")
    g = s[(s.model == "gnn") & (s.split == "test")]
    parts, crit, details = {}, {}, {}
    for col, bound, hw in (("v_mae", V_MAE_MAX, V_HALF_WIDTH),
                           ("theta_mae", THETA_MAE_MAX, THETA_HALF_WIDTH)):
        mean, ci = mean_ci(g[col].to_numpy())
        parts[col] = Measured(mean, ci)
        crit[col] = CIBelow(bound, hw, inclusive=True)
        details[col] = {"mean": mean, "ci": ci, "per_seed": g[col].tolist()}
    return Verdict(measured=parts["v_mae"].value, criterion=AllOf(crit), ci=parts["v_mae"].ci,
                   parts=parts, details={**details, "n_seeds": int(len(g))})


def _beats(ctx: Context, other: str) -> Verdict:
    s = _records(ctx, "score")
    parts, crit, details = {}, {}, {}
    for col, hw in (("v_mae", V_HALF_WIDTH), ("theta_mae", THETA_HALF_WIDTH)):
        d = paired(s, "gnn", other, col)
        parts[col] = Measured(d["mean"], d["ci"])
        crit[col] = CIBelow(0.0, hw)
        details[col] = d
    return Verdict(measured=parts["v_mae"].value, criterion=AllOf(crit), ci=parts["v_mae"].ci,
                   parts=parts, details=details)


#: Registered must-hold and failed at their first measurement (2026-12-01, quick, CPU): report-only
#: since, with the failing verdict shown under the same id. The review makes neither claim; they
#: came from public GNN power-flow work on other data (book: "What is not reproduced").
NOT_REPRODUCED = ("power.case118.gnn_beats_mlp", "power.case118.batched_speedup")
_NOTE = (" (report-only since 2026-12-01: registered must-hold, it failed at its first "
         "measurement; the review states no such claim)")

for _other, _label in (("dc", "DC power flow"), ("mlp", "the MLP")):
    _id = f"power.case118.gnn_beats_{_other}"
    claim(_id, paper=PAPER, kind="empirical", must_hold=_id not in NOT_REPRODUCED,
          statement=f"on case118 the GNN's V MAE and θ MAE are both below those of {_label} "
                    "(95 % CI over seeds of the paired difference below 0)"
                    + (_NOTE if _id in NOT_REPRODUCED else ""))(
        lambda ctx, o=_other: _beats(ctx, o))


@claim("power.case118.batched_speedup", paper=PAPER, kind="empirical",
       must_hold="power.case118.batched_speedup" not in NOT_REPRODUCED,
       statement=f"batched GNN inference (DC power flow and features included) is >= "
                 f"{SPEEDUP_MIN:g}x faster per case than pp.runpp on the same machine in one "
                 "run (CPU seconds, one thread each; batch size, wall time and single-case "
                 "latency in the details)" + _NOTE)
def _(ctx: Context) -> Verdict:
    sp = _records(ctx, "speed")
    g = sp[sp.model == "gnn"].iloc[0]
    cols = ("batch_size", "runpp_cpu_s", "runpp_wall_s", "batched_cpu_s", "batched_wall_s",
            "single_cpu_s", "single_wall_s", "speedup_batched", "speedup_batched_wall",
            "speedup_single")
    details = {r["model"]: {c: r[c] for c in cols} for _, r in sp.iterrows()}
    return Verdict(measured=float(g.speedup_batched), criterion=Threshold(">=", SPEEDUP_MIN),
                   details=details)


LABELS = {"gnn": "GNN", "mlp": "MLP", "dc": "DC power flow"}


@figure("power-accuracy-speed", paper=PAPER)
def accuracy_speed_figure(ctx: Context):
    """θ MAE vs V MAE per model (mean ± 95 % CI over seeds; test and out-of-range load), and
    per-case time of each model against pp.runpp."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    table = ctx.load(_study(ctx))
    s, sp = records(table, "score"), records(table, "speed")
    with style():
        from matplotlib.ticker import FuncFormatter, LogLocator
        fig, (ax, bx) = plt.subplots(2, 1, figsize=(7.5, 7.5), layout="constrained")
        for i, (m, g) in enumerate(s.groupby("model", sort=False)):
            for split, marker in (("test", "o"), ("ood", "s")):
                h = g[g.split == split]
                if h.empty:
                    continue
                (v, (v0, v1)), (t, (t0, t1)) = mean_ci(h.v_mae), mean_ci(h.theta_mae)
                v0, v1, t0, t1 = (np.nan_to_num(x, nan=y) for x, y in
                                  ((v0, v), (v1, v), (t0, t), (t1, t)))
                ax.errorbar(v, t, xerr=[[v - v0], [v1 - v]], yerr=[[t - t0], [t1 - t]],
                            fmt=marker, color=f"C{i}", capsize=3,
                            label=f"{LABELS.get(m, m)} ({'in range' if split == 'test' else 'above range'})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("V MAE (p.u., PQ buses)")
        ax.set_ylabel("θ MAE (degrees)")
        ax.set_title("accuracy on held-out cases (mean ± 95 % CI over seeds)")
        legend_beside(ax)
        names = ["pp.runpp"] + [f"{LABELS[r.model]} batched" for r in sp.itertuples()] + \
            [f"{LABELS[r.model]} single" for r in sp.itertuples()]
        vals = [float(sp.runpp_cpu_s.iloc[0])] + list(sp.batched_cpu_s) + list(sp.single_cpu_s)
        bx.barh(names, np.asarray(vals) * 1e3, color=["C7"] + ["C0"] * len(sp) + ["C1"] * len(sp))
        bx.set_xscale("log")
        bx.set_xlabel("CPU milliseconds per case (one thread)")
        bx.set_ylabel("solver")
        bx.set_title(f"speed (batched: {int(sp.batch_size.iloc[0])} cases per batch)")
        return savefig(fig, ctx.figdir / "power-accuracy-speed")
