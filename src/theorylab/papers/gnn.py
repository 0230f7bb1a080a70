r"""Distributed GNN training claims and figures (Lin et al., "A Comprehensive Survey on Distributed
Training of Graph Neural Networks", Proceedings of the IEEE, 2023; arXiv 2211.05368).

All claims read :class:`~theorylab.empirical.gnn.study.DistGNNStudy`: full-graph GCN training
with halo exchange on P gloo workers launched on loopback (real ``torch.distributed`` process
groups), its single-process twin, and METIS / hash partitions of random stochastic block models.

* Full-graph training partitions the work, not the maths: P workers reproduce one process's
  parameters (same initialisation, same full-batch Adam steps) up to floating-point summation
  order, :data:`PARAM_REL_TOL` relative.
* The survey's communication cost model of full-graph training — remote (halo) nodes × feature
  dimension × layers — is what the workers send, byte for byte, counted at the calls.
* METIS, which minimises the edge cut, sends less than a hash partition: the factor
  Σ_p |R_p|(hash) / Σ_p |R_p|(METIS) over random graphs, with its 95 % t-interval.
* Mini-batch training with neighbour sampling on P workers equals its P shares run in turn,
  and fetches exactly the feature rows of its sampled inputs that other workers own.
* The staleness variant (PipeGCN-style: last epoch's halo features) changes accuracy by the
  measured gap (report-only: one graph, no interval).
* With owner-local seeds, METIS also cuts the feature fetch of mini-batch training: the factor
  of remote sampled inputs per epoch, hash / METIS, over random graphs (CI above 1).
* Partition batches (Cluster-GCN) on P workers equal their batches run in turn in one process
  and fetch exactly their batch nodes owned by other workers; side by side with neighbour
  sampling and full-graph training (report-only): bytes per epoch and test accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from theorylab.claims import Context, Verdict, claim
from theorylab.criteria import AllOf, CIAbove, Equality, Measured, Threshold
from theorylab.plotting import figure, legend_beside, savefig, style
from theorylab.stats import mean_ci

if TYPE_CHECKING:
    import pandas as pd

PAPER = "GNN-distributed"
STUDIES = {"gnn-distributed": "theorylab.empirical.gnn.study"}
PARAM_REL_TOL = 1e-5       # the tolerance: max |θ_P − θ_1| / max |θ_1|
FACTOR_HALF_WIDTH = 0.5    # precision of the METIS-vs-hash factor's CI
STALE_GAP = 0.05           # report-only: stale accuracy within 5 points of synchronous
WORKFLOWS = ("sync", "minibatch", "cluster")
KINDS = ("forward", "backward", "allreduce")


def _study(ctx: Context):
    from theorylab.empirical.gnn.study import DistGNNStudy
    return ctx.sized(DistGNNStudy())


def _records(ctx: Context, kind: str) -> pd.DataFrame:
    from theorylab.study import records
    return records(ctx.run(_study(ctx)), kind)


def _distributed(train: pd.DataFrame, variant: str) -> pd.DataFrame:
    return train[(train.P > 1) & (train.variant == variant)]


@claim("gnn.full_graph.equals_single", paper=PAPER, kind="empirical",
       statement=f"full-graph GCN training on P workers with halo exchange ends, after k epochs "
                 f"of the same steps from the same initialisation, at the single-process "
                 f"parameters to {PARAM_REL_TOL:g} relative (every P and partition)")
def _(ctx: Context) -> Verdict:
    return equals_single(_records(ctx, "train"))


def _params_within_tolerance(runs: pd.DataFrame, **details) -> Verdict:
    """Every run's parameters within PARAM_REL_TOL (relative) of its one-process reference."""
    parts = {f"P{r.P}.{r.method}{_tag(r)}": float(r.rel_param_diff) for r in runs.itertuples()}
    worst = max(parts, key=parts.get)
    return Verdict(measured=parts[worst], criterion=AllOf({k: Threshold("<=", PARAM_REL_TOL)
                                                           for k in parts}), parts=parts,
                   details={"worst": worst, **details})


def _bytes_match_model(runs: pd.DataFrame, kinds: tuple[str, ...]) -> Verdict:
    """Every run's counted ``bytes_<kind>`` equals its cost model's ``model_<kind>`` exactly."""
    parts, crits = {}, {}
    for r in runs.itertuples():
        for k in kinds:
            name = f"P{r.P}.{r.method}{_tag(r)}.{k}"
            parts[name] = int(getattr(r, f"bytes_{k}"))
            crits[name] = Equality(int(getattr(r, f"model_{k}")))
    off = max(abs(v - crits[k].value) for k, v in parts.items())
    return Verdict(measured=off, criterion=AllOf(crits), parts=parts,
                   details={"largest_difference_bytes": off})


