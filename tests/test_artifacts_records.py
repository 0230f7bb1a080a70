"""Artifacts (stages built once, stored atomically, loaded safely) and long records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from support.toy import StagedToyStudy, ToyStudy
from theorylab.artifacts import ArtifactStore, UnitContext
from theorylab.errors import ConfigError, StoreError
from theorylab.store import Store
from theorylab.study import records
from theorylab.sweep import Sweeper

TESTS = Path(__file__).parent


def _builds(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_artifact_built_once_across_two_workers_and_a_rerun(store, tmp_path):
    log = tmp_path / "builds.log"
    study = StagedToyStudy(n_reps=4, sleep=0.5, log=str(log))
    with Sweeper(store, "process", n_workers=2, progress=False) as sw:
        table = sw.run(study)
        assert len(_builds(log)) == 1                      # one build, though 2 workers asked
        assert table.unit_seconds.notna().all() and len(table) == 4 * study.dim
        assert len(set(table.query("rep == 1").value)) == study.dim
        # a rerun with a config that the stage does not depend on: new units, same artifact
        again = sw.run(study.replace(offset=1.0))
    assert len(_builds(log)) == 1
    np.testing.assert_array_equal(again.value.to_numpy(), table.value.to_numpy() + 1.0)
    arts = store.artifacts()
    assert len(arts) == 1 and arts.stage[0] == "base" and arts.bytes[0] > 0
    # a config the stage depends on builds anew
    Sweeper(store, "serial", progress=False).run(study.replace(dim=2))
    assert len(_builds(log)) == 2


def test_artifact_returns_what_is_stored_and_survives_a_new_process(tmp_path):
    study = StagedToyStudy()
    db = tmp_path / "s.sqlite"
    Store(db).close()
    first = UnitContext(study, db).artifact("base", 0, study.build_base)
    code = ("import sys, pickle; ctx = pickle.loads(sys.stdin.buffer.read()); "
            "b = ctx.artifact('base', 0, lambda: 1 / 0); print(b['x'].tolist(), b['note'])")
    import pickle
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(UnitContext(study, db)),
                         capture_output=True, check=True, cwd=TESTS)
    assert out.stdout.decode().split()[-1] == "base"       # loaded; the failing build never ran
    assert json.loads(out.stdout.decode().rsplit(" ", 1)[0]) == first["x"].tolist()


def test_a_failing_build_stores_nothing_and_the_next_call_builds(tmp_path):
    study = StagedToyStudy()
    arts = ArtifactStore(tmp_path / "s.sqlite")
    Store(arts.db_path).close()
    with pytest.raises(ZeroDivisionError):
        arts.get(study, "base", 0, lambda: 1 / 0)
    assert arts.find(study, "base", 0) is None
    assert arts.get(study, "base", 0, lambda: {"v": torch.ones(2)})["v"].sum() == 2


def test_unsafe_objects_are_refused_and_dataframes_round_trip(tmp_path):
    study = StagedToyStudy()
    arts = ArtifactStore(tmp_path / "s.sqlite")
    Store(arts.db_path).close()
    with pytest.raises(ConfigError, match="cannot be loaded safely.*torch.from_numpy"):
        arts.get(study, "bad", 0, lambda: {"a": np.arange(3)})
    assert arts.find(study, "bad", 0) is None
    df = pd.DataFrame({"word": ["a", "b"], "count": [3, 4], "p": [0.25, 0.75]})
    back = arts.get(study, "table", ("split", 1), lambda: df)
    pd.testing.assert_frame_equal(back, df)
    assert arts.find(study, "table", ("split", 1)).suffix == ".parquet"
    with pytest.raises(ConfigError, match="'stage' must be"):
        arts.get(study, "a/b", 0, lambda: 1)
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        arts.get(study, "base", 0, lambda: 1, depends_on=("nope",))


_SLOW_WRITER = r"""
import sys, time, pickle
import theorylab.artifacts as A
def slow(obj, fmt, fh):
    fh.write(b"half an artifact")
    fh.flush()
    print("writing", flush=True)
    time.sleep(120)
