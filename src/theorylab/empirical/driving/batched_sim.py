r"""A batched re-implementation of highway-env's highway: kinematics, IDM, MOBIL, many scenes at once.

It mirrors highway-env 1.12.1 (``IDMVehicle``, ``ControlledVehicle.steering_control``,
``Vehicle.step``, ``Road.neighbour_vehicles``) on its straight road (lanes ``ℓ = 0..L-1`` with
centres y = 4ℓ, width 4 m, speed limit 30 m/s), in float64 over arrays (B scenes, N vehicles);
:mod:`.sim_reference` is the slow twin, and the tests compare trajectories from the same scenes.

Longitudinal, IDM (Treiber, Hennecke & Helbing 2000) with a_max = 3, b = 5, s₀ = 10 m, T = 1.5 s:

.. math::

    a = a_{max}\Big[1 - \big(\tfrac{v}{v_0}\big)^{\delta}
        - \Big(\tfrac{s^*(v, \Delta v)}{s}\Big)^2\Big],\qquad
    s^* = s_0 + vT + \frac{v\,\Delta v}{2\sqrt{a_{max} b}},

clipped to ±6 m/s²; during a lane change the smaller of the IDM accelerations behind the current
and the target lane's leaders. Lateral, MOBIL (Kesting, Treiber & Helbing 2007), checked once a
second per vehicle: change to a side lane when the new follower's braking is safe,
ã_n > −b_safe (2 m/s²), and the own advantage ã_c − a_c ≥ Δa_th (0.2 m/s²) (politeness p = 0);
an ongoing change is aborted if another vehicle is changing into the same lane just ahead
(0 < d < s*). Steering is highway-env's cascade (lateral P, heading P, slip-angle inversion) and
the state follows its kinematic bicycle model with β = arctan(tan δ_f / 2).

Deviations, stated: collisions are rectangle overlaps at the end of a step (highway-env also
predicts overlaps one step ahead and pushes the pair apart, ``impact``); the road has no end (the
reference's is 10 km long; episodes stay well inside it). Neighbour search, lane-change decisions
and the order in which vehicles act are highway-env's (the abort check reads the target lanes of
vehicles that acted earlier in the same step, so it loops over vehicles, vectorised over scenes).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["State", "from_scenes", "step", "simulate", "neighbours", "neighbours_reference", "idm",
           "collisions", "collisions_reference", "lane_of"]

LANE_WIDTH = 4.0
SPEED_LIMIT = 30.0
LENGTH, WIDTH = 5.0, 2.0
ACC_MAX, COMFORT_ACC_MAX, COMFORT_ACC_MIN = 6.0, 3.0, -5.0
DISTANCE_WANTED, TIME_WANTED = 5.0 + LENGTH, 1.5
LANE_CHANGE_MIN_ACC_GAIN, LANE_CHANGE_MAX_BRAKING_IMPOSED, LANE_CHANGE_DELAY = 0.2, 2.0, 1.0
KP_A, KP_HEADING, KP_LATERAL = 1 / 0.6, 1 / 0.2, 1 / 0.6
TAU_PURSUIT = 0.5 * 0.2
MAX_STEERING = np.pi / 3
MAX_SPEED = 40.0
_SQRT_AB = np.sqrt(-COMFORT_ACC_MAX * COMFORT_ACC_MIN)


class State(NamedTuple):
    """Arrays (B, N); vehicle 0 of each scene is the ego. ``present`` pads scenes of fewer
    vehicles; ``steer, acc`` are the last actions (a crashed vehicle keeps braking)."""
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    speed: np.ndarray
    target_speed: np.ndarray
    target_lane: np.ndarray
    timer: np.ndarray
    delta: np.ndarray
    crashed: np.ndarray
    present: np.ndarray
    lanes: int


def from_scenes(scenes: list[dict], lanes: int) -> State:
    """Stack scene dicts (:func:`.sim_reference.scene_of` format) into a padded batch."""
    n = max(len(s["x"]) for s in scenes)

    def pad(key, fill, dtype):
        out = np.full((len(scenes), n), fill, dtype=dtype)
        for b, s in enumerate(scenes):
            out[b, :len(s[key])] = s[key]
        return out
    present = np.zeros((len(scenes), n), dtype=bool)
    for b, s in enumerate(scenes):
        present[b, :len(s["x"])] = True
    return State(pad("x", -1e6, float), pad("y", 0.0, float), pad("heading", 0.0, float),
                 pad("speed", 0.0, float), pad("target_speed", 0.0, float),
                 pad("target_lane", 0, np.int64), pad("timer", 0.0, float),
                 pad("delta", 4.0, float), pad("crashed", False, bool), present, lanes)


def _not_zero(x, eps=1e-2):
    return np.where(np.abs(x) > eps, x, np.where(x >= 0, eps, -eps))


def _wrap(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def lane_of(y: np.ndarray, lanes: int) -> np.ndarray:
    """The closest lane (ties to the lower index, as ``argmin`` in highway-env)."""
    return np.clip(np.ceil(y / LANE_WIDTH - 0.5), 0, lanes - 1).astype(np.int64)


def neighbours(s: State) -> tuple[np.ndarray, np.ndarray]:
    """(front, rear) (B, N, L): index of the vehicle ahead of / behind vehicle i on lane ℓ, −1
    if none. A vehicle j counts on ℓ if |y_j − 4ℓ| ≤ 3 (the lane's half-width plus highway-env's
    1 m margin); ahead means x_j ≥ x_i (the nearest, ties to the last j), behind x_j < x_i.
    A numba loop; :func:`neighbours_reference` is its array twin."""
    return _neighbours_nb(s.x, s.y, s.present, s.lanes)


@njit(cache=True)
def _neighbours_nb(x, y, present, lanes):
    B, N = x.shape
    front = np.full((B, N, lanes), -1, dtype=np.int64)
    rear = np.full((B, N, lanes), -1, dtype=np.int64)
    half = LANE_WIDTH / 2 + 1
    for b in range(B):
        for j in range(N):
            if not present[b, j]:
                continue
            for ell in range(lanes):
                if abs(y[b, j] - LANE_WIDTH * ell) > half:
                    continue
                xj = x[b, j]
                for i in range(N):
                    if i == j:
                        continue
                    xi = x[b, i]
                    if xj >= xi:
                        f = front[b, i, ell]
                        if f < 0 or xj <= x[b, f]:
                            front[b, i, ell] = j
                    else:
                        r = rear[b, i, ell]
                        if r < 0 or xj > x[b, r]:
                            rear[b, i, ell] = j
    return front, rear


def neighbours_reference(s: State) -> tuple[np.ndarray, np.ndarray]:
    """:func:`neighbours` with (B, N, N, L) arrays (the slow twin)."""
    B, N = s.x.shape
    L = s.lanes
    on = np.abs(s.y[:, :, None] - LANE_WIDTH * np.arange(L)) <= LANE_WIDTH / 2 + 1  # (B, N, L)
    on &= s.present[:, :, None]
    xi, xj = s.x[:, :, None, None], s.x[:, None, :, None]
    cand = on[:, None, :, :] & ~np.eye(N, dtype=bool)[None, :, :, None]           # (B, i, j, L)
    ahead = cand & (xj >= xi)
    behind = cand & (xj < xi)
    key_f = np.where(ahead, xj, np.inf)
    front = N - 1 - np.argmin(key_f[:, :, ::-1], axis=2)           # ties: the last j
    front = np.where(ahead.any(axis=2), front, -1)
    key_r = np.where(behind, xj, -np.inf)
    rear = np.where(behind.any(axis=2), np.argmax(key_r, axis=2), -1)
    return front, rear


def _take(a, idx):
    """a (B, N) gathered at idx (B, ...) (−1 → any value; mask separately)."""
    B = a.shape[0]
    flat = np.clip(idx, 0, None).reshape(B, -1)
    return np.take_along_axis(a, flat, axis=1).reshape(idx.shape)


def idm(s: State, ego, front, delta) -> np.ndarray:
    """highway-env's ``IDMVehicle.acceleration``: vehicle ``ego`` behind ``front`` (indices
    (B, K), −1 = none) with the exponent ``delta`` of the vehicle that asks."""
    v = _take(s.speed, ego)
    v0 = np.clip(_take(s.target_speed, ego), 0, SPEED_LIMIT)
    a = COMFORT_ACC_MAX * (1 - np.power(np.maximum(v, 0) / np.abs(_not_zero(v0)), delta))
    he, hf = _take(s.heading, ego), _take(s.heading, front)
    dv = v - _take(s.speed, front) * np.cos(hf - he)
    d_star = DISTANCE_WANTED + v * TIME_WANTED + v * dv / (2 * _SQRT_AB)
    d = _take(s.x, front) - _take(s.x, ego)
    a = a - np.where(front >= 0, COMFORT_ACC_MAX * (d_star / _not_zero(d)) ** 2, 0.0)
    return np.where(ego >= 0, a, 0.0)


def _lane_query(table, lane):
    """table (B, N, L) at lane (B, N)."""
    return np.take_along_axis(table, np.clip(lane, 0, table.shape[2] - 1)[:, :, None],
                              axis=2)[:, :, 0]


def decide(s: State) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every vehicle's ``act``: (target_lane, timer, steering, acceleration), all (B, N)."""
    B, N = s.x.shape
    idx = np.broadcast_to(np.arange(N), (B, N))
    lane = lane_of(s.y, s.lanes)
    front, rear = neighbours(s)
    active = s.present & ~s.crashed
    # MOBIL for each side lane (computed for all; applied where the timer fires)
    f_own = _lane_query(front, lane)
    self_a = idm(s, idx, f_own, s.delta)
    fires = active & (lane == s.target_lane) & (s.timer > LANE_CHANGE_DELAY)
    new_target = s.target_lane.copy()
    for side in (-1, 1):
        cand = lane + side
        valid = (cand >= 0) & (cand < s.lanes)
        valid &= np.abs(s.y - LANE_WIDTH * cand) <= 2 * LANE_WIDTH     # is_reachable_from
        valid &= s.x >= 0
        valid &= np.abs(s.speed) >= 1
        nf_ahead, nf_behind = _lane_query(front, cand), _lane_query(rear, cand)
        follower_pred = idm(s, nf_behind, idx, s.delta)
        safe = follower_pred >= -LANE_CHANGE_MAX_BRAKING_IMPOSED
        gain = idm(s, idx, nf_ahead, s.delta) - self_a
        ok = fires & valid & safe & (gain >= LANE_CHANGE_MIN_ACC_GAIN)
        new_target = np.where(ok, cand, new_target)
    timer = np.where(fires, 0.0, s.timer)
    # the abort check of ongoing changes, in the road's order (reads earlier vehicles' targets)
    target = s.target_lane.copy()
    changing = active & (lane != s.target_lane)
    v_i, h_i = s.speed, s.heading
    for i in range(N):
        t_i = target[:, i]
        d = s.x - s.x[:, i:i + 1]
        d_star = (DISTANCE_WANTED + v_i[:, i:i + 1] * TIME_WANTED + v_i[:, i:i + 1]
                  * (v_i[:, i:i + 1] - s.speed * np.cos(s.heading - h_i[:, i:i + 1]))
                  / (2 * _SQRT_AB))
        other = (s.present & (idx != i) & (lane != t_i[:, None]) & (target == t_i[:, None])
                 & (d > 0) & (d < d_star))
        abort = changing[:, i] & other.any(axis=1)
        target[:, i] = np.where(abort, lane[:, i],
                                np.where(changing[:, i], t_i, new_target[:, i]))
    # steering towards the target lane's centre
    r = s.y - LANE_WIDTH * target
    v_nz = _not_zero(s.speed)
    heading_cmd = np.arcsin(np.clip(-KP_LATERAL * r / v_nz, -1, 1))
    heading_ref = np.clip(heading_cmd, -np.pi / 4, np.pi / 4)
    rate = KP_HEADING * _wrap(heading_ref - s.heading)
    slip = np.arcsin(np.clip(LENGTH / 2 / v_nz * rate, -1, 1))
    steer = np.clip(np.arctan(2 * np.tan(slip)), -MAX_STEERING, MAX_STEERING)
    # IDM behind the current lane's leader, and the target lane's during a change
    acc = self_a
    f_tgt = _lane_query(front, target)
    acc = np.where(lane != target, np.minimum(acc, idm(s, idx, f_tgt, s.delta)), acc)
    acc = np.clip(acc, -ACC_MAX, ACC_MAX)
    target = np.where(active, target, s.target_lane)
    return target, timer, steer, acc


