"""Continual learning: training time per task of every strategy, side by side with naive.

Runs each strategy on the same class- (and task-) incremental Split stream, one thread, and
reports the CPU seconds per task, the ratio to naive fine-tuning (the same loop with no hook),
and the memory each strategy keeps across tasks. Writes ``benchmarks/results/cl.json``
(``cl_quick.json`` with ``--quick``). Uses Fashion-MNIST when installed, else sklearn's digits.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from theorylab.empirical.continual.learner import mlp, run_stream
from theorylab.empirical.continual.study import METHODS, TASK_ID_ONLY, ContinualStudy
from theorylab.empirical.data.images import fashion_mnist_available
from theorylab.empirical.train import TrainConfig


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    dataset = "fashion-mnist" if fashion_mnist_available() else "digits"
    study = ContinualStudy(dataset=dataset, train_per_class=100 if args.quick else 500,
                           test_per_class=50, hidden=128 if args.quick else 256, epochs=2)
    torch.set_num_threads(1)
    rows = []
    print(f"{'setting':8s} {'method':11s} {'CPU s/task':>10s} {'x naive':>8s} {'memory [kB]':>12s}")
    for setting in ("class", "task"):
        stream = study.stream(setting, 0)
        # warm-up: the whole naive run once (lazy imports, allocator, autograd's first graphs)
        run_stream(lambda dim=stream[0].x_train.shape[1]: mlp(dim, 10, study.hidden), stream,
                   study.strategy("naive"), TrainConfig(epochs=study.epochs, batch_size=64,
                                                        device="cpu"))
        base = None
        for method in METHODS:
            if method in TASK_ID_ONLY and setting != "task":
                continue
            t0 = time.process_time()
            res = run_stream(lambda dim=stream[0].x_train.shape[1]: mlp(dim, 10, study.hidden), stream,
                             study.strategy(method),
                             TrainConfig(epochs=study.epochs, batch_size=64, device="cpu"))
            per_task = (time.process_time() - t0) / len(stream)
            base = per_task if method == "naive" else base
            rows.append(dict(setting=setting, method=method, cpu_s_per_task=per_task,
                             ratio_to_naive=per_task / base, state_bytes=res.state_bytes))
            print(f"{setting:8s} {method:11s} {per_task:10.3f} {per_task / base:8.2f} "
                  f"{res.state_bytes / 1e3:12.1f}")
    meta = dict(python=platform.python_version(), torch=torch.__version__, dataset=dataset,
                train_per_class=study.train_per_class, hidden=study.hidden, epochs=study.epochs,
                quick=args.quick, threads=1)
    if args.out is None:
        args.out = Path(__file__).parent / "results" / ("cl_quick.json" if args.quick else "cl.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
