r"""MoE fit globality vs cost: ``fit_lse`` variants against the many-start trf reference.

The problems are the rate study's over-fitted ones (:class:`theorylab.simulations.moe_global.
MoEGlobalStudy`'s sampling: sigmoid, tanh and linear experts, k* = 2, k = 3, sigma = 1e-5 and
0.01, n = 10^2, 10^3, 10^4, fresh seed 1) — where the fit can miss the global LSE (the
exact-fitted ones matched the reference in every earlier sample). On each problem every variant
fits the same data:

* ``v6``: fit_lse as in rate-study version <= 6 (20 starts, split starts, staged polish);
* ``starts40``: the same with 40 random starts (the "more starts" remedy, at about twice the cost);
* ``moves``: 20 starts plus the split–merge moves (``move_rounds=2``; the current default).

The reference is :func:`~theorylab.kernels.moe.reference.reference_lse` (8 box + 16 data-driven
starts, screened on 1,000 points above that, the 4 best rerun on all n), also started from every
variant's fit, so it is the best point any method found. Reported per n and per variant: the
fraction of problems within 0.1 sigma^2 of the reference ("parity"), the largest gap (sigma^2)
and the fit time relative to ``v6`` (summed CPU time of the fits).

Prints a table and writes ``benchmarks/results/moe_global.json`` (``--quick``: one replicate per
cell, ``moe_global_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from theorylab.kernels.moe.reference import reference_lse
from theorylab.seeding import seed_for
from theorylab.simulations.moe_global import MoEGlobalStudy

VARIANTS = {"v6": dict(move_rounds=0), "starts40": dict(move_rounds=0, n_starts=40),
            "moves": dict(move_rounds=2)}
TOL = 0.1  # sigma^2: the claim moe.optimizer.global's tolerance


def run_problem(g: MoEGlobalStudy, expert, sd, n, rep):
    study = g.rate_study(expert, "over", sd)
    X, y = study.sample(n, rep)
    fits, secs = {}, {}
    for name, kw in VARIANTS.items():
        t0 = time.process_time()
        fits[name] = study.fit(X, y, n, rep, **kw)
        secs[name] = time.process_time() - t0
    ref = reference_lse(X, y, expert, study.k_fit, seed=seed_for(g.seed, "bench", expert, sd, n, rep),
                        bound=study.param_bound, n_box=g.ref_box, n_data=g.ref_data,
                        extra=[f.theta for f in fits.values()], screen_size=g.ref_screen,
                        n_polish=g.ref_polish)
    return {"expert": expert, "noise_sd": sd, "n": n, "rep": rep,
            "gap": {k: (f.objective - ref.objective) / sd ** 2 for k, f in fits.items()},
            "seconds": secs}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one replicate per cell (CI)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = Path(args.out or Path(__file__).parent / "results" /
               ("moe_global_quick.json" if args.quick else "moe_global.json"))
    g = MoEGlobalStudy()
    reps = 1 if args.quick else 3
    run_problem(g, "sigmoid", 0.01, 100, 99)  # compile numba outside the timings
    rows = [run_problem(g, e, sd, n, r) for n in g.ns for e in g.experts for sd in g.noise_sds
            for r in range(reps)]
    print(f"{'n':>6} {'problems':>8} " + " ".join(f"{v + ' parity':>15} {'max gap':>9} {'x v6':>6}"
                                                  for v in VARIANTS))
    summary = []
    for n in g.ns:
        sub = [r for r in rows if r["n"] == n]
        t6 = sum(r["seconds"]["v6"] for r in sub)
        line = {"n": n, "problems": len(sub)}
        for v in VARIANTS:
            gaps = np.array([r["gap"][v] for r in sub])
            line[v] = {"parity": float(np.mean(gaps <= TOL)), "max_gap_sigma2": float(gaps.max()),
                       "time_ratio_vs_v6": sum(r["seconds"][v] for r in sub) / t6}
        summary.append(line)
        print(f"{n:>6} {len(sub):>8} " + " ".join(
            f"{line[v]['parity']:>15.2f} {line[v]['max_gap_sigma2']:>9.3g} {line[v]['time_ratio_vs_v6']:>6.2f}"
            for v in VARIANTS), flush=True)
    meta = {"benchmark": "moe_global", "quick": args.quick, "python": platform.python_version(),
            "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
            "timer": "process_time", "tolerance_sigma2": TOL, "variants": VARIANTS}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
