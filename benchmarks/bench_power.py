"""Power-flow surrogate speed: ``pp.runpp`` per case vs GNN and MLP inference, by grid and batch.

CPU seconds per case on one thread (the work done; robust on a shared machine), for pandapower's
Newton-Raphson (flat start, the call that makes the study's data) and for the surrogates'
inference (DC power flow, features and forward pass) at several batch sizes. The surrogates'
weights are untrained: time does not depend on them. Prints a table and writes
``benchmarks/results/power.json``. ``--quick`` uses fewer grids and repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from theorylab.empirical.power import surrogate as S
from theorylab.empirical.power.data import case_solver, generate
from theorylab.empirical.power.features import N_EDGE_FEATURES, N_NODE_FEATURES, DCSolver
from theorylab.empirical.power.grid import grid_of, load_grid
from theorylab.empirical.power.models import PowerGNN, PowerMLP
from theorylab.threads import single_thread


def cpu(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return statistics.median(out)


def bench(case: str, batches: list[int], repeats: int) -> dict:
    net = load_grid(case)
    grid = grid_of(net, case)
    dc = DCSolver(grid)
    n_cases = max(batches)
    data = generate(net, n_cases + 20, np.random.default_rng(0), name=case)
    norm = S.make_norm(grid, data, dc)
    ei, ea = S.edge_tensors(grid, norm)
    models = {"gnn": PowerGNN(N_NODE_FEATURES, N_EDGE_FEATURES, ei, ea, 64, 6).eval(),
              "mlp": PowerMLP(grid.n, N_NODE_FEATURES, 256).eval()}
    run = case_solver(net)
    runpp = statistics.median(cpu(lambda i=i: run(data, i), 1) for i in range(min(20, n_cases)))
    row = {"case": case, "buses": grid.n, "branches": int(len(grid.f)), "runpp_cpu_s": runpp}
    for name, m in models.items():
        for b in batches:
            sub = {k: v[:b] for k, v in data.items() if isinstance(v, np.ndarray)}

            def infer(sub=sub, m=m):
                with torch.no_grad():
                    p = S.prepare(grid, sub, dc, norm)
                    S.compose(grid, p.dc_vm, p.dc_va, m(p.x).double().numpy(), norm)

            infer()
            per_case = cpu(infer, repeats) / b
            row[f"{name}_b{b}_cpu_s"] = per_case
            row[f"{name}_b{b}_speedup"] = runpp / per_case
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/power.json"))
    args = ap.parse_args()
    cases = ["case14", "case118"] if args.quick else ["case14", "case30", "case57", "case118",
                                                       "case300"]
    batches = [1, 16, 64] if args.quick else [1, 16, 64, 256]
    repeats = 3 if args.quick else 5
    with single_thread():
        rows = [bench(c, batches, repeats) for c in cases]
    print(f"{'case':>8} {'buses':>6} {'runpp ms':>9} " + " ".join(
        f"{m}@{b:>3} x" for m in ("gnn", "mlp") for b in batches))
    for r in rows:
        print(f"{r['case']:>8} {r['buses']:>6} {1e3 * r['runpp_cpu_s']:>9.2f} " + " ".join(
            f"{r[f'{m}_b{b}_speedup']:>8.1f}" for m in ("gnn", "mlp") for b in batches))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "torch": torch.__version__, "threads": 1, "rows": rows},
                                   indent=1))


if __name__ == "__main__":
    main()
