r"""Foundation models in autonomous driving: claims and figure (Gao et al., "A Survey for
Foundation Models in Autonomous Driving", arXiv 2402.01105): planning as language modelling in
the style of GPT-Driver (Mao et al. 2023) and scenario generation, in highway-env's highway.

All claims read :class:`~theorylab.empirical.driving.study.DrivingStudy`. The expert is
highway-env's IDM + MOBIL vehicle; the batched simulator that generates the data is checked
against highway-env from the same scenes. Planner comparisons are paired by seed (every seed
trains on the same data; constant velocity and the expert are deterministic) and decided by the
95 % t-interval over seeds of the paired difference:

.. math:: d_s = \mathrm{L2}_{LM,s}(t) - \mathrm{L2}_{CV}(t), \qquad t = 1, 2, 3\ \mathrm{s}.

The survey itself makes no quantitative claim about closed-loop collisions or about scene
generators: those comparisons are registered report-only (``must_hold=False``), as measured.

Generated scenes are drawn truncated to the training scenes' support since 2026-12-01, after the
must-hold realism claim was inconclusive at full size with the untruncated sampler; the claims at
the earlier setting stay registered beside the new ones (``*.untruncated``, report-only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, CIBelow, Equality, Measured
from theorylab.plotting import figure, savefig, style
from theorylab.stats import seed_paired_difference, wilson_ci

if TYPE_CHECKING:
    import pandas as pd

PAPER = "AD-FM-survey"
STUDIES = {"ad-driving": "theorylab.empirical.driving.study"}
AGREE_M = 1e-6            # m: a float64 re-implementation of the same formulas, to rounding
L2_HALF_WIDTH = 0.1       # m: precision of a paired L2 difference over seeds
RATE_HALF_WIDTH = 0.05    # precision of a paired collision-rate difference over seeds
REALISM_HALF_WIDTH = 0.25  # precision of a paired difference of mean normalised W1
#: GPT-Driver (Mao et al. 2023) on nuScenes, open loop, averaged over 1/2/3 s (different data).
GPT_DRIVER = {"l2_avg_m": 0.48, "collision_avg_pct": 0.35}


def _study(ctx: Context):
    from theorylab.empirical.driving.study import DrivingStudy
    return ctx.sized(DrivingStudy())


def _records(ctx: Context, kind: str) -> pd.DataFrame:
    from theorylab.study import records
    return records(ctx.run(_study(ctx)), kind)


def paired(table: pd.DataFrame, a: str, b: str, column: str, by: str = "model") -> dict:
    """Mean and 95 % t-interval over seeds of ``column``(a) − ``column``(b); a row scored once
    (a deterministic planner, seed 0) is paired with every seed."""
    va = table[table[by] == a].set_index("seed")[column]
    vb = table[table[by] == b].set_index("seed")[column]
    return seed_paired_difference(va, vb, a, b)


@claim("ad.sim.batched_matches_highway_env", paper=PAPER, kind="empirical",
       statement="the batched simulator (kinematics, IDM, MOBIL of many scenes at once) "
                 "reproduces highway-env's trajectories from the same initial scenes: every "
                 f"vehicle's position within {AGREE_M:g} m at every 15 Hz step")
def _(ctx: Context) -> Verdict:
    a = _records(ctx, "agreement").iloc[0]
    return Verdict(measured=float(a.max_position_error_m),
                   criterion=Equality(0.0, abs_tol=AGREE_M),
                   details={k: (float(a[k]) if k.endswith(("_m", "_error", "_s")) else int(a[k]))
                            for k in ("scenes", "seconds", "vehicle_steps", "max_position_error_m",
                                      "max_speed_error", "crash_flag_mismatches", "lane_changes",
                                      "highway_env_cpu_s", "batched_cpu_s")})


def _l2(ctx: Context, other: str) -> Verdict:
    o = _records(ctx, "openloop")
    parts, crit, details = {}, {}, {}
    for h, g in o.groupby("horizon"):
        d = paired(g, "lm", other, "l2")
        key = f"{h:g}s"
        parts[key] = Measured(d["mean"], d["ci"])
        crit[key] = CIBelow(0.0, L2_HALF_WIDTH)
        details[key] = d
    avg = o.groupby(["model", "seed"], as_index=False).l2.mean()
    details["avg"] = paired(avg, "lm", other, "l2")
    details["gpt_driver_nuscenes_reported"] = GPT_DRIVER
    first = next(iter(parts))
    return Verdict(measured=parts[first].value, criterion=AllOf(crit), ci=parts[first].ci,
                   parts=parts, details=details)


@claim("ad.planner.lm_beats_cv_l2", paper=PAPER, kind="empirical",
       statement="planning as language modelling: the LM planner's open-loop L2 error of the "
                 "waypoints at 1, 2 and 3 s is below the constant-velocity baseline's at each "
                 "horizon (95 % CI over seeds of the paired difference below 0)")
def _(ctx: Context) -> Verdict:
    return _l2(ctx, "cv")


@claim("ad.planner.lm_vs_mlp_l2", paper=PAPER, kind="empirical", must_hold=False,
       statement="the LM planner's open-loop L2 at 1, 2 and 3 s is below the MLP's on the same "
                 "features (report-only: the survey makes no such claim)")
def _(ctx: Context) -> Verdict:
    return _l2(ctx, "mlp")


def _rates(c: pd.DataFrame) -> dict:
    out = {}
    for m, g in c.groupby("model", sort=False):
        k, n = int(g.collisions.sum()), int(g.episodes.sum())
        out[m] = {"collisions": k, "episodes": n, "rate": k / n, "wilson_ci": wilson_ci(k, n),
                  "progress_m": float(g.progress_m.mean()), "seeds": int(len(g)),
                  "plan_cpu_per_decision": float(g.plan_cpu_per_decision.mean())}
    return out


@claim("ad.closed.lm_collisions_vs_mlp", paper=PAPER, kind="empirical", must_hold=False,
       statement="in closed loop (the ego replans at 1 Hz among expert vehicles in the batched "
                 "simulator) the LM planner's collision rate is at most the MLP's (95 % CI over "
                 "seeds of the paired difference <= 0); the expert's and constant velocity's "
                 "rates and every planner's progress in the details (report-only: the survey "
                 "makes no closed-loop claim)")
def _(ctx: Context) -> Verdict:
    c = _records(ctx, "closed")
    d = paired(c, "lm", "mlp", "collision_rate")
    return Verdict(measured=d["mean"], ci=d["ci"],
                   criterion=CIBelow(0.0, RATE_HALF_WIDTH, inclusive=True),
                   details={"paired": d, "by_model": _rates(c)})


def _realism(r: pd.DataFrame) -> pd.DataFrame:
    return r[r.feature == "mean"]


#: Until 2026-12-01 the generator was sampled without truncation (the log-normal gap reached
#: kilometres for generator seeds 2-4 of the full run); the scene-generation claims at that
#: setting stay registered (report-only, recomputed from source ``generated_untruncated``: the
#: same generators and noise seeds). Their recorded verdicts then (not recomputed here), mean
#: [95 % CI] over seeds of the paired difference:
EARLIER = {
    "ad.scenegen.realism_beats_shuffled": {
        "full (5 seeds)": "+16.95 [-3.10, 37.0], inconclusive (must-hold then)",
        "quick (3 seeds)": "-0.536 [-0.644, -0.427], holds"},
    "ad.scenegen.raises_expert_collisions": {
        "full (5 seeds)": "+0.0118 [0.0078, 0.0158], holds (report-only)",
        "quick (3 seeds)": "+0.0067 [-0.0016, 0.0149], fails (report-only)"},
}
UNTRUNCATED = "generated_untruncated"
_EARLIER_SETTING = ("the earlier setting: the generator sampled without truncation to the "
                    "training support, as until 2026-12-01")


def _realism_verdict(ctx: Context, source: str) -> Verdict:
    r = _records(ctx, "realism")
    d = paired(_realism(r), source, "shuffled", "w1", by="source")
    per_feature = r.groupby(["source", "feature"]).w1.mean().unstack(0).to_dict()
    details = {"paired": d, "mean_w1_by_source_and_feature": per_feature}
    if source == UNTRUNCATED:
        details["recorded_2026_12_01"] = EARLIER["ad.scenegen.realism_beats_shuffled"]
    return Verdict(measured=d["mean"], ci=d["ci"], criterion=CIBelow(0.0, REALISM_HALF_WIDTH),
                   details=details)


_REALISM = ("scenario generation: scenes from the autoregressive generator{how} are closer to "
            "held-out simulator scenes than the shuffled-marginals baseline (mean over "
            "features of the Wasserstein-1 distance in reference standard deviations; 95 % "
            "CI over seeds of the paired difference below 0)")


@claim("ad.scenegen.realism_beats_shuffled", paper=PAPER, kind="empirical",
       statement=_REALISM.format(how=" (each vehicle drawn from its conditional truncated to "
                                     "the training scenes' range of gaps and speeds)"))
def _(ctx: Context) -> Verdict:
    return _realism_verdict(ctx, "generated")


@claim("ad.scenegen.realism_beats_shuffled.untruncated", paper=PAPER, kind="empirical",
       must_hold=False, statement=_REALISM.format(how="") + f" (report-only, {_EARLIER_SETTING})")
def _(ctx: Context) -> Verdict:
    return _realism_verdict(ctx, UNTRUNCATED)


def _critical_verdict(ctx: Context, source: str) -> Verdict:
    c = _records(ctx, "critical").copy()
    c["rate"] = c.collisions / c.scenes
    c["near_rate"] = c.near_misses / c.scenes
    d = paired(c, source, "simulator", "rate", by="source")
    pooled = {s: {"collisions": int(g.collisions.sum()), "near_misses": int(g.near_misses.sum()),
                  "scenes": int(g.scenes.sum()),
                  "collision_wilson_ci": wilson_ci(int(g.collisions.sum()), int(g.scenes.sum()))}
              for s, g in c.groupby("source")}
    details = {"paired": d, "pooled": pooled}
    if source == UNTRUNCATED:
        details["recorded_2026_12_01"] = EARLIER["ad.scenegen.raises_expert_collisions"]
    return Verdict(measured=d["mean"], ci=d["ci"], criterion=CIAbove(0.0, RATE_HALF_WIDTH),
                   details=details)


_CRITICAL = ("the expert (every vehicle IDM + MOBIL) collides more often when started from "
             "generated scenes than from held-out simulator scenes (95 % CI over seeds of "
             "the paired difference of collision rates above 0; near misses and the "
             "shuffled baseline in the details; report-only: as measured)")


@claim("ad.scenegen.raises_expert_collisions", paper=PAPER, kind="empirical", must_hold=False,
       statement=_CRITICAL)
def _(ctx: Context) -> Verdict:
    return _critical_verdict(ctx, "generated")


@claim("ad.scenegen.raises_expert_collisions.untruncated", paper=PAPER, kind="empirical",
       must_hold=False, statement=f"{_CRITICAL[:-1]}; {_EARLIER_SETTING})")
def _(ctx: Context) -> Verdict:
    return _critical_verdict(ctx, UNTRUNCATED)


LABELS = {"expert": "expert (IDM + MOBIL)", "lm": "LM planner", "mlp": "MLP", "cv": "constant velocity"}


@figure("ad-closed-loop", paper=PAPER)
def closed_loop_figure(ctx: Context):
    """Closed-loop trajectories of one test scene under each planner (ego bold) and the metrics
    table: open-loop L2 at 1/2/3 s, closed-loop collision rate and progress."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    table = ctx.load(_study(ctx))
    tr, o, c = records(table, "traj"), records(table, "openloop"), records(table, "closed")
    models = [m for m in ("expert", "lm", "mlp", "cv") if m in set(tr.model)]
    with style():
        fig = plt.figure(figsize=(7.5, 2.0 * len(models) + 2.4), layout="constrained")
        gs = fig.add_gridspec(len(models) + 1, 1, height_ratios=[1] * len(models) + [1.3])
        x0 = tr[(tr.vehicle == 0) & (tr.step == 0)].x.iloc[0]
        first = None
        for i, m in enumerate(models):
            ax = fig.add_subplot(gs[i], sharex=first)
            first = first or ax
            g = tr[tr.model == m]
            for v, h in g.groupby("vehicle"):
                ego = v == 0
                ax.plot(h.x - x0, h.y, color="C3" if ego else "C7", lw=2.2 if ego else 1.0,
                        label="ego" if ego else None)
                hit = h[h.crashed]
                if len(hit):
                    ax.plot(hit.x.iloc[0] - x0, hit.y.iloc[0], "kx", ms=9)
            ax.invert_yaxis()
            ax.set_ylabel("y (m)")
            ax.set_title(f"{LABELS[m]}: scene 0, 20 s (× = collision)")
            if i == len(models) - 1:
                ax.set_xlabel("x from the ego's start (m)")
            else:
                ax.tick_params(labelbottom=False)
        ax = fig.add_subplot(gs[-1])
        ax.axis("off")
        rates = _rates(c)
        rows = []
        for m in models:
            cells = ["—"] * 3     # the expert is the data: its own L2 is 0
            if m in set(o.model):
                l2 = o[o.model == m].groupby("horizon").l2.mean()
                cells = [f"{l2.loc[h]:.2f}" for h in (1.0, 2.0, 3.0)]
            r = rates[m]
            rows.append([LABELS[m], *cells, f"{100 * r['rate']:.1f} %", f"{r['progress_m']:.0f}"])
        rows.append(["GPT-Driver, nuScenes*", f"avg {GPT_DRIVER['l2_avg_m']}", "", "",
                     f"{GPT_DRIVER['collision_avg_pct']} %*", "—"])
        t = ax.table(cellText=rows, colLabels=["planner", "L2 1 s (m)", "L2 2 s (m)",
                                               "L2 3 s (m)", "collisions", "progress (m)"],
                     loc="center", cellLoc="center",
                     colWidths=[0.3, 0.13, 0.13, 0.13, 0.15, 0.16])
        t.auto_set_font_size(False)
        t.set_fontsize(10)
        t.scale(1, 1.4)
        ax.set_title("open-loop L2 (test pairs), closed loop (mean over seeds)\n"
                     "* reported by Mao et al. 2023 on nuScenes, open loop: other data")
        return savefig(fig, ctx.figdir / "ad-closed-loop")
