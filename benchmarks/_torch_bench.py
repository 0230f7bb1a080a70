"""The command line the torch model benchmarks share (not a benchmark: `nox -s bench` runs only
``bench_*.py``): ``--quick``, ``--device``, ``--out``, ``--threads`` (torch CPU threads, default 1,
so that CPU seconds compare across machines)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from theorylab.empirical.train import pick_device


def torch_bench_args(doc: str, add=None):
    """Parse the shared options (plus those ``add(parser)`` declares), set torch's CPU threads
    and return ``(args, device)``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    if add is not None:
        add(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args, pick_device(args.device)
