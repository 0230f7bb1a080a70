"""Wall time of the full default MoE rate study (6 cases × 10 sizes × 40 replicates) on all cores.

Runs every case of :data:`theorylab.simulations.moe_rates.CASES` into a fresh results store
through the process-pool sweep and reports the wall time per case and in total (target: < 15
minutes on 2 cores). ``--quick`` times the CI form instead. ``--store PATH`` keeps the store (so
``THEORYLAB_STORE=PATH theorylab verify moe`` reuses the fits instead of recomputing them).

    python benchmarks/bench_moe_study.py [--quick] [--store PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from theorylab.simulations.moe_rates import CASES, case_study
from theorylab.store import Store, environment_info
from theorylab.sweep import Sweeper

OUT = Path(__file__).parent / "results" / "moe_study.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--store", type=Path, default=None)
    args = ap.parse_args()
    path = args.store or Path(tempfile.mkdtemp()) / "bench.sqlite"
    rows = []
    with Store(path) as store, Sweeper(store, "process", progress=False) as sweeper:
        if store.done_keys(case_study(*CASES[0], quick=args.quick)):
            raise SystemExit(f"error: store {path} already holds results; give a fresh --store")
        t_all = time.perf_counter()
        for expert, case in CASES:
            study = case_study(expert, case, quick=args.quick)
            t0 = time.perf_counter()
            table = sweeper.run(study)
            rows.append({"expert": expert, "case": case, "fits": len(table),
                         "wall_s": time.perf_counter() - t0,
                         "fit_core_s": float(table["unit_seconds"].sum())})
            print(f"{expert:8s} {case:5s} {len(table):5d} fits  {rows[-1]['wall_s']:7.1f} s wall",
                  flush=True)
        total = time.perf_counter() - t_all
    print(f"total: {sum(r['fits'] for r in rows)} fits in {total:.1f} s wall "
          f"({total / 60:.2f} min) on {os.cpu_count()} cores")
    out = OUT.with_name("moe_study_quick.json") if args.quick else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "total_wall_s": total, "cases": rows,
                               "store": str(path), "env": environment_info()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
