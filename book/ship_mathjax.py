"""Copy MathJax 3 (the npm registry's `mathjax` package) into book/_static/mathjax.

The built book then loads MathJax from its own folder, so formulas render with no network.
Uses `npm pack` (registry only; nothing from a CDN); a copy already in place is kept.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "3.2.2"
DEST = Path(__file__).parent / "_static" / "mathjax"


def main() -> int:
    if (DEST / "tex-chtml.js").exists():
        print(f"MathJax already in {DEST}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", f"mathjax@{VERSION}", "--silent"], cwd=tmp,
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"error: npm pack mathjax@{VERSION} failed: {out.stderr.strip()}", file=sys.stderr)
            return 2
        tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
        DEST.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "package" / "es5", DEST)
    print(f"MathJax {VERSION} copied to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