def _tag(row) -> str:
    """``.owner`` / ``.global``: a mini-batch row's seed assignment (nothing for other rows)."""
    seeds = getattr(row, "seeds", None)
    return f".{seeds}" if isinstance(seeds, str) else ""


def equals_single(train: pd.DataFrame) -> Verdict:
    sync = _distributed(train, "sync")
    return _params_within_tolerance(sync, rank_disagreement=float(sync.rank_disagreement.max()),
                                    epochs=int(sync.epochs.max()))


@claim("gnn.full_graph.comm_matches_cost_model", paper=PAPER, kind="empirical",
       statement="the bytes full-graph workers hand to the communication calls equal the cost "
                 "model exactly: forward Σ_p|R_p|·Σ_l d_l·4, backward Σ_p|R_p|·Σ_{l≥1} d_l·4, "
                 "all-reduce P·(parameters)·4, per epoch")
def _(ctx: Context) -> Verdict:
    return comm_matches(_records(ctx, "train"))


def comm_matches(train: pd.DataFrame) -> Verdict:
    return _bytes_match_model(_distributed(train, "sync"), KINDS)


@claim("gnn.partition.metis_cuts_communication", paper=PAPER, kind="empirical",
       statement="METIS partitions send less halo traffic than hash partitions: the factor "
                 "Σ_p|R_p|(hash) / Σ_p|R_p|(METIS) over random SBM graphs has a 95 % CI above 1 "
                 "(for every P)")
def _(ctx: Context) -> Verdict:
    return metis_factor(_records(ctx, "partition"))


def metis_factor(part: pd.DataFrame, column: str = "halo_nodes") -> Verdict:
    """Per P: the mean over graphs of ``column``(hash) / ``column``(METIS) and its 95 % CI."""
    crits, measured, details = {}, {}, {}
    for P, g in part.groupby("P"):
        t = g.pivot_table(index="graph", columns="method", values=column)
        factor, ci = mean_ci((t["hash"] / t["metis"]).to_numpy())
        name = f"P{P}"
        crits[name] = CIAbove(1.0, FACTOR_HALF_WIDTH)
        measured[name] = Measured(factor, ci)
        details[name] = {"factor": factor, "ci": ci, "graphs": int(len(t)),
                         "halo_fraction_metis": float(g[g.method == "metis"].halo_fraction.mean()),
                         "halo_fraction_hash": float(g[g.method == "hash"].halo_fraction.mean())}
    low = min(measured, key=lambda k: measured[k].ci[0])
    return Verdict(measured=measured[low].value, criterion=AllOf(crits), ci=measured[low].ci,
                   parts=measured, details=details)


@claim("gnn.minibatch.equals_shares", paper=PAPER, kind="empirical",
       statement=f"mini-batch training with neighbour sampling on P workers (partitioned "
                 f"features fetched from their owners) ends at the parameters of its P shares "
                 f"run in turn in one process, to {PARAM_REL_TOL:g} relative")
def _(ctx: Context) -> Verdict:
    return _params_within_tolerance(_distributed(_records(ctx, "train"), "minibatch"))


@claim("gnn.minibatch.fetch_matches_remote_inputs", paper=PAPER, kind="empirical",
       statement="the feature bytes mini-batch workers fetch equal the remote input nodes of "
                 "their sampled blocks × d × 4 exactly (ids: × 8; all-reduce: steps·P·"
                 "(parameters)·4)")
def _(ctx: Context) -> Verdict:
    return _bytes_match_model(_distributed(_records(ctx, "train"), "minibatch"),
                              ("features", "ids", "allreduce"))


@claim("gnn.staleness.accuracy_gap", paper=PAPER, kind="empirical", must_hold=False,
       statement=f"report-only: the staleness variant (last epoch's halo features, PipeGCN-style) "
                 f"reaches the synchronous test accuracy within {STALE_GAP:.0%} (one graph; the "
                 f"gap is reported per P and partition)")
