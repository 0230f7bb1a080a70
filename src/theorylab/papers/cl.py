r"""Continual-learning claims and figures (Qu, Wang, Bogatinovski, Wang, ... "Recent Advances of
Continual Learning in Computer Vision: An Overview", arXiv 2109.11369).

All claims read :class:`~theorylab.empirical.continual.study.ContinualStudy`: one strategy per
family of the overview (regularisation: EWC, SI; distillation: LwF; memory: experience replay,
A-GEM; generative replay: DGR with a VAE; parameter isolation: PackNet), with naive fine-tuning and
joint training as the bounds, on Split Fashion-MNIST (task- and class-incremental) and Permuted
Fashion-MNIST (domain-incremental). Every comparison is paired by seed (the strategies of one seed
share its data subset) and decided by the 95 % t-interval over seeds of the paired difference.

The expectations per method in the class-incremental setting come from the literature, not from
our runs: regularisation- and distillation-only methods (EWC, SI, LwF) collapse to about the last
task's accuracy, as naive fine-tuning does (van de Ven & Tolias, "Three scenarios for continual
learning", arXiv 1904.07734: "regularization-based approaches ... fail" in class-IL; their Split
MNIST class-IL numbers, as quoted in book/papers.md and not checked against their table here:
naive 19.90, EWC 20.01, SI 19.99, LwF 23.85 %); methods that replay data or its gradients keep
most of it (same source: DGR 90.79 %). So EWC, SI
and LwF are tested for *no* gain over naive beyond :data:`COLLAPSE_MARGIN` (LwF's published gain is
3.95 points), replay, A-GEM and generative replay for a gain. PackNet needs the task's identity at
test time and runs in the task-incremental setting only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, CIBelow, Equality, Measured
from theorylab.plotting import figure, legend_beside, savefig, style
from theorylab.stats import mean_ci

if TYPE_CHECKING:
    import pandas as pd

PAPER = "CL-overview"
STUDIES = {"cl-vision": "theorylab.empirical.continual.study"}
COLLAPSE = ("ewc", "si", "lwf")            # expected to collapse in class-IL (literature)
KEEPS = ("replay", "agem", "generative")   # expected to beat naive in class-IL (literature)
COLLAPSE_MARGIN = 0.10     # "no gain": ACC(m) − ACC(naive) below 10 points (LwF's is 3.95)
ACC_HALF_WIDTH = 0.10      # precision of a paired ACC/BWT difference: a CI wider than ±10 points
COLLAPSE_HALF_WIDTH = 0.05  # ... and ±5 points where the bound itself is 10 points
JOINT_MARGIN = 0.02        # joint is an upper bound: no method above it by more than 2 points
#: Seeds per setting of the quick form (full size: the study's 5 seeds everywhere), from the
#: precision each setting's claims need, estimated on pilots at the quick sizes (sd over seeds):
#: EWC's class-IL gain over naive (0.040) needs 12 seeds for its CI to clear the 0.10 bound;
#: generative replay's gain (0.065, sd 0.045) and the other class-IL claims 6; EWC and SI in
#: task-IL (0.038 and 0.051 of their difference to joint, mean −0.05) 6 to stay below +0.02;
#: domain-IL naive − joint (−0.03 with two permuted tasks) 4. Every quick study shares the
#: stored task models (artifact stage ``task``), so seeds and methods in common train once.
QUICK_SEEDS = {"class": 6, "task": 6, "domain": 4}
QUICK_EWC_SEEDS = 12       # class-IL naive and EWC only
#: the task-IL regularisation methods re-decided with more seeds (cl.task.joint_bounds_regularisation)
REG_METHODS = ("ewc", "si")
REG_SEEDS = 20


def _studies(ctx: Context) -> list:
    """The studies the claims read: at full size the default study (every setting and method, 5
    seeds); at quick size one per setting with :data:`QUICK_SEEDS`, and naive/EWC class-IL with
    :data:`QUICK_EWC_SEEDS`."""
    from theorylab.empirical.continual.study import ContinualStudy
    if not ctx.quick:
        return [ContinualStudy()]
    q = ContinualStudy().quick()
    return [*(q.replace(settings=(s,), n_seeds=n) for s, n in QUICK_SEEDS.items()),
            q.replace(settings=("class",), methods=("naive", "ewc"), n_seeds=QUICK_EWC_SEEDS)]


def _union(tables) -> pd.DataFrame:
    """Rows of several studies' tables, each (record, setting, method, seed, i, j) once."""
    import pandas as pd
    t = pd.concat(list(tables), ignore_index=True)
    keys = [k for k in ("record", "setting", "method", "seed", "i", "j") if k in t.columns]
    return t.drop_duplicates(subset=keys).reset_index(drop=True)


def _table(ctx: Context) -> pd.DataFrame:
    return _union(ctx.run(st) for st in _studies(ctx))


def _loaded(ctx: Context) -> pd.DataFrame:
    return _union(ctx.load(st) for st in _studies(ctx))


