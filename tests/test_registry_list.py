"""Registry discovery and the `list`/`verify` tables: papers are loaded from one explicit list,
`theorylab list` imports no heavy module, and no claim id is ever truncated in a pipe."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from theorylab import papers
from theorylab.claims import REGISTRY
from theorylab.errors import ConfigError
from theorylab.study import STUDIES

SRC = Path(__file__).resolve().parent.parent / "src"
HEAVY = ("torch", "numba", "sympy", "statsmodels", "matplotlib", "pandas", "scipy")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(SRC), **env})


def test_list_imports_no_heavy_module():
    code = ("import sys, contextlib, io\n"
            "from theorylab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['list'])\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    assert _run(code).stdout.strip() == ""


def test_claims_registry_imports_no_paper():
    out = _run("import sys, theorylab.claims; print(any(m.startswith('theorylab.papers') "
               "for m in sys.modules))").stdout.strip()
    assert out == "False"


def test_declared_studies_are_the_registered_ones():
    """Each paper's STUDIES (read by `list` without importing a study) names real studies."""
    papers.load_studies()
    from theorylab.empirical import beb_neural, esm_pipeline, exo_sequence  # noqa: F401
    from theorylab.simulations import beb_prompting, exo_alignment, moe_rates  # noqa: F401
    assert set(papers.study_names()) == {n for n in STUDIES if not n.startswith("_")}


def test_find_study_imports_each_declared_study_on_demand():
    for name in papers.study_names():
        assert papers.find_study(name).name == name


def test_moe_case_grid_matches_the_simulation():
    from theorylab.papers import moe
    from theorylab.simulations import moe_rates
    assert moe.CASES == moe_rates.CASES


def test_every_paper_module_is_listed_once():
    mods = papers.modules()
    assert len(set(mods)) == len(mods) and set(papers.MODULES) <= set(mods)
    on_disk = {f"theorylab.papers.{p.stem}" for p in (SRC / "theorylab" / "papers").glob("*.py")
               if p.stem != "__init__"}
    assert on_disk <= set(mods)


def test_list_shows_every_claim_id_whole_in_an_80_column_pipe():
    papers.load_all()
    out = _run("from theorylab.cli import main; main(['list'])", COLUMNS="80").stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    words = set(out.replace("│", " ").split())
    missing = [c for c in REGISTRY if not c.startswith("_") and c not in words]
    assert not missing, missing


def test_verify_table_shows_ids_whole_and_the_status(tmp_path):
    """Three toy claims (holds, fails, inconclusive) with long ids, verified into an 80-column pipe."""
    code = f"""
from theorylab.claims import Verdict, claim
from theorylab.criteria import CIAbove, Threshold
from theorylab.cli import main
ids = ["_toy.a_rather_long_claim_identifier_that_holds_x", "_toy.another_long_claim_id_which_fails_y",
       "_toy.and_a_third_long_claim_id_inconclusive_z"]
claim(ids[0], paper="TOY", kind="theory", statement="s")(
    lambda ctx: Verdict(measured=1.0, criterion=Threshold("<", 2.0)))
claim(ids[1], paper="TOY", kind="theory", statement="s")(
    lambda ctx: Verdict(measured=3.0, criterion=Threshold("<", 2.0)))
claim(ids[2], paper="TOY", kind="theory", statement="s")(
    lambda ctx: Verdict(measured=0.0, criterion=CIAbove(0.0, 0.1), ci=(-1.0, 1.0)))
main(["verify", "--store", {str(tmp_path / "s.sqlite")!r}, "--no-progress", "_toy"])
"""
    out = _run(code, COLUMNS="80").stdout
    table = out[out.index("theorylab verify"):]
    rows = {line.replace("│", " ").split()[0]: line for line in table.splitlines()
            if line.replace("│", " ").strip().startswith("_toy.")}
    assert set(rows) == {"_toy.a_rather_long_claim_identifier_that_holds_x",
                         "_toy.another_long_claim_id_which_fails_y",
                         "_toy.and_a_third_long_claim_id_inconclusive_z"}
    assert "holds" in rows["_toy.a_rather_long_claim_identifier_that_holds_x"]
    assert "FAILS" in rows["_toy.another_long_claim_id_which_fails_y"]
    assert "inconclusive" in rows["_toy.and_a_third_long_claim_id_inconclusive_z"]


def test_entry_points_extend_the_paper_list(monkeypatch):
    class EP:
        value = "theorylab_extra.papers.demo"

    def fake(group):
        return [EP(), EP()] if group == papers.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(papers, "entry_points", fake)
    assert papers.modules() == (*papers.MODULES, "theorylab_extra.papers.demo")


def test_unknown_study_is_one_line_and_names_the_lazy_ones():
    with pytest.raises(ConfigError, match=r"unknown study 'nope'; known: .*moe-rates"):
        papers.find_study("nope")