def _(ctx: Context) -> Verdict:
    train = _records(ctx, "train")
    sync = _distributed(train, "sync").set_index(["P", "method"]).accuracy
    stale = _distributed(train, "stale").set_index(["P", "method"]).accuracy
    gap = {f"P{P}.{m}": float(sync[(P, m)] - stale[(P, m)]) for P, m in sync.index}
    crit = AllOf({k: Threshold("<=", STALE_GAP) for k in gap})
    worst = max(gap, key=gap.get)
    return Verdict(measured=gap[worst], criterion=crit, parts=gap,
                   details={"sync_accuracy": float(sync.mean()),
                            "stale_accuracy": float(stale.mean())})


@claim("gnn.minibatch.metis_cuts_fetch", paper=PAPER, kind="empirical",
       statement="with owner-local seeds (each worker samples seeds it owns), METIS partitions "
                 "make mini-batch workers fetch fewer remote feature rows than hash partitions: "
                 "the factor of remote sampled inputs per epoch, hash / METIS, over random SBM "
                 "graphs has a 95 % CI above 1 (for every P)")
def _(ctx: Context) -> Verdict:
    part = _records(ctx, "partition")
    v = metis_factor(part, "minibatch_remote_owner")
    glob = metis_factor(part, "minibatch_remote_global")    # the same, seeds split globally
    v.details["global_seeds"] = {P: {"factor": d["factor"], "ci": d["ci"]}
                                 for P, d in glob.details.items()}
    return v


@claim("gnn.cluster.equals_shares", paper=PAPER, kind="empirical",
       statement=f"partition-batch training (Cluster-GCN: subgraphs induced by q random METIS "
                 f"clusters per worker and step) on P workers ends at the parameters of the "
                 f"workers' batches run in turn in one process, to {PARAM_REL_TOL:g} relative")
def _(ctx: Context) -> Verdict:
    return _params_within_tolerance(_distributed(_records(ctx, "train"), "cluster"))


@claim("gnn.cluster.fetch_matches_remote_nodes", paper=PAPER, kind="empirical",
       statement="the feature bytes partition-batch workers fetch equal their batch nodes owned "
                 "by other workers × d × 4 exactly (ids: × 8; all-reduce: steps·P·"
                 "(parameters)·4)")
def _(ctx: Context) -> Verdict:
    return _bytes_match_model(_distributed(_records(ctx, "train"), "cluster"),
                              ("features", "ids", "allreduce"))


@claim("gnn.workflows.cluster_sends_least", paper=PAPER, kind="empirical", must_hold=False,
       statement="report-only: with METIS owners, partition batches hand fewer bytes per epoch to "
                 "the communication calls than neighbour sampling and full-graph training (the "
                 "ratio to the smaller of the two is below 1, every P); bytes, accuracy and "
                 "seconds per epoch of the three workflows side by side (one graph)")
def _(ctx: Context) -> Verdict:
    return workflow_comparison(_records(ctx, "train"))


def workflow_comparison(train: pd.DataFrame) -> Verdict:
    rows = train[train.variant.isin(WORKFLOWS)]
    table = {f"P{r.P}.{r.method}.{r.variant}": {
        "bytes_per_epoch": float(r.bytes_per_epoch), "accuracy": float(r.accuracy),
        "seconds_per_epoch": float(r.seconds_per_epoch)} for r in rows.itertuples()}
    ratio = {}
    for P, g in rows[(rows.P > 1) & (rows.method == "metis")].groupby("P"):
        b = g.set_index("variant").bytes_per_epoch
        ratio[f"P{P}"] = float(b["cluster"] / min(b["sync"], b["minibatch"]))
    worst = max(ratio, key=ratio.get)
    return Verdict(measured=ratio[worst], criterion=AllOf({k: Threshold("<", 1.0)
                                                           for k in ratio}),
                   parts=ratio, details={"workflows": table})


@claim("gnn.real.metis_cuts_communication", paper=PAPER, kind="empirical", must_hold=False,
       statement="report-only: on real graphs — the graspologic connectomes (drosophila "
                 "mushroom body, left and right; 32 mouse brains) and pandapower grids — METIS "
                 "partitions have smaller halos than hash partitions: Σ_p|R_p|(hash) / "
                 "Σ_p|R_p|(METIS) above 1 per graph and P (the mice: the 95 % CI over the 32 "
                 "connectomes above 1)")
def _(ctx: Context) -> Verdict:
    return real_factor(_records(ctx, "real"))