def integrate(s: State, steer, acc, dt: float) -> State:
    """``Vehicle.step``: the kinematic bicycle model; crashed vehicles brake to a stop."""
    steer = np.where(s.crashed, 0.0, steer)
    acc = np.where(s.crashed, -s.speed, acc)
    acc = np.where(s.speed > MAX_SPEED, np.minimum(acc, MAX_SPEED - s.speed), acc)
    acc = np.where(s.speed < -MAX_SPEED, np.maximum(acc, -MAX_SPEED - s.speed), acc)
    beta = np.arctan(0.5 * np.tan(steer))
    x = s.x + s.speed * np.cos(s.heading + beta) * dt
    y = s.y + s.speed * np.sin(s.heading + beta) * dt
    h = s.heading + s.speed * np.sin(beta) / (LENGTH / 2) * dt
    v = s.speed + acc * dt
    keep = s.present
    return s._replace(x=np.where(keep, x, s.x), y=np.where(keep, y, s.y),
                      heading=np.where(keep, h, s.heading), speed=np.where(keep, v, s.speed),
                      timer=s.timer + dt)


def collisions(s: State) -> np.ndarray:
    """(B, N) bool: the vehicle's rectangle (5 m × 2 m) overlaps another's (separating axes).
    A numba loop over nearby pairs; :func:`collisions_reference` is its array twin."""
    return _collisions_nb(s.x, s.y, s.heading, s.present)


