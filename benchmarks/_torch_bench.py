"""The command line the torch model benchmarks share (not a benchmark: `nox -s bench` runs only
``bench_*.py``): ``--quick``, ``--device``, ``--out``, ``--threads`` (torch CPU threads, default 1,
so that CPU seconds compare across machines), and the JSON file they write."""
from __future__ import annotations

import argparse
import json
import platform
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


def write_results(args, dev, name: str, payload: dict, **meta) -> Path:
    """Write ``{"meta": ..., **payload}`` to ``--out`` (default
    ``benchmarks/results/<name>.json``, ``<name>_quick.json`` with ``--quick``); the meta block
    names Python, torch, the device, threads, machine and ``--quick``, then ``meta``."""
    info = dict(python=platform.python_version(), torch=torch.__version__, device=str(dev),
                threads=torch.get_num_threads(), machine=platform.machine(), quick=args.quick,
                **meta)
    out = args.out or Path(__file__).parent / "results" / f"{name}{'_quick' * args.quick}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": info, **payload}, indent=2) + "\n")
    return out
