r"""The distributed-GNN study: partitions of random graphs, and full-graph training on P workers.

Graphs: stochastic block models (:func:`~theorylab.empirical.gnn.graphs.sbm`) of ``n_nodes``
nodes in ``blocks`` near-equal blocks, with p_in = degree_in/(s − 1) and p_out =
degree_out/(n − s) (s the block size: the expected numbers of neighbours inside and outside the
block), or the user's edge list (``data``; then one graph). Graph g is an artifact (stage
``graph``), shared by every unit that uses it.

Units and their long records:

* ``{"kind": "partition", "graph": g}`` → ``partition`` rows, one per (P, method): edge cut,
  balance, halo nodes Σ_p |R_p|, halo fraction, the cost model's forward bytes per epoch, and the
  remote nodes one epoch of each mini-batch workflow would fetch (sampling only, no training):
  neighbour sampling with owner-local and with global seeds
  (:func:`~theorylab.empirical.gnn.minibatch.epoch_remote_inputs`), and partition batches of the
  graph's METIS clusters (:func:`~theorylab.empirical.gnn.clusterbatch.epoch_remote_nodes`).
* ``{"kind": "real", "graph": spec}`` → ``real`` rows: the same partition statistics on a real
  graph (:mod:`~theorylab.empirical.gnn.realgraphs`: connectomes, ``mice`` for all 32 mouse
  connectomes, pandapower grids).
* ``{"kind": "train", "P": 1}`` → the single-process run (an artifact, stage ``single``, that
  the P-worker units compare with) as a ``train`` row with ``variant = "single"``, and one
  process's mini-batch (``minibatch``) and partition-batch (``cluster``) runs.
* ``{"kind": "train", "P": P, "method": m}`` → ``train`` rows ``sync`` and ``stale``: P gloo
  workers on loopback (:func:`~theorylab.empirical.distributed.launch`) train graph 0 with the
  partition of method m; the row holds the largest parameter difference from the single run
  relative to the largest single-run parameter, the bytes counted at the calls and the cost
  model's, seconds per epoch, final loss and test accuracy; and a ``minibatch`` row: the same
  workers' mini-batch run (:mod:`~theorylab.empirical.gnn.minibatch`) against its P shares run
  in turn here, with the bytes fetched and the remote inputs they should carry; and a
  ``cluster`` row: the same for partition batches (Cluster-GCN,
  :mod:`~theorylab.empirical.gnn.clusterbatch`). Every train row has the test accuracy (nodes
  outside the training mask; mini-batch models aggregate all neighbours at test time) and the
  bytes and seconds per epoch, so the three workflows compare side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from theorylab.constraints import POSITIVE, SEED, Choice, Int, Real, Str, Tuple
from theorylab.empirical.distributed import shard_bounds
from theorylab.empirical.gnn.graphs import DUPLICATES, SELF_LOOPS, Graph
from theorylab.errors import ConfigError
from theorylab.study import Study, memory_context

__all__ = ["DistGNNStudy"]

PARTITIONERS = ("metis", "hash", "random")
VARIANTS = ("sync", "stale")
SEED_MODES = ("owner", "global")
GRAPH_FIELDS = ("n_nodes", "blocks", "degree_in", "degree_out", "dim", "signal", "data",
                "self_loops", "duplicates", "seed")
TRAIN_FIELDS = GRAPH_FIELDS + ("hidden", "layers", "epochs", "lr", "train_fraction")


@dataclass(frozen=True)
class DistGNNStudy(Study):
    name: ClassVar[str] = "gnn-distributed"
    version: ClassVar[int] = 2
    n_nodes: int = 4000
    blocks: int = 8
    degree_in: float = 8.0
    degree_out: float = 2.0
    dim: int = 32
    signal: float = 0.5
    hidden: int = 32
    layers: int = 2
    epochs: int = 20
    lr: float = 0.01
    train_fraction: float = 0.5
    fanouts: tuple[int, ...] = (10, 10)   # mini-batch: sampled neighbours per layer
    batch_size: int = 256
    minibatch_epochs: int = 2
    minibatch_seeds: str = "owner"        # "owner": each worker samples seeds it owns
    cluster_size: int = 100               # partition batches: nodes per METIS cluster
    clusters_per_batch: int = 4           # q, per worker and step
    cluster_epochs: int = 5
    world_sizes: tuple[int, ...] = (2, 4)
    partitioners: tuple[str, ...] = ("metis", "hash")
    n_graphs: int = 30
    data: str = ""            # an edge-list file, or a named real graph (realgraphs.named_graph)
    # METIS vs hash on real graphs: connectomes ("mice": all 32 mouse connectomes) and grids
    real_graphs: tuple[str, ...] = ("drosophila-left", "drosophila-right", "mice",
                                    "grid:case118", "grid:case1354pegase",
                                    "grid:case9241pegase")
    self_loops: str = "error"
    duplicates: str = "error"
    timeout_s: float = 300.0
    rendezvous: str = ""      # tcp://HOST:PORT of the workers' rendezvous; "" = a free loopback port
    seed: int = 0

    constraints: ClassVar = {
        "n_nodes": Int(2, 10**6), "blocks": Int(1, 1000), "degree_in": Real(0, 1000),
        "degree_out": Real(0, 1000), "dim": Int(1, 4096), "signal": Real(0, 100),
        "hidden": Int(1, 4096), "layers": Int(1, 8), "epochs": Int(1, 10_000), "lr": POSITIVE,
        "train_fraction": Real(0, 1, lo_open=True, hi_open=True),
        "fanouts": Tuple(Int(1, 10_000), min_len=1, max_len=8), "batch_size": Int(1, 10**6),
        "minibatch_epochs": Int(1, 1000), "minibatch_seeds": Choice(SEED_MODES),
        "cluster_size": Int(1, 10**6), "clusters_per_batch": Int(1, 10**6),
        "cluster_epochs": Int(1, 1000), "world_sizes": Tuple(Int(2, 64), min_len=0, max_len=8),
        "partitioners": Tuple(Choice(PARTITIONERS), min_len=1, max_len=3),
        "n_graphs": Int(1, 1000), "data": Str(), "real_graphs": Tuple(Str(), min_len=0,
                                                                        max_len=64), "self_loops": Choice(SELF_LOOPS),
        "duplicates": Choice(DUPLICATES), "timeout_s": Real(1, 86_400), "rendezvous": Str(), "seed": SEED,
    }

    def check(self) -> None:
        if len(self.fanouts) != self.layers:
            raise ConfigError(f"'fanouts' of DistGNNStudy must name one fanout per layer "
                              f"({self.layers}). Got {list(self.fanouts)}.")
        if self.rendezvous and not self.rendezvous.startswith("tcp://"):
            raise ConfigError(f"'rendezvous' of DistGNNStudy must be 'tcp://HOST:PORT' or empty. "
                              f"Got {self.rendezvous!r}.")
        if self.blocks > self.n_nodes:
            raise ConfigError(f"'blocks' of DistGNNStudy must be <= n_nodes ({self.n_nodes}). "
                              f"Got {self.blocks}.")
        too_many = [P for P in self.world_sizes if P > self.n_nodes]
        if too_many and not self.data:
            raise ConfigError(f"'world_sizes' of DistGNNStudy must be <= n_nodes "
                              f"({self.n_nodes}): every worker needs a node. Got {too_many[0]}.")
        s_min = self.n_nodes // self.blocks
        if self.blocks > 1 and s_min > 1 and self.degree_in / (s_min - 1) > 1:
            raise ConfigError(f"'degree_in' of DistGNNStudy must be <= the block size - 1 "
                              f"({s_min - 1}). Got {self.degree_in}.")
        if self.blocks > 1 and self.degree_out / (self.n_nodes - s_min - 1) > 1:
            raise ConfigError(f"'degree_out' of DistGNNStudy must be < n_nodes - block size. "
                              f"Got {self.degree_out}.")

    def quick(self) -> DistGNNStudy:
        return self.replace(n_nodes=600, blocks=4, dim=16, hidden=16, epochs=10,
                            fanouts=(5, 5), batch_size=64, world_sizes=(2,), n_graphs=12,
                            cluster_size=50, clusters_per_batch=2,
                            real_graphs=self.real_graphs[:5])

    # -- graphs ---------------------------------------------------------------------------------
    def _build_graph(self, g: int) -> dict:
        from theorylab.empirical.gnn.graphs import read_edge_list, sbm
        from theorylab.empirical.gnn.realgraphs import is_named_graph, named_graph
        from theorylab.seeding import seed_for
        if self.data and is_named_graph(self.data):
            return named_graph(self.data, self.dim, self.seed).to_dict()
        if self.data:
            return read_edge_list(self.data, self_loops=self.self_loops,
                                  duplicates=self.duplicates, dim=self.dim,
                                  seed=self.seed).to_dict()
        b = shard_bounds(self.n_nodes, self.blocks)
        sizes = [hi - lo for lo, hi in zip(b, b[1:], strict=False)]
        s = min(sizes)
        p_in = min(1.0, self.degree_in / max(s - 1, 1))
        p_out = min(1.0, self.degree_out / max(self.n_nodes - s, 1)) if self.blocks > 1 else 0.0
        return sbm(sizes, p_in, p_out, self.dim, self.signal,
                   seed=seed_for(self.seed, "graph", g)).to_dict()

    def graph(self, g: int, ctx=None) -> Graph:
        return Graph.from_dict(memory_context(self, ctx).artifact(
            "graph", g, lambda: self._build_graph(g), depends_on=GRAPH_FIELDS))

    def _train_options(self) -> dict:
        return {"hidden": self.hidden, "layers": self.layers, "epochs": self.epochs,
                "lr": self.lr, "train_fraction": self.train_fraction, "seed": self.seed}

    def _minibatch_options(self) -> dict:
        return {**self._train_options(), "epochs": self.minibatch_epochs,
                "fanouts": tuple(self.fanouts), "batch_size": self.batch_size,
                "seeds": self.minibatch_seeds}

    def _cluster_options(self) -> dict:
        return {**self._train_options(), "epochs": self.cluster_epochs,
                "clusters_per_batch": self.clusters_per_batch}

    def _clusters(self, graph: Graph):
        from theorylab.empirical.gnn.clusterbatch import clusters_of
        return clusters_of(graph, self.cluster_size, seed=self.seed)

    # -- units ----------------------------------------------------------------------------------
    def units(self) -> list[dict]:
        graphs = 1 if self.data else self.n_graphs
        # the launches first: a failing one (an unreachable rendezvous) is reported before the
        # single-process, partition and real-graph units run
        units = [{"kind": "train", "P": P, "method": m} for P in self.world_sizes
                 for m in self.partitioners]
        units.append({"kind": "train", "P": 1})
        if self.world_sizes:
            units += [{"kind": "partition", "graph": g} for g in range(graphs)]
            units += [{"kind": "real", "graph": spec} for spec in self.real_graphs]
        return units

    def run_unit(self, unit, ctx=None):
        if unit["kind"] == "partition":
            return self._partition_unit(int(unit["graph"]), ctx)
        if unit["kind"] == "real":
            return self._real_unit(unit["graph"])
        if int(unit["P"]) == 1:
            return self._single_unit(ctx)
        return self._train_unit(int(unit["P"]), unit["method"], ctx)

    def _single_unit(self, ctx) -> list[dict]:
        """One process: full-graph (the reference), mini-batch and partition-batch runs."""
        from theorylab.empirical.gnn.clusterbatch import train_clusters
        from theorylab.empirical.gnn.minibatch import train_minibatch
        from theorylab.threads import single_thread
        graph = self.graph(0, ctx)
        single = self._single(ctx)
        with single_thread():
            mb = train_minibatch(graph, None, **self._minibatch_options())
            cl = train_clusters(graph, None, self._clusters(graph), **self._cluster_options())
        return [{"record": "train", "P": 1, "method": "none", "variant": "single",
                 "bytes_per_epoch": 0.0, **_summary(single, self.epochs)},
                {"record": "train", "P": 1, "method": "none", "variant": "minibatch",
                 "bytes_per_epoch": 0.0, **self._batch_summary(graph, mb, "minibatch")},
                {"record": "train", "P": 1, "method": "none", "variant": "cluster",
                 "bytes_per_epoch": 0.0, **self._batch_summary(graph, cl, "cluster")}]

    def _batch_summary(self, graph: Graph, run: dict, workflow: str, seconds=None) -> dict:
        """Final epoch's loss, test accuracy and seconds per epoch of a mini-batch workflow."""
        from theorylab.empirical.gnn.fullgraph import train_mask
        from theorylab.empirical.gnn.minibatch import sage_accuracy
        test = torch.nonzero(~train_mask(graph.n, self.train_fraction, self.seed)).flatten()
        epochs = self.minibatch_epochs if workflow == "minibatch" else self.cluster_epochs
        steps = run["steps"] // epochs
        if workflow == "minibatch":
            acc = sage_accuracy(graph, run["params"], self.hidden, self.layers, test)
            loss = float(np.sum(run["loss"][-steps:])) / max(
                1, int(np.ceil(self.train_fraction * graph.n)))
        else:
            acc = _gcn_accuracy(graph, run["params"], self._dims(graph), test)
            loss = float(np.mean(run["loss"][-steps:]))
        sec = run["seconds"] if seconds is None else seconds
        return {"loss_final": loss, "accuracy": acc,
                "seconds_per_epoch": float(np.mean(sec[1:] if len(sec) > 1 else sec)),
                "epochs": epochs, "steps_per_epoch": steps}

    def _partition_unit(self, g: int, ctx) -> list[dict]:
        from theorylab.empirical.gnn.clusterbatch import epoch_remote_nodes
        from theorylab.empirical.gnn.fullgraph import cost_model_bytes
        from theorylab.empirical.gnn.minibatch import epoch_remote_inputs
        from theorylab.empirical.gnn.partition import partition, partition_stats
        graph = self.graph(g, ctx)
        dims = self._dims(graph)
        clusters = self._clusters(graph)
        mb = {k: v for k, v in self._minibatch_options().items()
              if k in ("fanouts", "batch_size", "train_fraction", "seed")}
        rows = []
        for P in self.world_sizes:
            for m in self.partitioners:
                parts = partition(graph, P, m, seed=self.seed)
                stats = partition_stats(graph, parts)
                rows.append({"record": "partition", "graph": g, "P": P, "method": m,
                             "n": graph.n, "m": graph.n_edges,
                             **{k: stats[k] for k in ("edge_cut", "balance", "halo_nodes",
                                                      "halo_fraction")},
                             "forward_bytes_per_epoch":
                                 cost_model_bytes(graph, parts, dims, 1, 0)["forward"],
                             **{f"minibatch_remote_{mode}": epoch_remote_inputs(
                                 graph, parts, seeds=mode, **mb) for mode in SEED_MODES},
                             "cluster_remote": epoch_remote_nodes(
                                 clusters, parts, self.clusters_per_batch, self.seed)})
        return rows

    def _real_unit(self, spec: str) -> list[dict]:
        """``real`` rows: METIS and hash partitions of a real graph (``mice``: each of the 32
        mouse connectomes), edge cut, balance and halo nodes per (P, method)."""
        from theorylab.empirical.gnn.partition import partition, partition_stats
        from theorylab.empirical.gnn.realgraphs import N_MICE, mouse_genotypes, named_graph
        names = [f"mouse-{k}" for k in range(N_MICE)] if spec == "mice" else [spec]
        genotypes = mouse_genotypes() if spec == "mice" else [""]
        rows = []
        for name, geno in zip(names, genotypes, strict=True):
            graph = named_graph(name, self.dim, self.seed)
            for P in self.world_sizes:
                for m in self.partitioners:
                    if P > graph.n:
                        continue
                    stats = partition_stats(graph, partition(graph, P, m, seed=self.seed))
                    rows.append({"record": "real", "family": spec, "graph": name,
                                 "genotype": geno, "P": P, "method": m, "n": graph.n,
                                 "m": graph.n_edges,
                                 **{k: stats[k] for k in ("edge_cut", "balance", "halo_nodes",
                                                          "halo_fraction")}})
        return rows

    def _dims(self, graph: Graph) -> list[int]:
        return [graph.x.shape[1]] + [self.hidden] * (self.layers - 1) + [graph.n_classes]

    def _single(self, ctx) -> dict:
        from theorylab.empirical.gnn.fullgraph import train_full_graph
        from theorylab.threads import single_thread

        def build():
            with single_thread():
                return train_full_graph(self.graph(0, ctx), None, **self._train_options())
        return memory_context(self, ctx).artifact("single", 0, build, depends_on=TRAIN_FIELDS)

    def _train_unit(self, P: int, method: str, ctx) -> list[dict]:
        from theorylab.empirical.distributed import launch
        from theorylab.empirical.gnn.fullgraph import cost_model_bytes
        from theorylab.empirical.gnn.minibatch import train_minibatch
        from theorylab.empirical.gnn.partition import partition
        graph = self.graph(0, ctx)
        parts = partition(graph, P, method, seed=self.seed)
        clusters = self._clusters(graph)
        ranks = launch(rank_workflows, P, graph.to_dict(), parts, self._train_options(),
                       self._minibatch_options(), clusters, self._cluster_options(),
                       timeout_s=self.timeout_s, rendezvous=self.rendezvous or None)
        single = self._single(ctx)
        scale = max(float(p.abs().max()) for p in single["params"])
        n_params = sum(p.numel() for p in single["params"])
        model = cost_model_bytes(graph, parts, self._dims(graph), self.epochs, n_params)
        rows = []
        for v in VARIANTS:
            first = ranks[0][v]["params"]
            # the slowest worker sets the pace of an epoch
            seconds = [max(r[v]["seconds"][e] for r in ranks) for e in range(self.epochs)]
            rows.append({
                "record": "train", "P": P, "method": method, "variant": v,
                "rel_param_diff": max(float((a - b).abs().max()) for a, b in
                                      zip(first, single["params"], strict=True)) / scale,
                "rank_disagreement": max(float((a - b).abs().max()) for r in ranks
                                         for a, b in zip(r[v]["params"], first, strict=True)),
                "halo_nodes": sum(r[v]["halo"] for r in ranks),
                **{f"bytes_{k}": sum(r[v]["bytes"][k] for r in ranks) for k in model},
                **{f"model_{k}": int(b) for k, b in model.items()},
                "bytes_per_epoch": sum(sum(r[v]["bytes"].values()) for r in ranks)
                / self.epochs, **_summary({**ranks[0][v], "seconds": seconds}, self.epochs)})
        rows.append(self._minibatch_row(P, method, graph, parts, ranks, train_minibatch))
        rows.append(self._cluster_row(P, method, graph, parts, clusters, ranks))
        return rows

    def _cluster_row(self, P, method, graph, parts, clusters, ranks) -> dict:
        """P workers' partition-batch run against their batches run in turn in this process."""
        from theorylab.empirical.gnn.clusterbatch import train_clusters
        from theorylab.threads import single_thread
        with single_thread():
            twin = train_clusters(graph, parts, clusters, shares=P, **self._cluster_options())
        n_params = sum(p.numel() for p in twin["params"])
        model = {"features": twin["remote_nodes"] * graph.x.shape[1] * 4,
                 "ids": twin["remote_nodes"] * 8,
                 "allreduce": twin["steps"] * P * n_params * 4}
        return self._compare_row(P, method, graph, ranks, "cluster", twin, model,
                                 self.cluster_epochs, remote_nodes=twin["remote_nodes"])

    def _compare_row(self, P, method, graph, ranks, workflow, twin, model, epochs,
                     **extra) -> dict:
        """A mini-batch workflow's row: the workers' parameters vs the twin's, bytes counted
        vs the cost model, accuracy, loss and seconds per epoch (the slowest worker's)."""
        got = ranks[0][workflow]
        scale = max(float(p.abs().max()) for p in twin["params"])
        seconds = [max(r[workflow]["seconds"][e] for r in ranks) for e in range(epochs)]
        counted = {k: sum(r[workflow]["bytes"][k] for r in ranks) for k in model}
        return {"record": "train", "P": P, "method": method, "variant": workflow,
                "rel_param_diff": max(float((a - b).abs().max()) for a, b in
                                      zip(got["params"], twin["params"], strict=True)) / scale,
                "rank_disagreement": max(float((a - b).abs().max()) for r in ranks for a, b in
                                         zip(r[workflow]["params"], got["params"],
                                             strict=True)),
                **extra, **{f"bytes_{k}": b for k, b in counted.items()},
                **{f"model_{k}": int(b) for k, b in model.items()},
                "bytes_per_epoch": sum(counted.values()) / epochs,
                **self._batch_summary(graph, got, workflow, seconds)}

    def _minibatch_row(self, P, method, graph, parts, ranks, train_minibatch) -> dict:
        """P workers' mini-batch run against the P shares run in turn in this process."""
        from theorylab.threads import single_thread
        with single_thread():
            twin = train_minibatch(graph, parts, shares=P, **self._minibatch_options())
        n_params = sum(p.numel() for p in twin["params"])
        model = {"features": twin["remote_inputs"] * graph.x.shape[1] * 4,
                 "ids": twin["remote_inputs"] * 8,
                 "allreduce": twin["steps"] * P * n_params * 4}
        return self._compare_row(P, method, graph, ranks, "minibatch", twin, model,
                                 self.minibatch_epochs, remote_inputs=twin["remote_inputs"],
                                 seeds=self.minibatch_seeds)


