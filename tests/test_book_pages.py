"""book/check_pages.py: the headless-Chromium page check of the built book.

The pass/fail rule is tested on measurements; the measuring itself on two small synthetic pages
in Chromium (skipped, with the reason, where no Chromium is installed). The built book's own
check runs in ``nox -s book`` after the build.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_pages", ROOT / "book" / "check_pages.py")
check_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_pages)

MIB = 2**20


def _clean() -> dict:
    return {"bytes": MIB, "errors": [], "math": 3, "rendered": 3, "merror": 0,
            "page_overflow_px": 0, "tables": [{"width": 900, "box": 600, "overflow": "auto"}],
            "figures": 2, "figures_linked": 2}


def test_problems_pass_a_clean_page():
    assert check_pages.problems(_clean(), 2 * MIB) == []


@pytest.mark.parametrize("change, expect", [
    ({"bytes": 2 * MIB}, "MiB"),
    ({"errors": ["log: 404"]}, "console error"),
    ({"rendered": 2}, "formulas rendered"),
    ({"merror": 1}, "TeX errors"),
    ({"page_overflow_px": 40}, "sideways"),
    ({"tables": [{"width": 900, "box": 600, "overflow": "visible"}]}, "table"),
    ({"figures_linked": 1}, "full-size link"),
])
def test_problems_flag_each_failure(change, expect):
    why = check_pages.problems({**_clean(), **change}, 2 * MIB)
    assert len(why) == 1 and expect in why[0]


BROWSER = check_pages.find_browser()
needs_chromium = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium installed (Debian: apt-get install chromium)")

CLEAN_PAGE = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body><article>
<p>plain text</p><div style="overflow-x:auto"><table style="width:3000px"><tr><td>x</td></tr>
</table></div><a href="big.png"><img src="big.png"></a></article></body></html>"""
BROKEN_PAGE = """<!doctype html><html><head><link rel="icon" href="data:,"></head><body><article>
<script>console.error("boom")</script><img src="missing.png">
<span class="math">\\(x\\)</span></article></body></html>"""


@needs_chromium
def test_check_page_measures_bytes_errors_and_layout(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "big.png")  # a valid PNG of incompressible noise
    png = (tmp_path / "big.png").read_bytes()
    (tmp_path / "clean.html").write_text(CLEAN_PAGE)
    (tmp_path / "broken.html").write_text(BROKEN_PAGE)
    with check_pages.serve(tmp_path) as base:
        clean = check_pages.check_page(BROWSER, f"{base}/clean.html")
        broken = check_pages.check_page(BROWSER, f"{base}/broken.html")
    # the image's bytes are counted once, the page's on top of them
    assert len(png) < clean["bytes"] < len(png) + 5000
    assert clean["errors"] == [] and clean["tables"][0]["overflow"] == "auto"
    assert (clean["figures"], clean["figures_linked"]) == (1, 1)
    assert check_pages.problems(clean, 2 * MIB) == []
    # console.error and the 404 are errors; the formula has no MathJax here, so it is unrendered
    assert any("boom" in e for e in broken["errors"])
    assert any("404" in e for e in broken["errors"])
    assert (broken["math"], broken["rendered"], broken["figures_linked"]) == (1, 0, 0)
    assert len(check_pages.problems(broken, 2 * MIB)) == 3
