"""BEB kernel throughput: numba ``prefix_stats`` vs the vectorised numpy baseline, side by side.

Throughput is prompt-sentences per second (prompts x sentences processed, every prefix's
posterior weights, B_P, B_P-, B_P+ and both KLs). Prints a table and writes
``benchmarks/results/beb.json``. ``--quick`` uses fewer repeats and smaller sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from theorylab.kernels import beb as K

# (label, M components, K hidden states, S sentences, N prompts, T sentences per prompt)
CASES = [
    ("markov pair S=8, 1 prompt x 4000", 2, 8, 8, 1, 4000),
    ("markov pair S=8, 8 x 1000", 2, 8, 8, 8, 1000),
    ("markov pair S=8, 64 x 500", 2, 8, 8, 64, 500),
    ("markov pair S=32, 64 x 500", 2, 32, 32, 64, 500),
    ("HMM mix M=4 K=4 S=16, 256 x 200", 4, 4, 16, 256, 200),
]
QUICK_CASES = [
    ("markov pair S=8, 1 prompt x 1000", 2, 8, 8, 1, 1000),
    ("markov pair S=8, 32 x 200", 2, 8, 8, 32, 200),
    ("HMM mix M=4 K=4 S=16, 64 x 100", 4, 4, 16, 64, 100),
]


def make_case(M, Kh, S, N, T, seed=0):
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.ones(M))
    init = rng.dirichlet(np.ones(Kh), M)
    trans = rng.dirichlet(np.ones(Kh), (M, Kh))
    emit = (np.broadcast_to(np.eye(S), (M, S, S)).copy() if Kh == S
            else rng.dirichlet(np.ones(S), (M, Kh)))
    scores = rng.uniform(-1, 1, S)
    neg = np.arange(M) < max(1, M // 2)
    prompts = rng.integers(0, S, (N, T))
    return (prior, init, trans, emit, scores, neg, prompts)


def best_time(fn, args, repeats):
    fn(*args)  # warm-up (numba compile / caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: results/beb.json (results/beb_quick.json with --quick)")
    args = ap.parse_args(argv)
    cases, repeats = (QUICK_CASES, 2) if args.quick else (CASES, 5)
    rows = []
    print(f"{'case':38s} {'numba [sent/s]':>15s} {'numpy [sent/s]':>15s} {'ratio':>7s} {'max|diff|':>10s}")
    for label, M, Kh, S, N, T in cases:
        a = make_case(M, Kh, S, N, T)
        t_nb = best_time(K.prefix_stats, a, repeats)
        t_np = best_time(K.prefix_stats_numpy, a, max(1, repeats // 2))
        x, y = K.prefix_stats(*a), K.prefix_stats_numpy(*a)
        diff = max(float(np.nanmax(np.abs(getattr(x, f) - getattr(y, f)))) for f in
                   ("b_p", "kl_minus_plus", "kl_minus_full", "log_ratio"))
        work = N * T
        row = dict(case=label, M=M, K=Kh, S=S, N=N, T=T, numba_sent_per_s=work / t_nb,
                   numpy_sent_per_s=work / t_np, ratio=t_np / t_nb, max_abs_diff=diff)
        rows.append(row)
        print(f"{label:38s} {row['numba_sent_per_s']:15.3g} {row['numpy_sent_per_s']:15.3g} "
              f"{row['ratio']:7.1f} {diff:10.2g}")
    meta = dict(python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
                cpus=os.cpu_count(), numba_threads=numba.get_num_threads(),
                machine=platform.machine(), quick=args.quick, target_ratio=20.0)
    if args.out is None:  # a quick run never overwrites the full run's numbers
        args.out = Path(__file__).parent / "results" / ("beb_quick.json" if args.quick else "beb.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