@njit(cache=True)
def _collisions_nb(x, y, heading, present):
    B, N = x.shape
    out = np.zeros((B, N), dtype=np.bool_)
    reach = np.hypot(LENGTH, WIDTH)
    for b in range(B):
        for i in range(N):
            if not present[b, i]:
                continue
            for j in range(i + 1, N):
                if not present[b, j]:
                    continue
                dx, dy = x[b, j] - x[b, i], y[b, j] - y[b, i]
                if np.hypot(dx, dy) > reach:
                    continue
                ci, si = np.cos(heading[b, i]), np.sin(heading[b, i])
                cj, sj = np.cos(heading[b, j]), np.sin(heading[b, j])
                sep = False
                for ax, ay in ((ci, si), (-si, ci), (cj, sj), (-sj, cj)):
                    ri = (LENGTH / 2 * abs(ax * ci + ay * si)
                          + WIDTH / 2 * abs(-ax * si + ay * ci))
                    rj = (LENGTH / 2 * abs(ax * cj + ay * sj)
                          + WIDTH / 2 * abs(-ax * sj + ay * cj))
                    if abs(dx * ax + dy * ay) >= ri + rj:
                        sep = True
                        break
                if not sep:
                    out[b, i] = True
                    out[b, j] = True
    return out


def collisions_reference(s: State) -> np.ndarray:
    """:func:`collisions` over all pairs at once (the slow twin)."""
    B, N = s.x.shape
    c, sn = np.cos(s.heading), np.sin(s.heading)
    dx = s.x[:, None, :] - s.x[:, :, None]
    dy = s.y[:, None, :] - s.y[:, :, None]
    near = (np.hypot(dx, dy) <= np.hypot(LENGTH, WIDTH)) & s.present[:, None, :] \
        & s.present[:, :, None] & ~np.eye(N, dtype=bool)
    if not near.any():
        return np.zeros((B, N), dtype=bool)
    half = np.array([LENGTH / 2, WIDTH / 2])
    # axes of i and of j: (B, i, j, 4, 2)
    ax_i = np.stack([np.stack([c, sn], -1), np.stack([-sn, c], -1)], -2)       # (B, N, 2, 2)
    axes = np.concatenate([np.broadcast_to(ax_i[:, :, None], (B, N, N, 2, 2)),
                           np.broadcast_to(ax_i[:, None, :], (B, N, N, 2, 2))], axis=3)
    d = np.stack([dx, dy], -1)[:, :, :, None, :]                               # (B, i, j, 1, 2)
    proj_d = np.abs((d * axes).sum(-1))
    ri = (np.abs(np.einsum("bijkc,bimc->bijkm", axes, ax_i)) * half).sum(-1)
    rj = (np.abs(np.einsum("bijkc,bjmc->bijkm", axes, ax_i)) * half).sum(-1)
    overlap = (proj_d < ri + rj).all(-1) & near
    return overlap.any(axis=2)


