"""Driving study: a tiny run end to end (records, claims' helpers, reproducibility), a recorded
data set as training data, and bad input through the CLI (one line, exit 2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("highway_env")

from theorylab.artifacts import UnitContext  # noqa: E402
from theorylab.cli import main  # noqa: E402
from theorylab.empirical.driving.sim_reference import save_dataset  # noqa: E402
from theorylab.empirical.driving.study import DrivingStudy  # noqa: E402
from theorylab.errors import ConfigError  # noqa: E402
from theorylab.study import records  # noqa: E402


def _tiny(**kw) -> DrivingStudy:
    base = dict(vehicles=6, n_train_scenes=12, n_test_scenes=4, episode_s=6, gen_times=(2,),
                d_model=16, epochs=1, mlp_epochs=2, n_seeds=2, n_closed=3, closed_s=3,
                gen_epochs=2, crit_s=2, n_check=1, check_s=2)
    return DrivingStudy(**{**base, **kw})


def _run(study):
    ctx = UnitContext(study, None)
    return pd.DataFrame([r for u in study.units() for r in study.run_unit(u, ctx)]), ctx


def test_tiny_study_end_to_end_and_reproducible():
    from theorylab.papers.ad import paired
    study = _tiny()
    table, ctx = _run(study)
    a = records(table, "agreement").iloc[0]
    assert a.max_position_error_m < 1e-6 and a.crash_flag_mismatches == 0
    o = records(table, "openloop")
    assert set(o.model) == {"lm", "mlp", "cv"} and set(o.horizon) == {1.0, 2.0, 3.0}
    e = study.expert(ctx)
    # constant velocity's L2 is the expert's distance from (v t, 0), computed directly
    want = np.linalg.norm(e["test.residual"], axis=-1).mean(0)
    np.testing.assert_allclose(o[o.model == "cv"].sort_values("horizon").l2, want)
    c = records(table, "closed")
    assert set(c.model) == {"lm", "mlp", "cv", "expert"} and (c.episodes == 3).all()
    assert (c.progress_m > 0).all()
    t = records(table, "traj")
    assert set(t.model) == set(c.model) and t.groupby("model").step.max().min() == 3 * 3
    r, k = records(table, "realism"), records(table, "critical")
    sources = {"generated", "generated_untruncated", "shuffled", "simulator"}
    assert set(r.source) == sources
    assert set(k.source) == sources and (k.scenes == 4).all()
    d = paired(o[o.horizon == 3.0], "lm", "cv", "l2")
    assert d["n_seeds"] == 2
    again, _ = _run(study)
    cols = ["model", "seed", "horizon", "l2"]
    pd.testing.assert_frame_equal(o[cols], records(again, "openloop")[cols])


def test_gen_support_reruns_scene_generation_only(tmp_path, monkeypatch):
    """Changing ``gen_support`` (a new config hash) reuses the stored scenes, expert data and
    every trained model; without truncation the generated source is the untruncated one, which
    is the same draw in both configurations."""
    from theorylab.store import Store
    study = _tiny(models=("mlp",), n_seeds=1)
    db = tmp_path / "s.sqlite"
    Store(db).close()
    units = ({"part": "scenegen", "seed": 0}, {"part": "fit", "model": "mlp", "seed": 0})
    first = [r for u in units for r in study.run_unit(u, UnitContext(study, db))]

    def rebuilt(*args, **kw):
        raise AssertionError("a stored stage was rebuilt")
    for name in ("_train", "_build_expert"):
        monkeypatch.setattr(DrivingStudy, name, rebuilt)
    monkeypatch.setattr("theorylab.empirical.driving.sim_reference.initial_scenes", rebuilt)
    other = study.replace(gen_support="none")
    again = [r for u in units for r in other.run_unit(u, UnitContext(other, db))]
    w = records(pd.DataFrame(again), "realism").set_index(["source", "feature"]).w1
    w0 = records(pd.DataFrame(first), "realism").set_index(["source", "feature"]).w1
    pd.testing.assert_series_equal(w["generated"], w["generated_untruncated"])
    pd.testing.assert_series_equal(w0["generated_untruncated"], w["generated_untruncated"])
    cols = ["horizon", "l2"]
    pd.testing.assert_frame_equal(records(pd.DataFrame(first), "openloop")[cols],
                                  records(pd.DataFrame(again), "openloop")[cols])


def test_recorded_dataset_trains_the_planners(tmp_path):
    """A recorded data set replaces the training pairs: its size is what the planners see."""
    study = _tiny()
    e = study.expert(UnitContext(study, None))
    n = 20
    path = save_dataset(tmp_path / "d.npz", {k: e[f"train.{k}"][:n]
                                             for k in ("features", "future", "speed", "lane")})
    other = _tiny(data=str(path), models=("mlp",), n_seeds=1)
    rows = other.run_unit({"part": "fit", "model": "mlp", "seed": 0},
                          UnitContext(other, None))
    assert {r["n_train"] for r in rows} == {n}


def test_bad_config_rules():
    with pytest.raises(ConfigError, match="'n_closed' of DrivingStudy must be <= 'n_test_scenes'"):
        _tiny(n_closed=10)
    with pytest.raises(ConfigError, match="batched simulator covers straight lanes only"):
        _tiny(scenario="merge")


@pytest.mark.parametrize("setting,msg", [
    ("scenario=roundabout", "'scenario' must be one of highway, merge. Got 'roundabout'."),
    ("episode_s=-5", "'episode_s' of DrivingStudy must be"),
    ("closed_s=-1", "'closed_s' of DrivingStudy must be"),
    ("data=CORRUPT", "not a recorded data set"),
    ("data=MISSING", "no such file"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, setting, msg):
    if setting == "data=CORRUPT":
        (tmp_path / "bad.npz").write_bytes(b"\x00garbage")
        setting = f"data={tmp_path / 'bad.npz'}"
    elif setting == "data=MISSING":
        setting = f"data={tmp_path / 'none.npz'}"
    rc = main(["run", "ad-driving", "--quick", "--set", setting, "--store",
               str(tmp_path / "s.sqlite"), "--executor", "serial", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and msg in err and "\n" not in err