A._write = slow
ctx = pickle.loads(sys.stdin.buffer.read())
ctx.artifact("base", 0, ctx.study.build_base)
"""


def test_sigkill_during_an_artifact_write_leaves_no_artifact_and_a_rerun_builds_it(tmp_path):
    import pickle
    study = StagedToyStudy()
    db = tmp_path / "s.sqlite"
    Store(db).close()
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=TESTS)
    proc.stdin.write(pickle.dumps(UnitContext(study, db)))
    proc.stdin.close()
    assert proc.stdout.readline().strip() == b"writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    arts = ArtifactStore(db)
    folder = arts.path_for(study, "base", 0).parent
    assert [p.name.endswith(".tmp") for p in folder.glob("*.pt*")] == [True]
    assert arts.find(study, "base", 0) is None             # the half-written file is never read
    built = UnitContext(study, db).artifact("base", 0, study.build_base)  # the lock was released
    assert built["x"].tolist() == study.build_base()["x"].tolist()
    with Store(db) as store:
        assert store.prune()["temp_files"] == 1
        assert len(store.artifacts()) == 1 and arts.find(study, "base", 0) is not None


# ----------------------------------------------------------------------------- long records
def test_long_records_round_trip_through_the_store(store):
    study = StagedToyStudy(n_reps=2)
    Sweeper(store, "serial", progress=False).run(study)
    table = store.table(study, require_complete=True)      # counts units, not records
    assert list(table.columns[:3]) == ["rep", "coord", "value"]
    assert len(table) == 2 * study.dim and table.groupby("rep").size().eq(study.dim).all()
    by_hand = [r for u in study.units() for r in
               ({**u, **rec} for rec in study.run_unit(u))]
    assert table.drop(columns="unit_seconds").to_dict("records") == by_hand
    assert store.done_keys(study) == {'{"rep":0}', '{"rep":1}'}


def test_records_helper_selects_one_kind_and_drops_others_columns():
    t = pd.DataFrame([{"record": "summary", "acc": 0.9},
                      {"record": "density", "layer": 1, "density": 0.2},
                      {"record": "density", "layer": 2, "density": 0.3}])
    d = records(t, "density")
    assert list(d.columns) == ["record", "layer", "density"] and len(d) == 2
    with pytest.raises(ConfigError, match="no 'kind' column"):
        records(t, "density", column="kind")


@pytest.mark.parametrize("bad", [[], [1, 2], "row", [{"a": 1}, None]])
def test_a_unit_returning_neither_a_row_nor_records_is_a_one_line_error(store, bad):
    with pytest.raises(StoreError, match="must return a dict .* or a non-empty list of dicts"):
        store.put(ToyStudy(), {"n": 1, "rep": 0}, bad)
    assert store.done_keys(ToyStudy()) == set()


# ----------------------------------------------------------------------------- housekeeping
def test_summary_counts_units_and_records_also_with_nan_values(store):
    study = ToyStudy(ns=(10,), n_reps=2)
    store.put(study, {"n": 10, "rep": 0}, {"mean": float("nan")})
    store.put(study, {"n": 10, "rep": 1}, [{"mean": 1.0}, {"mean": float("inf")}])
    store.register(study)
    row = store.summary().query("study == '_toy'").iloc[0]
    assert (row.units, row.records) == (2, 3)


def test_summary_and_prune_of_stale_versions(store, monkeypatch, tmp_path):
    study = StagedToyStudy(n_reps=2)
    Sweeper(store, "serial", progress=False).run(study)
    Sweeper(store, "serial", progress=False).run(ToyStudy(ns=(10,), n_reps=1))
    s = store.summary()
    staged = s[s.study == "_staged_toy"]
    assert staged.units.sum() == 2 and staged.records.sum() == 2 * study.dim
    assert staged.artifacts.sum() == 1 and not s.stale.any()
    assert store.prune() == {"configs": 0, "units": 0, "artifacts": 0, "bytes": 0,
                             "temp_files": 0}
    monkeypatch.setattr(StagedToyStudy, "version", 2)      # the study's code moved on
    s = store.summary()
    assert s[s.study == "_staged_toy"].stale.all() and not s[s.study == "_toy"].stale.any()
    path = store.artifact_root / store.artifacts().path[0]
    counts = store.prune()
    assert (counts["configs"], counts["units"], counts["artifacts"]) == (1, 2, 1)
    assert not path.exists() and store.artifacts().empty
    assert set(store.summary().study) == {"_toy"}
    assert len(store.table(ToyStudy(ns=(10,), n_reps=1))) == 1


def test_store_command_lists_and_prunes(tmp_path, monkeypatch, capsys):
    from theorylab.cli import main
    db = tmp_path / "s.sqlite"
    with Store(db) as store:
        Sweeper(store, "serial", progress=False).run(StagedToyStudy(n_reps=2))
    assert main(["store", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "_staged_toy" in out and "1 artifact(s)" in out and "stale:" not in out
    monkeypatch.setattr(StagedToyStudy, "version", 2)
    assert main(["store", "--store", str(db)]) == 0
    assert "2 stale: `theorylab store prune` removes them" in capsys.readouterr().out
    assert main(["store", "prune", "--store", str(db)]) == 0
    assert "1 stale config(s), 2 unit(s), 1 artifact(s)" in capsys.readouterr().out
    with Store(db) as store:
        assert store.summary().empty
