"""Copy the parts of MathJax 3 that the book uses into book/_mathjax/mathjax.

The npm registry's `mathjax` package (`npm pack`, registry only; nothing from a CDN) holds ~100
files (24 MB); a page needs only the `tex-chtml` component, the CHTML web fonts it asks for, and
the TeX extensions its autoloader fetches when a page uses their macros. Only those are copied,
to a folder outside `_static` (Jupyter Book adds every .js and .css under `_static` to every
page); `_config.yml` ships it with `html_extra_path` and points `mathjax_path` at it. MathJax's
optional accessibility tools (the menu's explorer and speech, `a11y/`, `sre/`) are not shipped.
A copy already in place is kept; a stale full copy under `_static/mathjax` (this script's older
output) is removed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "3.2.2"
BOOK = Path(__file__).parent
DEST = BOOK / "_mathjax" / "mathjax"
STALE = BOOK / "_static" / "mathjax"
# What a page loads: the component, then on demand its fonts and autoloaded TeX extensions.
PARTS = ("tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions")


def main() -> int:
    if STALE.exists():
        shutil.rmtree(STALE)
        print(f"removed the stale full copy {STALE}")
    if (DEST / PARTS[0]).exists():
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
        src = Path(tmp) / "package" / "es5"
        for part in PARTS:
            (DEST / part).parent.mkdir(parents=True, exist_ok=True)
            if (src / part).is_dir():
                shutil.copytree(src / part, DEST / part)
            else:
                shutil.copy2(src / part, DEST / part)
    size = sum(f.stat().st_size for f in DEST.rglob("*") if f.is_file())
    print(f"MathJax {VERSION} ({', '.join(PARTS)}: {size / 2**20:.1f} MiB) copied to {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
