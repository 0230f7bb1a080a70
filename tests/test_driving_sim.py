"""Driving: the highway-env recorder (reproducible, bad input) and the batched simulator against
highway-env from the same scenes, with its numba kernels against their array twins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("highway_env")

from theorylab.empirical.driving import batched_sim as S  # noqa: E402
from theorylab.empirical.driving import sim_reference as R  # noqa: E402
from theorylab.errors import ConfigError, DataFormatError  # noqa: E402

AGREE_M = 1e-6   # float64 re-implementation of the same formulas: agreement to rounding


@pytest.mark.parametrize("scenario", ["highway", "merge"])
def test_episode_recording_reproducible_per_seed(scenario):
    a = R.record_episode(scenario, 3, 1.0, vehicles=8)
    b = R.record_episode(scenario, 3, 1.0, vehicles=8)
    c = R.record_episode(scenario, 4, 1.0, vehicles=8)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["traj.x"].shape[0] == R.SIM_HZ + 1
    assert not np.array_equal(a["scene.x"], c["scene.x"])
    # the ego moved along the road at its speed: x grows by ≈ v·t
    assert a["traj.x"][-1, 0] - a["traj.x"][0, 0] == pytest.approx(a["scene.speed"][0], rel=0.2)


@pytest.mark.parametrize("call,msg", [
    (lambda: R.record_episode("roundabout", 0, 1.0), "'scenario' must be one of highway, merge"),
    (lambda: R.record_episode("highway", 0, -2.0), "'seconds' of record_episode must be > 0"),
])
def test_bad_episode_input(call, msg):
    with pytest.raises(ConfigError, match=msg) as e:
        call()
    assert "\n" not in str(e.value)


def _good(n=4):
    rng = np.random.default_rng(0)
    return {"features": rng.normal(size=(n, 5)), "future": rng.normal(size=(n, 3, 2)),
            "speed": rng.normal(size=n), "lane": np.zeros(n)}


def test_dataset_round_trip(tmp_path):
    d = _good()
    back = R.load_dataset(R.save_dataset(tmp_path / "d.npz", d))
    for k in d:
        np.testing.assert_array_equal(back[k], d[k])


@pytest.mark.parametrize("make,msg", [
    (lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), "not a recorded data set"),
    (lambda p: np.savez(p, **{k: v for k, v in _good().items() if k != "future"}),
     "missing array 'future'"),
    (lambda p: np.savez(p, **{**_good(), "speed": np.array([1.0, np.nan, 0, 0])}),
     "non-finite"),
    (lambda p: np.savez(p, **{**_good(), "lane": np.zeros(3)}), "has 3 rows"),
    (lambda p: np.savez(p, **{**_good(), "future": np.zeros((4, 3, 3))}), "(n, waypoints, 2)"),
])
def test_corrupt_dataset_is_one_line(tmp_path, make, msg):
    p = tmp_path / "bad.npz"
    make(p)
    with pytest.raises(DataFormatError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        R.load_dataset(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_batched_simulator_matches_highway_env_from_the_same_scenes():
    """Every vehicle of 3 scenes (21 vehicles, lane changes included) for 8 s at 15 Hz."""
    scenes, refs = [], []
    for seed in (0, 1, 5):
        env = R.make_road("highway", seed, 3, 20)
        scenes.append(R.scene_of(env.road))
        refs.append(R.rollout(env, 8.0))
    _, tr = S.simulate(S.from_scenes(scenes, 3), 8 * R.SIM_HZ)
    changed = 0
    for b, ref in enumerate(refs):
        err = np.hypot(tr["x"][:, b] - ref["x"], tr["y"][:, b] - ref["y"])
        assert err.max() < AGREE_M, (b, err.max())
        np.testing.assert_allclose(tr["speed"][:, b], ref["speed"], atol=AGREE_M)
        np.testing.assert_array_equal(tr["crashed"][:, b], ref["crashed"])
        changed += int((np.abs(ref["y"][-1] - ref["y"][0]) > 2).sum())
    assert changed > 0     # the comparison covers MOBIL lane changes, not only car following


def _random_state(rng, B=4, N=9, lanes=3, ties=False):
    x = rng.uniform(0, 60, (B, N))
    if ties:
        x = np.round(x / 10) * 10          # many equal positions: the tie rules matter
    y = rng.integers(0, lanes, (B, N)) * 4.0 + rng.uniform(-3.5, 3.5, (B, N))
    present = rng.random((B, N)) < 0.85
    z = np.zeros((B, N))
    return S.State(x, y, rng.uniform(-0.3, 0.3, (B, N)), rng.uniform(0, 30, (B, N)), z + 25,
                   np.zeros((B, N), dtype=np.int64), z, z + 4, np.zeros((B, N), bool), present,
                   lanes)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1), ties=st.booleans())
def test_neighbours_kernel_matches_array_twin(seed, ties):
    s = _random_state(np.random.default_rng(seed), ties=ties)
    f, r = S.neighbours(s)
    fr, rr = S.neighbours_reference(s)
    np.testing.assert_array_equal(f, fr)
    np.testing.assert_array_equal(r, rr)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**31 - 1))
def test_collisions_kernel_matches_array_twin(seed):
    s = _random_state(np.random.default_rng(seed), N=12)
    s = s._replace(x=s.x / 4)          # crowded: overlaps happen
    np.testing.assert_array_equal(S.collisions(s), S.collisions_reference(s))


def test_initial_scenes_are_make_road_scenes():
    got = R.initial_scenes("highway", [2, 7], 3, 10)
    for seed, scene in zip((2, 7), got, strict=True):
        want = R.scene_of(R.make_road("highway", seed, 3, 10).road)
        for k in R.SCENE_KEYS:
            np.testing.assert_array_equal(scene[k], want[k])


def test_recorded_highway_env_dataset_equals_batched_pairs(tmp_path):
    """Pairs recorded from highway-env episodes equal the pairs the study makes from the batched
    simulator on the same scenes (the simulators agree), and load back as a data set."""
    from theorylab.empirical.driving.planner import expert_pairs
    d = R.load_dataset(R.record_dataset(tmp_path / "rec.npz", [3, 4], 5, 3, 8))
    s = S.from_scenes(R.initial_scenes("highway", [3, 4], 3, 8), 3)
    _, tr = S.simulate(s, 5 * R.SIM_HZ, every=R.SIM_HZ)
    want = expert_pairs(tr, s.present, 3)
    assert len(d["features"]) == 2 * 3          # t = 0, 1, 2 s have 3 s of future in 5 s
    order = np.lexsort((want["speed"],))     # the two tables order pairs differently
    got = np.lexsort((d["speed"],))
    np.testing.assert_allclose(d["future"][got], want["future"][order], atol=1e-9)
    np.testing.assert_allclose(d["features"][got], want["features"][order], atol=1e-9)
    with pytest.raises(ConfigError, match="'seconds' of record_dataset must be > 3"):
        R.record_dataset(tmp_path / "x.npz", [1], 3)