def step(s: State, dt: float = 1 / 15) -> State:
    """One simulation step of every scene: all vehicles act, then move, then collide."""
    target, timer, steer, acc = decide(s)
    s = s._replace(target_lane=target, timer=timer)
    s = integrate(s, steer, acc, dt)
    return s._replace(crashed=s.crashed | collisions(s))


def simulate(s: State, steps: int, dt: float = 1 / 15, every: int = 1,
             ego_policy=None) -> tuple[State, dict[str, np.ndarray]]:
    """Run ``steps`` steps; the states every ``every`` steps as arrays (T', B, N) (row 0 the start).

    ``ego_policy(state, k)``, when given, returns (steering, acceleration) (B,) for the ego in
    place of the expert's, at every step k (closed-loop evaluation of a planner)."""
    keys = ("x", "y", "heading", "speed", "crashed")
    out = {k: [getattr(s, k).copy()] for k in keys}
    for k in range(steps):
        target, timer, steer, acc = decide(s)
        if ego_policy is not None:
            es, ea = ego_policy(s, k)
            steer, acc = steer.copy(), acc.copy()
            steer[:, 0], acc[:, 0] = es, ea
        s = s._replace(target_lane=target, timer=timer)
        s = integrate(s, steer, acc, dt)
        s = s._replace(crashed=s.crashed | collisions(s))
        if (k + 1) % every == 0:
            for key in keys:
                out[key].append(getattr(s, key).copy())
    return s, {k: np.stack(v) for k, v in out.items()}
