"""GPU check of the ESM knowledge-neuron pipeline at the esm2_t6_8M shape (6 layers, 320 dims).

Runs one replicate of :class:`theorylab.empirical.esm_pipeline.EsmNeuronsStudy` on CUDA
(pretraining by masked LM on all shipped sequences, fine-tuning, activation and IG scores over
36 Linear layers, preservation sweep) and writes its numbers (device, seconds per stage, tokens/s,
accuracies, advantages over random, densities) to ``<out>/esm_gpu.json``.

Runs from the source tree with no install: ``scripts/gpu_check.sh`` puts ``src`` and the carried
packages (captum, fair-esm, the aaanalysis TSVs) on the path. ``--smoke`` runs a toy size on CPU
to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

# esm2_t6_8M shape; sized to finish in well under 8 minutes on one H100 (estimate: pretraining
# ≈ 4 × 6.6 M tokens, fine-tuning ≤ 20 × 0.6 M tokens, IG 36 layers × 128 seqs × 20 steps)
GPU_CONFIG = dict(size="t6_8M", max_len=256, n_pretrain=40000, pretrain_epochs=4,
                  pretrain_lr=1e-3, n_task=3588, finetune_epochs=20, finetune_lr=3e-4,
                  batch_size=64, patience=3, n_attr=128, n_reps=1, device="cuda")
SMOKE_CONFIG = dict(size="tiny", max_len=24, n_pretrain=64, pretrain_epochs=1, n_task=80,
                    finetune_epochs=2, batch_size=16, n_attr=4, ig_steps=4, n_reps=1,
                    device="cpu")


def summarise(records: list[dict], config: dict, wall: float) -> dict:
    """The numbers worth reporting, computed with the claims' own functions."""
    import pandas as pd
    import torch

    from theorylab.empirical.esm_pipeline import accuracy_records, summary_records
    from theorylab.papers.esm import advantage_over_random, density_by_kind
    table = pd.DataFrame(records).assign(rep=0)
    summary = summary_records(table).iloc[0].to_dict()
    out = {
        "device_name": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else
                        platform.processor() or "cpu"),
        "torch": torch.__version__, "python": sys.version.split()[0],
        "config": config, "wall_seconds": wall,
        **{k: v for k, v in summary.items() if k not in ("record", "rep")},
    }
    for method in ("act", "ig"):
        for reset in ("pretrained", "zero"):
            adv = advantage_over_random(table, method, reset)
            out[f"advantage_{method}_{reset}"] = adv["mean"]
            out[f"advantage_{method}_{reset}_ci"] = adv["ci"]
        out[f"density_{method}"] = density_by_kind(table, method).round(4).to_dict()
    acc = accuracy_records(table)
    out["accuracy"] = [{k: r[k] for k in ("method", "seed", "reset", "f", "acc")}
                       for r in acc.to_dict("records")]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for esm_gpu.json")
    p.add_argument("--smoke", action="store_true", help="toy size on CPU (checks the script)")
    args = p.parse_args(argv)

    import torch

    from theorylab.empirical.esm_pipeline import EsmNeuronsStudy
    config = SMOKE_CONFIG if args.smoke else GPU_CONFIG
    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA device; use --smoke for a CPU check", file=sys.stderr)
        return 2
    if not args.smoke:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    study = EsmNeuronsStudy(**config)
    t0 = time.perf_counter()
    records = study.run_unit({"rep": 0})
    wall = time.perf_counter() - t0
    summary = summarise(records, config, wall)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("esm_smoke.json" if args.smoke else "esm_gpu.json")
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    keys = ("device_name", "wall_seconds", "pretrain_seconds", "pretrain_tokens_per_s",
            "finetune_seconds", "ig_seconds", "acc_finetuned", "acc_majority",
            "advantage_act_pretrained", "advantage_ig_pretrained", "ig_rel_error")
    for k in keys:
        print(f"{k:>28}: {summary[k]}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