def rank_workflows(rank: int, world: int, graph: dict, parts, options: dict,
                   minibatch_options: dict, clusters=None, cluster_options: dict | None = None
                   ) -> dict:
    """Each worker's runs in one process group: full-graph synchronous and stale, mini-batch
    with neighbour sampling, and partition batches (when ``clusters`` is given)."""
    from theorylab.empirical.gnn.clusterbatch import rank_clusters
    from theorylab.empirical.gnn.fullgraph import rank_variants
    from theorylab.empirical.gnn.minibatch import rank_minibatch
    out = {**rank_variants(rank, world, graph, parts, options, VARIANTS),
           "minibatch": rank_minibatch(rank, world, graph, parts, minibatch_options)}
    if clusters is not None:
        out["cluster"] = rank_clusters(rank, world, graph, parts, clusters, cluster_options)
    return out


def _gcn_accuracy(graph: Graph, params: list, dims: list[int], nodes) -> float:
    """Test accuracy of a GCN with ``params`` on the whole graph (Â of the full graph)."""
    from theorylab.empirical.gnn.fullgraph import GCN, gcn_edges, propagate
    model = GCN(dims)
    src, dst, w = gcn_edges(graph)
    with torch.no_grad():
        for p, v in zip(model.parameters(), params, strict=True):
            p.copy_(v)
        pred = model(graph.x, lambda h, _l: propagate(h, src, dst, w, graph.n)).argmax(1)
    return float((pred[nodes] == graph.y[nodes]).double().mean())


def _summary(run: dict, epochs: int) -> dict:
    sec = run["seconds"]
    return {"loss_final": float(run["loss"][-1]), "accuracy": float(run["accuracy"]),
            "seconds_per_epoch": float(np.mean(sec[1:] if len(sec) > 1 else sec)),
            "epochs": epochs}