def _summary(ctx: Context) -> pd.DataFrame:
    from theorylab.study import records
    return records(_table(ctx), "summary")


def paired_difference(summary: pd.DataFrame, setting: str, a: str, b: str,
                      column: str = "acc") -> dict:
    """Mean and 95 % t-interval over seeds of ``column``(a) − ``column``(b) in ``setting``."""
    s = summary[summary.setting == setting].pivot_table(index="seed", columns="method",
                                                         values=column)
    d = (s[a] - s[b]).dropna().to_numpy()
    mean, ci = mean_ci(d)
    return {"mean": mean, "ci": ci, "n_seeds": int(len(d)),
            a: float(s[a].mean()), b: float(s[b].mean())}


def versus_naive(summary: pd.DataFrame, method: str) -> Verdict:
    """Class-incremental ACC of ``method`` minus naive's: the collapse or the gain expected."""
    diff = paired_difference(summary, "class", method, "naive")
    crit = (CIBelow(COLLAPSE_MARGIN, COLLAPSE_HALF_WIDTH) if method in COLLAPSE
            else CIAbove(0.0, ACC_HALF_WIDTH))
    return Verdict(measured=diff["mean"], criterion=crit, ci=diff["ci"], details=diff)


for _m in COLLAPSE:
    claim(f"cl.class.{_m}.collapses", paper=PAPER, kind="empirical",
          statement=f"in class-incremental Split Fashion-MNIST {_m.upper()} gains no more than "
                    f"{COLLAPSE_MARGIN:.0%} ACC over naive fine-tuning (it collapses, as the "
                    "literature reports)")(lambda ctx, m=_m: versus_naive(_summary(ctx), m))
for _m in KEEPS:
    claim(f"cl.class.{_m}.beats_naive", paper=PAPER, kind="empirical",
          statement=f"in class-incremental Split Fashion-MNIST {_m} has a higher ACC than naive "
                    "fine-tuning")(lambda ctx, m=_m: versus_naive(_summary(ctx), m))


@claim("cl.class.replay_forgets_less_than_ewc", paper=PAPER, kind="empirical",
       statement="in class-incremental Split Fashion-MNIST experience replay forgets less than "
                 "EWC: BWT(replay) > BWT(EWC)")
def _(ctx: Context) -> Verdict:
    diff = paired_difference(_summary(ctx), "class", "replay", "ewc", column="bwt")
    return Verdict(measured=diff["mean"], criterion=CIAbove(0.0, ACC_HALF_WIDTH), ci=diff["ci"],
                   details=diff)


@claim("cl.joint_upper_bound", paper=PAPER, kind="empirical",
       statement=f"joint training upper-bounds every method: in every setting no method's ACC "
                 f"exceeds joint's by more than {JOINT_MARGIN:.0%}")
def _(ctx: Context) -> Verdict:
    # Full size (5 seeds) it fails on task-IL EWC: 0.039 below joint, CI upper end +0.025 >
    # 0.02 (results/verify_full_cl.json). That verdict stands; the task-IL regularisation parts
    # are decided again with 20 seeds by cl.task.joint_bounds_regularisation, registered beside.
    return joint_upper_bound(_summary(ctx))


@claim("cl.task.joint_bounds_regularisation", paper=PAPER, kind="empirical",
       statement=f"in task-incremental Split Fashion-MNIST joint training upper-bounds the "
                 f"regularisation methods (EWC, SI) over {REG_SEEDS} seeds: neither's ACC exceeds "
                 f"joint's by more than {JOINT_MARGIN:.0%} (the parts of cl.joint_upper_bound "
                 "that 5 seeds left undecided or failed)")
def _(ctx: Context) -> Verdict:
    from theorylab.empirical.continual.study import ContinualStudy
    from theorylab.study import records
    if ctx.quick:   # the quick task-IL study (QUICK_SEEDS["task"] seeds)
        summary = _summary(ctx)
    else:
        summary = records(ctx.run(ContinualStudy(
            settings=("task",), methods=("naive", "joint", *REG_METHODS), n_seeds=REG_SEEDS)),
            "summary")
    return joint_upper_bound(summary[summary.setting == "task"], methods=REG_METHODS)


def joint_upper_bound(summary: pd.DataFrame, methods: tuple[str, ...] | None = None) -> Verdict:
    """Every (setting, method) (``methods``: those only): the CI of ACC(method) − ACC(joint)
    lies below the margin."""
    parts, measured, details = {}, {}, {}
    for setting, g in summary.groupby("setting"):
        for m in sorted((set(methods) if methods else set(g.method)) - {"joint"}):
            diff = paired_difference(summary, setting, m, "joint")
            key = f"{setting}.{m}"
            parts[key] = CIBelow(JOINT_MARGIN, ACC_HALF_WIDTH)
            measured[key] = Measured(diff["mean"], diff["ci"])
            details[key] = diff
    crit = AllOf(parts)
    worst = max(measured, key=lambda k: measured[k].ci[1])
    return Verdict(measured=measured[worst].value, criterion=crit, ci=measured[worst].ci,
                   parts=measured, details={"largest_upper_end": worst, **details})


