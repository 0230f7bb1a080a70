r"""highway-env as the reference simulator, and the recorder of expert episodes.

The expert is highway-env's own :class:`~highway_env.vehicle.behavior.IDMVehicle`: IDM for the
speed, MOBIL for lane changes, a cascaded heading controller for steering. :func:`make_road`
resets a highway-env scenario with a seed and replaces the controlled (ego) vehicle by an
``IDMVehicle`` at the same state, so that every vehicle, the ego (index 0) included, is driven by
the expert. :func:`rollout` then advances the road exactly as ``AbstractEnv._simulate`` does
(``road.act(); road.step(1/f)`` at the simulation frequency ``f`` = 15 Hz) and records every
vehicle's state at every step; the same seed gives the same episode, bit for bit.

A *scene* is a dict of arrays over vehicles (ego first): ``x, y, heading, speed`` (m, rad, m/s)
and the expert's hidden state ``target_speed, target_lane, timer, delta`` (the IDM exponent δ),
plus ``crashed``. :func:`scene_of` reads one from a road and :func:`set_scene` writes one into a
highway road (for starting highway-env from a generated scene).

Recorded data sets (:func:`save_dataset`, :func:`load_dataset`) are ``.npz`` files of the arrays in
:data:`DATASET_KEYS`; a file that lacks one, has the wrong shapes or non-finite values is a
one-line :class:`~theorylab.errors.DataFormatError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from theorylab.errors import ConfigError, DataFormatError

__all__ = ["SCENARIOS", "SIM_HZ", "SCENE_KEYS", "DATASET_KEYS", "check_scenario", "make_road",
           "initial_scenes", "scene_of", "set_scene", "rollout", "record_episode", "record_dataset", "save_dataset", "load_dataset",
           "env_steps"]

#: scenario name → highway-env id. The batched simulator covers ``highway`` (straight lanes).
SCENARIOS = {"highway": "highway-v0", "merge": "merge-v0"}
SIM_HZ = 15          # highway-env's default simulation frequency (its policy frequency is 1 Hz)
SCENE_KEYS = ("x", "y", "heading", "speed", "target_speed", "target_lane", "timer", "delta",
              "crashed")


def check_scenario(name: str) -> None:
    if name not in SCENARIOS:
        raise ConfigError(f"'scenario' must be one of {', '.join(SCENARIOS)}. Got {name!r}.")


def _env(scenario: str, lanes: int, vehicles: int):
    check_scenario(scenario)
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers the environments)
    config = {"lanes_count": lanes, "vehicles_count": vehicles} if scenario == "highway" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # merge-v0's "out of date" notice
        return gym.make(SCENARIOS[scenario], config=config).unwrapped


def make_road(scenario: str, seed: int, lanes: int = 3, vehicles: int = 20):
    """The unwrapped env after ``reset(seed=seed)``, its ego replaced by an IDM + MOBIL expert."""
    from highway_env.vehicle.behavior import IDMVehicle
    env = _env(scenario, lanes, vehicles)
    env.reset(seed=int(seed))
    ego = env.controlled_vehicles[0]
    expert = IDMVehicle.create_from(ego)
    env.road.vehicles[env.road.vehicles.index(ego)] = expert
    env.controlled_vehicles[0] = expert
    env.vehicle = expert
    # ego first, the others in the road's order (the order the road acts and checks collisions)
    env.road.vehicles.remove(expert)
    env.road.vehicles.insert(0, expert)
    return env


def initial_scenes(scenario: str, seeds, lanes: int = 3, vehicles: int = 20) -> list[dict]:
    """The initial scene of :func:`make_road` for each seed (one env, reset per seed)."""
    from highway_env.vehicle.behavior import IDMVehicle
    env = _env(scenario, lanes, vehicles)
    out = []
    for seed in seeds:
        env.reset(seed=int(seed))
        ego = env.controlled_vehicles[0]
        scene = scene_of(env.road)
        i = env.road.vehicles.index(ego)
        expert = IDMVehicle.create_from(ego)
        for k, v in (("target_speed", expert.target_speed), ("timer", expert.timer),
                     ("delta", expert.DELTA), ("target_lane", expert.target_lane_index[2])):
            scene[k][i] = v
        order = [i] + [j for j in range(len(scene["x"])) if j != i]
        out.append({k: v[order] for k, v in scene.items()})
    return out


def scene_of(road) -> dict[str, np.ndarray]:
    """The state of every vehicle of ``road`` (ego first) as arrays (see module docstring)."""
    vs = road.vehicles
    return {"x": np.array([v.position[0] for v in vs]), "y": np.array([v.position[1] for v in vs]),
            "heading": np.array([v.heading for v in vs]), "speed": np.array([v.speed for v in vs]),
            "target_speed": np.array([v.target_speed for v in vs]),
            "target_lane": np.array([v.target_lane_index[2] for v in vs]),
            "timer": np.array([getattr(v, "timer", 0.0) for v in vs]),
            "delta": np.array([getattr(v, "DELTA", 4.0) for v in vs]),
            "crashed": np.array([v.crashed for v in vs])}


def set_scene(env, scene: dict[str, np.ndarray]) -> None:
    """Replace the vehicles of a ``highway`` env's road by IDM + MOBIL vehicles at ``scene``."""
    from highway_env.vehicle.behavior import IDMVehicle
    road = env.road
    lanes = len(road.network.graph["0"]["1"])
    vs = []
    for i in range(len(scene["x"])):
        v = IDMVehicle(road, np.array([scene["x"][i], scene["y"][i]], dtype=float),
                       heading=float(scene["heading"][i]), speed=float(scene["speed"][i]),
                       target_lane_index=("0", "1", int(np.clip(scene["target_lane"][i], 0,
                                                                lanes - 1))),
                       target_speed=float(scene["target_speed"][i]))
        v.timer = float(scene["timer"][i])
        v.DELTA = float(scene["delta"][i])
        v.crashed = bool(scene["crashed"][i])
        vs.append(v)
    road.vehicles = vs
    env.controlled_vehicles = [vs[0]]
    env.vehicle = vs[0]


