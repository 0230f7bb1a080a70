"""How much the MoE quick verdicts move with the SIMD width numba compiles for (one machine).

Runs ``theorylab verify --quick moe.d1 moe.l2 moe.over_err`` three times into OUTDIR, with
numba's target features as the host's (native), without AVX-512 (AVX2, 256-bit) and with SSE2
only (128-bit), via ``NUMBA_CPU_FEATURES``; then prints each claim's measured slope per target,
the largest difference and how many targets it holds on. A target whose ``OUTDIR/<name>.json``
exists is not rerun. x86-64 only; about 4 min on an idle 2-core machine.

    python scripts/vector_width_check.py OUTDIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLAIMS = ("moe.d1", "moe.l2", "moe.over_err")
# prefixes of the host features switched off for the narrower targets
OFF = {"native": (),
       "avx2": ("avx512", "amx", "avx10", "evex512"),
       "sse2": ("avx", "fma", "sse3", "ssse3", "sse4", "f16", "amx", "xop", "vaes", "vpclmul",
                "gfni", "evex", "sha", "aes", "pclmul", "bmi")}


def _features(off: tuple[str, ...]) -> str:
    import llvmlite.binding as llvm
    host = dict(llvm.get_host_cpu_features().items())
    return ",".join(("+" if on and not k.startswith(off) else "-") + k for k, on in host.items())


def main(outdir: str) -> int:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name, off in OFF.items():
        path = out / f"{name}.json"
        if not path.exists():
            env = dict(os.environ, **({"NUMBA_CPU_FEATURES": _features(off)} if off else {}))
            subprocess.run(["theorylab", "verify", "--quick", "--no-progress", "--json", str(path),
                            "--store", str(out / f"{name}.sqlite"), *CLAIMS],
                           env=env, check=False, stdout=subprocess.DEVNULL)
        runs[name] = {r["id"]: r for r in json.loads(path.read_text())}
    print(f"{'claim':36s}" + "".join(f"{n:>11s}" for n in runs) + "   max diff  holds")
    for cid in sorted(runs["native"]):
        vals = [runs[n][cid]["measured"] for n in runs]
        held = sum(runs[n][cid]["status"] == "holds" for n in runs)
        print(f"{cid:36s}" + "".join(f"{v:+11.6f}" for v in vals)
              + f"   {max(vals) - min(vals):8.1e}  {held}/{len(runs)}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python scripts/vector_width_check.py OUTDIR", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
