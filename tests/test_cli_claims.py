import json

import pytest

from support.toy import ToyStudy
from theorylab import claims as claims_mod
from theorylab.claims import REGISTRY, Verdict, claim, select
from theorylab.cli import main
from theorylab.criteria import Equality, Threshold
from theorylab.errors import ConfigError
from theorylab.papers import load_all


@pytest.fixture
def toy_claims():
    """Two claims on the toy study: one that holds (a measured mean near 0), one that fails."""

    @claim("_toy.mean_near_zero", paper="TOY", kind="simulation", statement="sample mean ≈ 0")
    def _(ctx):
        table = ctx.run(ctx.sized(ToyStudy()))
        m = float(table["mean"].mean())
        return Verdict(measured=abs(m), criterion=Threshold("<", 1.0), ci=(m - 1, m + 1))

    @claim("_toy.broken", paper="TOY", kind="theory", statement="raises")
    def _(ctx):
        raise RuntimeError("boom")

    yield
    for k in [k for k in REGISTRY if k.startswith("_toy.")]:
        del REGISTRY[k]


def test_select_by_prefix(toy_claims):
    assert [c.id for c in select(["_toy"])] == ["_toy.broken", "_toy.mean_near_zero"]
    assert [c.id for c in select(["_toy.mean_near_zero"])] == ["_toy.mean_near_zero"]
    with pytest.raises(ConfigError, match="unknown claim id or prefix '_to'"):
        select(["_to"])


def test_verify_json_and_exit_code(toy_claims, tmp_path, capsys):
    out = tmp_path / "v.json"
    rc = main(["verify", "--quick", "--json", str(out), "--store", str(tmp_path / "s.sqlite"),
               "--executor", "serial", "--no-progress", "_toy"])
    assert rc == 1  # the broken claim fails the run
    rows = {r["id"]: r for r in json.loads(out.read_text())}
    assert set(rows["_toy.mean_near_zero"]) >= {"id", "paper", "kind", "expected", "measured",
                                                 "ci", "holds", "seconds"}
    assert rows["_toy.mean_near_zero"]["holds"] is True
    assert rows["_toy.mean_near_zero"]["status"] == "holds"
    assert rows["_toy.mean_near_zero"]["criterion"] == {"kind": "threshold", "op": "<", "value": 1.0}
    assert rows["_toy.broken"]["status"] == "fails" and rows["_toy.broken"]["must_hold"] is True
    assert rows["_toy.broken"]["holds"] is False and "boom" in rows["_toy.broken"]["error"]
    assert "1 of 2 claims hold" in capsys.readouterr().out


def test_verify_passes_when_all_hold(toy_claims, tmp_path):
    rc = main(["verify", "--quick", "--store", str(tmp_path / "s.sqlite"), "--executor",
               "serial", "--no-progress", "_toy.mean_near_zero"])
    assert rc == 0


@pytest.mark.parametrize("argv, message", [
    (["verify", "no_such_claim"], "unknown claim id or prefix 'no_such_claim'"),
    (["run", "no_such_study"], "unknown study 'no_such_study'"),
    (["run", "_toy", "--set", "n_rep=3"], "unknown config field 'n_rep' for ToyStudy"),
    (["run", "_toy", "--set", "n_reps=0"], "'n_reps' of ToyStudy must be an int >= 1. Got 0."),
    (["plot", "no_such_figure"], "unknown figure 'no_such_figure'"),
    (["run", "_toy", "--device", "cuda"], "unknown config field 'device' for ToyStudy"),
], ids=["claim", "study", "field", "value", "figure", "device"])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    rc = main([*argv, "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_run_then_resume(tmp_path, capsys):
    db = str(tmp_path / "s.sqlite")
    assert main(["run", "_toy", "--set", "n_reps=2", "--store", db, "--executor", "serial",
                 "--no-progress"]) == 0
    assert "4 units" in capsys.readouterr().out


def test_every_registered_claim_has_known_kind_and_paper():
    load_all()
    for c in REGISTRY.values():
        assert c.kind in claims_mod.KINDS
        assert c.id.split(".")[0].lower() == c.paper.split("-")[0].lower() or c.id.startswith("_")


def test_report_only_claim_does_not_fail_the_run_but_is_reported(tmp_path, capsys):
    @claim("_toy.report_only", paper="TOY", kind="theory", statement="measured, not required",
           must_hold=False)
    def _(ctx):
        return Verdict(measured=1.0, criterion=Equality(2.0))

    try:
        rc = main(["verify", "--store", str(tmp_path / "s.sqlite"), "--no-progress", "_toy.report_only"])
    finally:
        del REGISTRY["_toy.report_only"]
    out = capsys.readouterr().out
    assert rc == 0
    assert "0 of 1 claims hold (1 report-only claim(s) do not hold: _toy.report_only)" in out
