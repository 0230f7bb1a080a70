"""Distributed GNN: epoch time and bytes per epoch of full-graph training at P = 1, 2, 4.

A stochastic block model of 10⁵ nodes (10⁴ with ``--quick``, P = 1, 2), METIS partitions, gloo
workers on loopback; per (P, variant) the median seconds per epoch of the slowest worker (the
first epoch left out) and the bytes per epoch handed to the communication calls, side by side
with P = 1. Projection to more workers: bytes follow the cost model of the partition
(book/papers.md), Σ_p |R_p| · Σ_l d_l · 4 forward. Writes ``benchmarks/results/gnn.json``
(``gnn_quick.json`` with ``--quick``).
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

from theorylab.empirical.distributed import launch
from theorylab.empirical.gnn.fullgraph import rank_variants, train_full_graph
from theorylab.empirical.gnn.graphs import sbm
from theorylab.empirical.gnn.partition import partition, partition_stats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    n, blocks, Ps = (10_000, 10, (1, 2)) if args.quick else (100_000, 20, (1, 2, 4))
    s = n // blocks
    graph = sbm([s] * blocks, 8 / (s - 1), 2 / (n - s), 32, 0.5, seed=0)
    opts = {"hidden": 32, "layers": 2, "epochs": 6, "lr": 0.01, "seed": 0}
    rows = []
    print(f"{'P':>2s} {'variant':7s} {'s/epoch':>8s} {'x P=1':>6s} {'MB/epoch':>9s} {'halo frac':>9s}")
    base = None
    for P in Ps:
        if P == 1:
            torch.set_num_threads(1)
            runs = [{"sync": train_full_graph(graph, None, **opts)}]
            stats = {"halo_fraction": 0.0}
        else:
            t0 = time.perf_counter()
            parts = partition(graph, P, "metis")
            stats = {**partition_stats(graph, parts), "partition_s": time.perf_counter() - t0}
            runs = launch(rank_variants, P, graph.to_dict(), parts, opts, timeout_s=600)
        for variant in runs[0]:
            sec = float(np.median([max(r[variant]["seconds"][e] for r in runs)
                                   for e in range(1, opts["epochs"])]))
            base = sec if base is None else base
            mb = sum(sum(r[variant]["bytes"].values()) for r in runs) / opts["epochs"] / 1e6
            rows.append({"P": P, "variant": variant, "seconds_per_epoch": sec,
                         "ratio_to_P1": sec / base, "mb_per_epoch": mb, **stats})
            print(f"{P:2d} {variant:7s} {sec:8.3f} {sec / base:6.2f} {mb:9.2f} "
                  f"{stats['halo_fraction']:9.3f}")
    meta = dict(python=platform.python_version(), torch=torch.__version__, n=n,
                edges=graph.n_edges, blocks=blocks, cores=os.cpu_count(), quick=args.quick, **opts)
    if args.out is None:
        args.out = Path(__file__).parent / "results" / ("gnn_quick.json" if args.quick
                                                        else "gnn.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
