"""The documentation stays self-contained and in step with the code.

* No file of the repository cites the papers' notes file that lives outside it (the book page
  ``book/papers.md`` holds the citations, formulas and numbers instead).
* Every ``theorylab.*`` dotted name cited in ``book/papers.md`` resolves (module, then
  attributes), so the page cannot name a function that was renamed or removed.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "papers.md"
NOTES = "PAPERS" + ".md"  # split so that this file does not cite it
# build outputs and caches (git-ignored); skipped when the checkout has no git metadata
SKIP_DIRS = {".git", ".nox", ".venv", "node_modules", "__pycache__", ".pytest_cache",
             ".hypothesis", ".ruff_cache", "_build", "theorylab-results", ".theorylab",
             ".benchmarks"}
NAME = re.compile(r"\btheorylab(?:\.[A-Za-z_]\w*)+")


def _repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), else a walk that skips build outputs."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, check=True).stdout
        return [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for top, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            files += [Path(top) / n for n in names]
        return files


def resolve(dotted: str):
    """The object a dotted name denotes: the longest importable module prefix, then attributes.

    Raises ImportError / AttributeError (with the name) when it does not resolve.
    """
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and module_name.startswith(e.name):  # this prefix is no module
                continue
            raise  # the module exists but one of its own imports is missing
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module prefix of {dotted!r} imports")


def test_no_file_cites_the_external_notes():
    files = _repository_files()
    assert PAGE in files and len(files) > 50  # the listing did see the repository
    citing = [str(p.relative_to(ROOT)) for p in files
              if p.is_file() and NOTES.encode() in p.read_bytes()]
    assert citing == [], f"{NOTES} is not in the repository; cite the papers instead: {citing}"


def test_papers_page_names_resolve():
    names = sorted(set(NAME.findall(PAGE.read_text(encoding="utf-8"))))
    # the page cites code for each of the four papers
    for prefix in ("theorylab.kernels.moe.", "theorylab.theory.beb.", "theorylab.kernels.exo.",
                   "theorylab.empirical.esm_neurons."):
        assert any(n.startswith(prefix) for n in names), prefix
    unresolved = []
    for name in names:
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            unresolved.append(f"{name}: {e}")
    assert unresolved == []


@pytest.mark.parametrize("bad", ["theorylab.kernels.exo.no_such_loss", "theorylab.no_such_module.f",
                                 "theorylab.papers.beb.PAPER_KL.no_such_attr"])
def test_resolve_rejects_names_that_do_not_exist(bad):
    with pytest.raises((ImportError, AttributeError)):
        resolve(bad)


def test_resolve_finds_attributes_of_modules_and_classes():
    from theorylab.kernels import exo
    from theorylab.simulations.moe_rates import MoERateStudy
    assert resolve("theorylab.kernels.exo.exo_loss") is exo.exo_loss
    assert resolve("theorylab.simulations.moe_rates.MoERateStudy.name") == MoERateStudy.name


def test_verdict_tables_mark_report_only_claims():
    """book/render_tables.py marks a report-only claim beside its id, and only those."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("render_tables", ROOT / "book" / "render_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = {"expected": "CI > 0", "measured": 1.0, "ci": [0.5, 1.5], "status": "holds",
           "holds": True, "seconds": 0.1}
    page = module.render([{**row, "id": "x.required"},
                          {**row, "id": "x.reported", "must_hold": False, "status": "fails",
                           "holds": False}], "full study")["x"]
    lines = {ln.split("`")[1]: ln for ln in page.splitlines() if ln.startswith("| `")}
    assert "(report-only)" in lines["x.reported"] and "**no**" in lines["x.reported"]
    assert "(report-only)" not in lines["x.required"] and "| yes |" in lines["x.required"]
