"""Power-flow surrogate on an accelerator: training throughput and batched inference vs ``runpp``.

For each grid: ``pp.runpp`` per case (wall seconds on the CPU, the ground-truth solver), the GNN's
and MLP's batched inference on ``--device`` (wall seconds per case, synchronised: the forward
pass alone, and end to end with DC power flow and features on the CPU and the copies), and the
GNN's training time per epoch on ``--device`` (quick-study size: hidden 64, 6 layers, batch 32,
with and without the physics loss). Weights are untrained for inference (time does not depend
on them). Writes JSON (``--out``); ``--smoke`` runs a toy size on the CPU to check the script.
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
from theorylab.empirical.train import TrainConfig, pick_device


def wall(fn, repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` (device synchronised around each)."""
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bench(case: str, device: torch.device, batches: list[int], n_solved: int, epochs: int,
          repeats: int) -> dict:
    net = load_grid(case)
    grid = grid_of(net, case)
    dc = DCSolver(grid)
    data = generate(net, n_solved, np.random.default_rng(0), name=case)
    norm = S.make_norm(grid, data, dc)
    run = case_solver(net)
    cpu = torch.device("cpu")
    runpp = statistics.median(wall(lambda i=i: run(data, i), 1, cpu)
                              for i in range(min(20, len(data["vm"]))))
    row = {"case": case, "buses": grid.n, "runpp_wall_s": runpp}
    # inference: the solved cases tiled up to the largest batch (time does not depend on values)
    reps = -(-max(batches) // len(data["vm"]))
    big = {k: np.concatenate([v] * reps)[:max(batches)] for k, v in data.items()
           if isinstance(v, np.ndarray) and v.ndim == 2}
    ei, ea = S.edge_tensors(grid, norm)
    models = {"gnn": PowerGNN(N_NODE_FEATURES, N_EDGE_FEATURES, ei, ea, 64, 6),
              "mlp": PowerMLP(grid.n, N_NODE_FEATURES, 256)}
    for name, m in models.items():
        m = m.to(device).eval()
        for b in batches:
            sub = {k: v[:b] for k, v in big.items()}
            x = S.prepare(grid, sub, dc, norm).x.to(device)

            def forward(m=m, x=x):
                with torch.no_grad():
                    m(x)

            def end_to_end(m=m, sub=sub):
                with torch.no_grad():
                    p = S.prepare(grid, sub, dc, norm)
                    out = m(p.x.to(device)).double().cpu().numpy()
                    S.compose(grid, p.dc_vm, p.dc_va, out, norm)

            forward()
            end_to_end()
            f, e = wall(forward, repeats, device) / b, wall(end_to_end, repeats, device) / b
            row.update({f"{name}_b{b}_forward_s": f, f"{name}_b{b}_e2e_s": e,
                        f"{name}_b{b}_speedup_e2e": runpp / e})
    # training: seconds per epoch of the study's GNN at quick size
    half = len(data["vm"]) // 2
    split = {k: (v[:half], v[half:]) for k, v in data.items()
             if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == len(data["vm"])}
    tr, va = (S.prepare(grid, {k: v[i] for k, v in split.items()}, dc, norm) for i in (0, 1))
    for lam in (0.0, 0.1):
        torch.manual_seed(0)
        m = PowerGNN(N_NODE_FEATURES, N_EDGE_FEATURES, ei, ea, 64, 6)
        cfg = TrainConfig(epochs=epochs, batch_size=32, lr=2e-3, device=str(device), seed=0)
        t = wall(lambda m=m, cfg=cfg, lam=lam: S.fit(m, grid, tr, va, norm, cfg,
                                                     physics_weight=lam), 1, device)
        row[f"gnn_train_s_per_epoch_phys{lam:g}"] = t / epochs
        row["train_cases"] = len(tr)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="toy size on the CPU (checks the script)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/power_gpu.json"))
    args = ap.parse_args()
    device = pick_device("cpu" if args.smoke else args.device)
    if args.smoke:
        cases, batches, n_solved, epochs, repeats = ["case14"], [1, 8], 16, 1, 1
    else:
        cases, batches, n_solved, epochs, repeats = (["case118", "case300"],
                                                     [1, 64, 256, 1024, 4096], 600, 3, 5)
    rows = [bench(c, device, batches, n_solved, epochs, repeats) for c in cases]
    for r in rows:
        print(f"{r['case']}: runpp {1e3 * r['runpp_wall_s']:.2f} ms; " + ", ".join(
            f"{m}@{b} {r[f'{m}_b{b}_speedup_e2e']:.1f}x" for m in ("gnn", "mlp") for b in batches)
              + f"; GNN epoch {r['gnn_train_s_per_epoch_phys0']:.2f} s "
                f"({r['gnn_train_s_per_epoch_phys0.1']:.2f} s with the physics loss)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    args.out.write_text(json.dumps({"device": str(device), "device_name": name,
                                    "torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