def rollout(env, seconds: float) -> dict[str, np.ndarray]:
    """Advance ``env.road`` for ``seconds`` at :data:`SIM_HZ` as highway-env does; the states.

    Returns ``x, y, heading, speed, crashed`` of shape (T + 1, N) with T = seconds · SIM_HZ
    (row 0 the initial scene).
    """
    steps = int(round(seconds * SIM_HZ))
    road = env.road
    keys = ("x", "y", "heading", "speed", "crashed")
    rows = [{k: v for k, v in scene_of(road).items() if k in keys}]
    for _ in range(steps):
        road.act()
        road.step(1 / SIM_HZ)
        rows.append({k: v for k, v in scene_of(road).items() if k in keys})
    return {k: np.stack([r[k] for r in rows]) for k in keys}


def env_steps(env, steps: int) -> None:
    """``steps`` policy steps through gymnasium's ``env.step`` (observation, reward, ...), as
    highway-env's users run it; the ego is the expert, so the action is ignored."""
    for _ in range(steps):
        env.step(1)   # IDLE; an IDMVehicle ignores it


def record_episode(scenario: str, seed: int, seconds: float, lanes: int = 3,
                   vehicles: int = 20) -> dict[str, np.ndarray]:
    """One expert episode: the initial scene (``scene.*``) and the trajectory of every vehicle
    (``traj.*``, (T + 1, N)), reproducible per ``seed``."""
    if not seconds > 0:
        raise ConfigError(f"'seconds' of record_episode must be > 0. Got {seconds}.")
    env = make_road(scenario, seed, lanes, vehicles)
    scene = scene_of(env.road)
    traj = rollout(env, seconds)
    return {**{f"scene.{k}": v for k, v in scene.items()},
            **{f"traj.{k}": v for k, v in traj.items()}}


def record_dataset(path, seeds, seconds: int, lanes: int = 3, vehicles: int = 20) -> Path:
    """Record one highway-env ``highway`` episode per seed and save its (scene, ego future)
    pairs at every whole second (:func:`.planner.expert_pairs`) as a data set for
    ``DrivingStudy(data=path)``."""
    from theorylab.empirical.driving.planner import expert_pairs
    if not seconds > 3:
        raise ConfigError(f"'seconds' of record_dataset must be > 3 (the plan's horizon). "
                          f"Got {seconds}.")
    parts = []
    for seed in seeds:
        env = make_road("highway", seed, lanes, vehicles)
        tr = rollout(env, seconds)
        parts.append(expert_pairs({k: v[::SIM_HZ, None] for k, v in tr.items()},
                                  np.ones((1, tr["x"].shape[1]), bool), lanes))
    return save_dataset(path, {k: np.concatenate([p[k] for p in parts])
                               for k, _ in DATASET_KEYS})


#: (key, number of dimensions) of a recorded data set of (scene, ego future) pairs.
DATASET_KEYS = (("features", 2), ("future", 3), ("speed", 1), ("lane", 1))


def save_dataset(path, data: dict[str, np.ndarray]) -> Path:
    path = Path(path)
    np.savez(path, **{k: np.asarray(data[k]) for k, _ in DATASET_KEYS})
    return path


def load_dataset(path) -> dict[str, np.ndarray]:
    """Read a data set written by :func:`save_dataset`; a malformed one is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:   # zip, header or pickle errors: all mean "not our npz"
        raise DataFormatError(f"not a recorded data set (.npz): {type(exc).__name__}",
                              path) from None
    n = None
    for key, ndim in DATASET_KEYS:
        if key not in data:
            raise DataFormatError(f"missing array {key!r}", path)
        a = data[key]
        if a.ndim != ndim or not np.issubdtype(a.dtype, np.number):
            raise DataFormatError(f"array {key!r} must be numeric with {ndim} dimensions. "
                                  f"Got {a.dtype} of shape {a.shape}.", path)
        if n is not None and len(a) != n:
            raise DataFormatError(f"array {key!r} has {len(a)} rows; the others {n}", path)
        n = len(a)
        if not np.isfinite(a).all():
            raise DataFormatError(f"array {key!r} has non-finite values", path)
    if n == 0:
        raise DataFormatError("the data set is empty", path)
    if data["future"].shape[2] != 2:
        raise DataFormatError(f"array 'future' must be (n, waypoints, 2). Got "
                              f"{data['future'].shape}.", path)
    return {k: data[k] for k, _ in DATASET_KEYS}