def real_factor(real: pd.DataFrame) -> Verdict:
    """Per (graph family, P): hash / METIS halo nodes; a family of several graphs (the mice)
    gets its mean and 95 % CI, decided by CIAbove, a single graph by Threshold."""
    crits, measured, details = {}, {}, {}
    for (family, P), g in real.groupby(["family", "P"], sort=True):
        t = g.pivot_table(index="graph", columns="method", values="halo_nodes")
        ratio = (t["hash"] / t["metis"]).to_numpy()
        name = f"{family}.P{P}"
        if len(ratio) > 1:
            value, ci = mean_ci(ratio)
            crits[name], measured[name] = CIAbove(1.0, FACTOR_HALF_WIDTH), Measured(value, ci)
        else:
            value, ci = float(ratio[0]), None
            crits[name], measured[name] = Threshold(">", 1.0), value
        fr = g.groupby("method").halo_fraction.mean()
        details[name] = {"factor": value, "ci": ci, "graphs": len(ratio), "n": int(g.n.iloc[0]),
                         "edges": int(g.m.iloc[0]), "halo_fraction_metis": float(fr["metis"]),
                         "halo_fraction_hash": float(fr["hash"])}
    low = min(details, key=lambda k: details[k]["factor"])
    return Verdict(measured=details[low]["factor"], criterion=AllOf(crits), parts=measured,
                   details=details)


@figure("gnn-communication", paper=PAPER)
def communication_figure(ctx: Context):
    """Halo fraction per partitioner and P (mean ± 95 % CI over graphs), and bytes per epoch of
    full-graph training counted vs the cost model."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    table = ctx.load(_study(ctx))
    part, train = records(table, "partition"), records(table, "train")
    with style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.4), layout="constrained")
        for i, (m, g) in enumerate(part.groupby("method")):
            stats = [mean_ci(gp.halo_fraction) for _, gp in g.groupby("P")]
            Ps = sorted(set(g.P))
            a.errorbar(Ps, [s[0] for s in stats], yerr=[[s[0] - s[1][0] for s in stats],
                                                        [s[1][1] - s[0] for s in stats]],
                       fmt="o-", color=f"C{i}", label=m, capsize=3)
        a.set_xlabel("workers P")
        a.set_ylabel("halo fraction Σ|R_p| / n")
        legend_beside(a)
        sync = _distributed(train, "sync")
        labels = [f"P{r.P} {r.method}" for r in sync.itertuples()]
        x = np.arange(len(labels))
        for j, k in enumerate(KINDS):
            b.bar(x + 0.27 * (j - 1), sync[f"bytes_{k}"] / sync.epochs, width=0.25,
                  color=f"C{j}", label=f"{k} (counted)")
            b.scatter(x + 0.27 * (j - 1), sync[f"model_{k}"] / sync.epochs, color="k",
                      marker="_", s=200, zorder=3, label="cost model" if j == 0 else None)
        b.set_xticks(x, labels)
        b.set_xlabel("workers and partition (full-graph, synchronous)")
        b.set_ylabel("bytes per epoch")
        legend_beside(b)
        return savefig(fig, ctx.figdir / "gnn-communication")


@figure("gnn-workflows", paper=PAPER)
def workflows_figure(ctx: Context):
    """Kilobytes per epoch and test accuracy of full-graph, neighbour-sampling and
    partition-batch training per P and partition."""
    import matplotlib.pyplot as plt

    from theorylab.study import records
    train = records(ctx.load(_study(ctx)), "train")
    rows = train[train.variant.isin(WORKFLOWS) & (train.P > 1)]
    labels = sorted({(int(r.P), r.method) for r in rows.itertuples()})
    x = np.arange(len(labels))
    names = {"sync": "full-graph", "minibatch": "neighbour sampling", "cluster": "partition batches"}
    with style():
        fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.4), layout="constrained")
        for j, k in enumerate(WORKFLOWS):
            g = rows[rows.variant == k].set_index(["P", "method"])
            a.bar(x + 0.27 * (j - 1), [g.bytes_per_epoch[lab] / 1e3 for lab in labels], width=0.25,
                  color=f"C{j}", label=names[k])
            b.bar(x + 0.27 * (j - 1), [g.accuracy[lab] for lab in labels], width=0.25,
                  color=f"C{j}", label=names[k])
        for ax, ylabel in ((a, "kB communicated per epoch"), (b, "test accuracy")):
            ax.set_xticks(x, [f"P{P} {m}" for P, m in labels])
            ax.set_xlabel("workers and partition")
            ax.set_ylabel(ylabel)
        b.set_ylim(0, 1)
        legend_beside(b)
        return savefig(fig, ctx.figdir / "gnn-workflows")
