"""Distributed GNN: epoch time and bytes per epoch per workflow at P = 1, 2, 4, side by side.

A stochastic block model of 10⁵ nodes (10⁴ with ``--quick``, P = 1, 2), METIS partitions, the
workers launched on this host; per (P, workflow) — full-graph synchronous and stale, mini-batch
with neighbour sampling (owner-local seeds, fanouts 10, 10, batch 1,024) and partition batches
(Cluster-GCN: clusters of 100 nodes, 8 per worker and step) — the median seconds per epoch of
the slowest worker (the first epoch left out), the bytes per epoch handed to the communication
calls and the test accuracy. ``--device auto`` runs nccl on the GPUs when there is one per
worker, else gloo on the CPU (:func:`~theorylab.empirical.distributed.choose_device`; the output
says which, per P). Projection to more workers: full-graph bytes follow the cost model of the
partition (book/papers.md), Σ_p |R_p| · Σ_l d_l · 4 forward. Writes
``benchmarks/results/gnn.json`` (``gnn_quick.json`` with ``--quick``; ``--out`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from theorylab.empirical.distributed import choose_device, launch
from theorylab.empirical.gnn.clusterbatch import clusters_of
from theorylab.empirical.gnn.fullgraph import train_mask
from theorylab.empirical.gnn.graphs import sbm
from theorylab.empirical.gnn.minibatch import sage_accuracy
from theorylab.empirical.gnn.partition import partition, partition_stats
from theorylab.empirical.gnn.study import _gcn_accuracy, rank_workflows

WORKFLOWS = ("sync", "stale", "minibatch", "cluster")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--worlds", default=None, help="comma-separated P (default 1,2,4; quick 1,2)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    n, blocks = (10_000, 10) if args.quick else (100_000, 20)
    Ps = tuple(int(p) for p in args.worlds.split(",")) if args.worlds else (
        (1, 2) if args.quick else (1, 2, 4))
    s = n // blocks
    t0 = time.perf_counter()
    graph = sbm([s] * blocks, 8 / (s - 1), 2 / (n - s), 32, 0.5, seed=0)
    clusters = clusters_of(graph, 100, seed=0)
    build_s = time.perf_counter() - t0
    opts = {"hidden": 32, "layers": 2, "epochs": 6, "lr": 0.01, "seed": 0}
    mb = {**opts, "epochs": 3, "fanouts": (10, 10), "batch_size": 1024, "seeds": "owner"}
    cl = {**opts, "epochs": 3, "clusters_per_batch": 8}
    test = torch.nonzero(~train_mask(graph.n, 0.5, 0)).flatten()
    dims = [32, 32, graph.n_classes]
    rows = []
    print(f"{'P':>2s} {'workflow':9s} {'s/epoch':>8s} {'x P=1':>6s} {'MB/epoch':>9s} "
          f"{'acc':>6s} {'halo frac':>9s}")
    base: dict[str, float] = {}
    for P in Ps:
        device, backend, why = choose_device(P, args.device)
        if P == 1 and device == "cpu":
            backend, why = "none", "one process on the CPU (no process group)"
        print(f"P = {P}: {why}")
        t0 = time.perf_counter()
        parts = partition(graph, P, "metis")
        stats = {**partition_stats(graph, parts), "partition_s": time.perf_counter() - t0}
        if P == 1 and device == "cpu":
            torch.set_num_threads(1)
            runs = [rank_workflows(0, 1, graph.to_dict(), parts, opts, mb, clusters, cl)]
        else:   # P = 1 on a GPU also runs in a (one-rank nccl) process group: on cuda:0
            runs = launch(rank_workflows, P, graph.to_dict(), parts, opts, mb, clusters, cl,
                          device=device, timeout_s=900)
        for k in WORKFLOWS:
            epochs = len(runs[0][k]["seconds"])
            sec = float(np.median([max(r[k]["seconds"][e] for r in runs)
                                   for e in range(1, epochs)]))
            base.setdefault(k, sec)
            mbytes = sum(sum(r[k]["bytes"].values()) for r in runs) / epochs / 1e6
            params = runs[0][k]["params"]
            acc = (sage_accuracy(graph, params, 32, 2, test) if k == "minibatch"
                   else _gcn_accuracy(graph, params, dims, test))
            rows.append({"P": P, "workflow": k, "device": device, "backend": backend,
                         "seconds_per_epoch": sec, "ratio_to_P1": sec / base[k],
                         "mb_per_epoch": mbytes, "accuracy": acc, "epochs": epochs,
                         "steps_per_epoch": runs[0][k].get("steps", epochs) // epochs, **stats})
            print(f"{P:2d} {k:9s} {sec:8.3f} {sec / base[k]:6.2f} {mbytes:9.2f} {acc:6.3f} "
                  f"{stats['halo_fraction']:9.3f}")
    meta = dict(python=platform.python_version(), torch=torch.__version__, n=n,
                edges=graph.n_edges, blocks=blocks, cores=os.cpu_count(), quick=args.quick,
                device=args.device, gpus=torch.cuda.device_count(), graph_build_s=build_s,
                clusters=int(clusters.max()) + 1, **opts)
    if args.out is None:
        args.out = Path(__file__).parent / "results" / ("gnn_quick.json" if args.quick
                                                        else "gnn.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