def reference_metrics(R: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """ACC, BWT, FWT and forgetting by explicit loops over the definitions (the slow twin of
    :func:`theorylab.empirical.continual.metrics.summary`)."""
    T = len(R)
    acc = sum(R[T - 1][j] for j in range(T)) / T
    bwt = sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)
    fwt = sum(R[j - 1][j] - b[j] for j in range(1, T)) / (T - 1)
    forg = 0.0
    for j in range(T - 1):
        best = R[0][j]
        for lvl in range(1, T - 1):
            best = max(best, R[lvl][j])
        forg += best - R[T - 1][j]
    return {"acc": acc, "bwt": bwt, "fwt": fwt, "forgetting": forg / (T - 1)}


@claim("cl.metrics.definitions", paper=PAPER, kind="empirical",
       statement="ACC, BWT, FWT and forgetting as reported equal the definitions (Lopez-Paz & "
                 "Ranzato 2017; Chaudhry et al. 2018) evaluated by explicit loops on every "
                 "measured accuracy matrix")
def _(ctx: Context) -> Verdict:
    from theorylab.study import records
    table = _table(ctx)
    R_rows, summary = records(table, "R"), records(table, "summary")
    worst = 0.0
    for (s, m, seed), g in R_rows.groupby(["setting", "method", "seed"]):
        T = int(g.j.max()) + 1
        R = np.zeros((T, T))
        b = np.zeros(T)
        for row in g.itertuples():
            if row.i < 0:
                b[int(row.j)] = row.acc
            else:
                R[int(row.i), int(row.j)] = row.acc
        ref = reference_metrics(R, b)
        rep = summary[(summary.setting == s) & (summary.method == m) & (summary.seed == seed)]
        worst = max(worst, *(abs(float(rep[k].iloc[0]) - v) for k, v in ref.items()))
    return Verdict(measured=worst, criterion=Equality(0.0, abs_tol=1e-12),
                   details={"matrices": int(R_rows.groupby(["setting", "method", "seed"]).ngroups)})


LABELS = {"naive": "naive", "joint": "joint", "ewc": "EWC", "si": "SI", "lwf": "LwF",
          "replay": "replay", "agem": "A-GEM", "generative": "gen. replay", "packnet": "PackNet"}
SETTING_TITLES = {"task": "task-incremental", "class": "class-incremental",
                  "domain": "domain-incremental (permuted)"}


@figure("cl-acc-bwt", paper=PAPER)
def acc_bwt_figure(ctx: Context):
    """ACC vs BWT per method and setting (mean ± 95 % CI over seeds)."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    summary = records(_loaded(ctx), "summary")
    settings = [s for s in SETTING_TITLES if s in set(summary.setting)]
    with style():
        fig, axes = plt.subplots(len(settings), 1, figsize=(7.5, 3.2 * len(settings)),
                                 layout="constrained")
        axes = np.atleast_1d(axes)
        for ax, setting in zip(axes, settings, strict=True):
            g = summary[summary.setting == setting]
            for i, (m, gm) in enumerate(g.groupby("method", sort=False)):
                (ax_, (lo_a, hi_a)), (bw, (lo_b, hi_b)) = mean_ci(gm.acc), mean_ci(gm.bwt)
                ax.errorbar(bw, ax_, xerr=[[bw - lo_b], [hi_b - bw]], yerr=[[ax_ - lo_a], [hi_a - ax_]],
                            fmt="o", color=f"C{i}", label=LABELS.get(m, m), capsize=3)
            ax.set_title(SETTING_TITLES[setting])
            ax.set_xlabel("BWT (accuracy change on old tasks)")
            ax.set_ylabel("ACC (final mean accuracy)")
            legend_beside(ax)
        return savefig(fig, ctx.figdir / "cl-acc-bwt")


@figure("cl-accuracy-matrices", paper=PAPER)
def matrices_figure(ctx: Context):
    """Accuracy matrices R[i, j] (mean over seeds) in the class-incremental setting."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    R = records(_loaded(ctx), "R")
    R = R[(R.setting == "class") & (R.i >= 0)]
    methods = list(dict.fromkeys(R.method))
    cols = 3
    rows = int(np.ceil(len(methods) / cols))
    with style():
        fig, axes = plt.subplots(rows, cols, figsize=(7.5, 2.6 * rows), layout="constrained")
        for ax in np.ravel(axes)[len(methods):]:
            ax.set_visible(False)
        for ax, m in zip(np.ravel(axes), methods, strict=False):
            mat = R[R.method == m].pivot_table(index="i", columns="j", values="acc").to_numpy()
            im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
            ax.set_title(LABELS.get(m, m))
            ax.set_xlabel("task evaluated j")
            ax.set_ylabel("after task i")
            ax.set_xticks(range(mat.shape[1]))
            ax.set_yticks(range(mat.shape[0]))
        fig.colorbar(im, ax=axes, label="test accuracy", shrink=0.8)
        return savefig(fig, ctx.figdir / "cl-accuracy-matrices")
