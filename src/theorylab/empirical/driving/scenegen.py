r"""Scenario generation: an autoregressive model of traffic scenes, its realism and criticality.

A scene is N vehicles sorted by x (rear to front); vehicle k is (ℓ_k, g_k, v_k, v⁰_k): lane,
gap to the previous vehicle in x (any lane), speed and IDM target speed. The generator
factorises

.. math:: p(\text{scene}) = \prod_k p(\ell_k \mid c_k)\; p(v^0_k \mid c_k, \ell_k)\;
    p(g_k, v_k \mid c_k, \ell_k, v^0_k),

with a categorical lane, a Gaussian target speed and a diagonal Gaussian over (log(1 + g), v),
all from small MLPs of
a context c_k that summarises the vehicles so far: the previous vehicle (lane, speed, target
speed) and, per lane, the distance back to that lane's last vehicle and its speed (or "none").
It is trained by maximum likelihood on simulator scenes (:func:`fit`) and sampled vehicle by
vehicle (:func:`sample`), each vehicle from its conditional truncated to the training scenes'
support (:func:`support`: the range of every gap, speed and target speed seen in training).

*Realism* (:func:`realism`) compares feature distributions of two scene sets by the Wasserstein-1
distance (``scipy.stats.wasserstein_distance``) of each feature, in units of the reference's
standard deviation: the same-lane bumper gap, the speed relative to the same-lane leader, the
time headway, the speed and the vehicles per lane. The baseline (:func:`shuffled`) keeps every
per-vehicle marginal of the training scenes exactly and breaks their dependence: each attribute
is permuted independently across all vehicles of all scenes.

*Criticality*: the expert (every vehicle IDM + MOBIL) is run from the scenes in the batched
simulator; a scene counts a collision if any vehicle crashes, a near miss if some same-lane bumper
gap falls below :data:`NEAR_MISS_M`. Scenes enter the simulator in one representation whatever
their source: on their lane's centre, heading 0, target lane = lane, IDM δ = 4, lane-change timer
drawn uniformly in [0, 1).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import wasserstein_distance
from torch import nn

from theorylab.empirical.driving import batched_sim as S

__all__ = ["ATTRS", "FEATURES", "NEAR_MISS_M", "attributes", "SceneGenerator", "fit", "support",
           "sample", "shuffled", "scene_features", "realism", "to_state", "criticality"]

ATTRS = ("lane", "gap", "speed", "target_speed")
FEATURES = ("bumper_gap", "rel_speed", "time_headway", "speed", "lane_count")
NEAR_MISS_M = 2.0
_NONE_DIST = 200.0     # "no vehicle on this lane yet": a distance beyond any gap seen


def attributes(x: np.ndarray, y: np.ndarray, speed: np.ndarray, target_speed: np.ndarray,
               lanes: int) -> np.ndarray:
    """Scenes (B, N) → attributes (B, N, 4) sorted by x: lane, gap, speed, target speed."""
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, 1)
    gap = np.diff(xs, axis=1, prepend=xs[:, :1])
    lane = S.lane_of(np.take_along_axis(y, order, 1), lanes)
    return np.stack([lane, gap, np.take_along_axis(speed, order, 1),
                     np.take_along_axis(target_speed, order, 1)], -1).astype(float)


def _advance(since, last_v, prev, k):
    """Update the per-lane summaries (distance back to each lane's last vehicle, its speed)
    when moving on to vehicle k, ``prev`` the attributes (B, 4) of vehicle k − 1."""
    if k > 1:
        since = np.minimum(since + prev[:, 1:2], _NONE_DIST)
    if k > 0:
        since, last_v = since.copy(), last_v.copy()
        rows, li = np.arange(len(prev)), prev[:, 0].astype(int)
        since[rows, li] = 0.0
        last_v[rows, li] = prev[:, 2]
    return since, last_v


def _step_context(since, last_v, prev, k, lanes, n):
    """The context of vehicle k of n: the previous vehicle's lane (one-hot), speed and target
    speed (/30), k/n, and per lane the distance back (/100) and speed (/30) of its last vehicle."""
    B = len(since)
    c = np.zeros((B, lanes + 3 + 2 * lanes))
    if k > 0:
        c[np.arange(B), prev[:, 0].astype(int)] = 1.0
        c[:, lanes:lanes + 2] = prev[:, 2:4] / 30.0
    c[:, lanes + 2] = k / n
    c[:, lanes + 3:2 * lanes + 3] = since / 100.0
    c[:, 2 * lanes + 3:] = last_v / 30.0
    return c


def _context(a: np.ndarray, lanes: int) -> np.ndarray:
    """Contexts (B, N, C) of vehicles 0..N−1 of scenes ``a`` (B, N, 4) (teacher forcing): the
    same running summaries as :func:`sample` builds."""
    B, N, _ = a.shape
    since, last_v = np.full((B, lanes), _NONE_DIST), np.zeros((B, lanes))
    out = []
    for k in range(N):
        prev = a[:, k - 1] if k > 0 else None
        since, last_v = _advance(since, last_v, prev, k)
        out.append(_step_context(since, last_v, prev, k, lanes, N))
    return np.stack(out, 1)


class SceneGenerator(nn.Module):
    """Lane head p(ℓ | c), target-speed head p(v⁰ | c, ℓ) and p(log(1+g), v | c, ℓ, v⁰): the
    target speed comes first so that the speed is anchored to it (no drift along the scene)."""

    def __init__(self, lanes: int, hidden: int = 64, z_mean=None, z_std=None):
        super().__init__()
        self.lanes = lanes
        # the Gaussian is over standardised (log(1+g), v, v⁰) (statistics of the training set)
        self.register_buffer("z_mean", torch.zeros(3) if z_mean is None else z_mean)
        self.register_buffer("z_std", torch.ones(3) if z_std is None else z_std)
        c = lanes + 3 + 2 * lanes
        self.lane_head = nn.Sequential(nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, lanes))
        self.vt_head = nn.Sequential(nn.Linear(c + lanes, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.cont_head = nn.Sequential(nn.Linear(c + lanes + 1, hidden), nn.GELU(),
                                       nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 4))

    def params(self, ctx: torch.Tensor, lane: torch.Tensor, vt: torch.Tensor):
        """Lane logits, and (μ, log σ) of the standardised (log(1+g), v, v⁰) given the lane and
        the standardised target speed ``vt``."""
        logits = self.lane_head(ctx)
        cl = torch.cat([ctx, nn.functional.one_hot(lane, self.lanes).float()], -1)
        a = self.vt_head(cl)
        b = self.cont_head(torch.cat([cl, vt[..., None]], -1))
        mu = torch.cat([b[..., :2], a[..., :1]], -1)
        log_sigma = torch.cat([b[..., 2:], a[..., 1:]], -1).clamp(-7, 5)
        return logits, mu, log_sigma


_EPS_V = 0.1   # m/s: the speed deficit v⁰ − v is modelled on a log scale, offset by this


def _targets(a: np.ndarray) -> np.ndarray:
    """(log(1 + g), log(max(v⁰ − v, 0) + ε), v⁰): the speed as its deficit below the IDM
    target speed, which IDM vehicles never exceed."""
    deficit = np.maximum(a[..., 3] - a[..., 2], 0.0)
    return np.stack([np.log1p(a[..., 1]), np.log(deficit + _EPS_V), a[..., 3]], -1)


def nll(model: SceneGenerator, batch) -> torch.Tensor:
    """Mean over vehicles of −log p(ℓ | c) − log N(z | μ, σ²)."""
    ctx, lane, z = batch
    z = (z - model.z_mean) / model.z_std
    logits, mu, log_sigma = model.params(ctx, lane, z[..., 2])
    ce = nn.functional.cross_entropy(logits, lane)
    g = (0.5 * ((z - mu) / log_sigma.exp()) ** 2 + log_sigma).sum(-1).mean()
    return ce + g


def fit(a: np.ndarray, lanes: int, config, seed: int, hidden: int = 64) -> SceneGenerator:
    """Train a generator on attributes (B, N, 4) with the one training loop."""
    from theorylab.empirical.train import train
    ctx = torch.tensor(_context(a, lanes), dtype=torch.float32).reshape(-1, lanes + 3 + 2 * lanes)
    lane = torch.tensor(a[..., 0], dtype=torch.long).reshape(-1)
    z = torch.tensor(_targets(a), dtype=torch.float32).reshape(-1, 3)
    torch.manual_seed(seed)
    model = SceneGenerator(lanes, hidden, z.mean(0), z.std(0) + 1e-6)
    train(model, nll, torch.utils.data.TensorDataset(ctx, lane, z), config)
    return model


def support(a: np.ndarray) -> np.ndarray:
    """The support box S of training scenes (B, N, 4): rows (gap, speed, target speed), columns
    (min, max); the gap over vehicles 1..N−1 (vehicle 0's gap is 0 by definition)."""
    cols = (a[:, 1:, 1], a[..., 2], a[..., 3])
    return np.array([[float(c.min()), float(c.max())] for c in cols])


def _inside(gap, v, vt, k: int, box: np.ndarray) -> np.ndarray:
    ok = (v >= box[1, 0]) & (v <= box[1, 1]) & (vt >= box[2, 0]) & (vt <= box[2, 1])
    return ok & (gap >= box[0, 0]) & (gap <= box[0, 1]) if k > 0 else ok


def _draw(model: SceneGenerator, ctx: torch.Tensor, k: int, generator: torch.Generator):
    """One draw of vehicle k per row of ``ctx``: (lane, gap, speed, target speed)."""
    B = len(ctx)
    logits = model.lane_head(ctx)
    lane = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
    _, mu, log_sigma = model.params(ctx, lane, torch.zeros(B))
    vt = mu[:, 2] + log_sigma[:, 2].exp() * torch.randn(B, generator=generator)
    _, mu, log_sigma = model.params(ctx, lane, vt)
    z = mu + log_sigma.exp() * torch.randn(mu.shape, generator=generator)
    z[:, 2] = vt
    z = (z * model.z_std + model.z_mean).double().numpy()
    gap = np.zeros(B) if k == 0 else np.maximum(np.expm1(z[:, 0]), 0.0)
    vt_ = np.clip(z[:, 2], 0, 40)
    v = np.clip(vt_ - np.maximum(np.exp(z[:, 1]) - _EPS_V, 0.0), 0, 40)
    return lane.numpy(), gap, v, vt_


#: Rejection rounds per vehicle before the (rare) vehicles still outside the box are clipped.
MAX_REJECTIONS = 100


@torch.no_grad()
def sample(model: SceneGenerator, n_scenes: int, n_vehicles: int,
           generator: torch.Generator, box: np.ndarray | None = None) -> np.ndarray:
    r"""Scenes (n_scenes, n_vehicles, 4) drawn vehicle by vehicle.

    With ``box`` (:func:`support` of the training scenes), vehicle k is drawn from the model's
    conditional truncated to the training support,

    .. math:: (\ell_k, v^0_k, g_k, v_k) \sim p(\cdot \mid c_k)\,
        \mathbb{1}[(g_k, v_k, v^0_k) \in S] \,/\, P(S \mid c_k),

    by rejection: the rows of the batch whose draw leaves S are redrawn whole (lane included,
    so the lane is also drawn from the truncated joint) with fresh noise, up to
    :data:`MAX_REJECTIONS` rounds; the few still outside are then clipped to S. Truncation rather
    than clipping every draw: clipping would pile the Gaussian tails' mass onto the bounds (an
    atom the data never show), truncation keeps the model's shape inside S. Without ``box``
    the draw is the model's own, unbounded (the earlier setting: the log-normal gap can then
    reach kilometres).
    """
    model.eval()
    lanes = model.lanes
    B = n_scenes
    since = np.full((B, lanes), _NONE_DIST)
    last_v = np.zeros((B, lanes))
    out = np.zeros((B, n_vehicles, 4))
    prev = None
    for k in range(n_vehicles):
        since, last_v = _advance(since, last_v, prev, k)
        ctx = torch.tensor(_step_context(since, last_v, prev, k, lanes, n_vehicles), dtype=torch.float32)
        lane, gap, v, vt = _draw(model, ctx, k, generator)
        if box is not None:
            bad = np.flatnonzero(~_inside(gap, v, vt, k, box))
            for _ in range(MAX_REJECTIONS):
                if not len(bad):
                    break
                lane[bad], gap[bad], v[bad], vt[bad] = _draw(model, ctx[bad], k, generator)
                bad = bad[~_inside(gap[bad], v[bad], vt[bad], k, box)]
            if k > 0:
                gap = np.clip(gap, *box[0])
            v, vt = np.clip(v, *box[1]), np.clip(vt, *box[2])
        out[:, k] = np.stack([lane, gap, v, vt], -1)
        prev = out[:, k]
    return out


def shuffled(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each attribute permuted independently over all vehicles of all scenes (the first
    vehicle's gap stays 0)."""
    out = a.copy()
    for j in range(a.shape[2]):
        if j == 1:
            vals = a[:, 1:, 1].reshape(-1)
            out[:, 1:, 1] = rng.permutation(vals).reshape(a.shape[0], -1)
        else:
            out[..., j] = rng.permutation(a[..., j].reshape(-1)).reshape(a.shape[:2])
    return out


def scene_features(a: np.ndarray, lanes: int) -> dict[str, np.ndarray]:
    """Pooled feature samples of scenes (B, N, 4) (:data:`FEATURES`)."""
    x = np.cumsum(a[..., 1], axis=1)
    lane = a[..., 0].astype(int)
    v = a[..., 2]
    gaps, rel, th = [], [], []
    for ell in range(lanes):
        for b in range(len(a)):
            on = np.flatnonzero(lane[b] == ell)       # sorted by x already
            if len(on) > 1:
                g = np.diff(x[b, on]) - S.LENGTH
                gaps.append(g)
                rel.append(v[b, on[1:]] - v[b, on[:-1]])
                th.append(g / np.maximum(v[b, on[:-1]], 1.0))
    counts = np.stack([(lane == ell).sum(1) for ell in range(lanes)], 1).reshape(-1)
    return {"bumper_gap": np.concatenate(gaps), "rel_speed": np.concatenate(rel),
            "time_headway": np.concatenate(th), "speed": v.reshape(-1),
            "lane_count": counts.astype(float)}


def realism(a: np.ndarray, ref: np.ndarray, lanes: int) -> dict[str, float]:
    """W1(feature of ``a``, feature of ``ref``) / std(feature of ``ref``) per feature, and
    their mean (``mean``)."""
    fa, fr = scene_features(a, lanes), scene_features(ref, lanes)
    out = {k: float(wasserstein_distance(fa[k], fr[k]) / max(fr[k].std(), 1e-9))
           for k in FEATURES}
    out["mean"] = float(np.mean([out[k] for k in FEATURES]))
    return out


def to_state(a: np.ndarray, lanes: int, rng: np.random.Generator, start: float = 100.0
             ) -> S.State:
    """Scenes (B, N, 4) → a batched simulator state (see module docstring)."""
    B, N, _ = a.shape
    x = start + np.cumsum(a[..., 1], axis=1)
    lane = np.clip(a[..., 0].astype(np.int64), 0, lanes - 1)
    z = np.zeros((B, N))
    return S.State(x, S.LANE_WIDTH * lane, z.copy(), a[..., 2].copy(), a[..., 3].copy(), lane,
                   rng.uniform(0, 1, (B, N)), z + 4.0, np.zeros((B, N), bool),
                   np.ones((B, N), bool), lanes)


def criticality(a: np.ndarray, lanes: int, seconds: float, rng: np.random.Generator) -> dict:
    """Run the expert from scenes (B, N, 4) for ``seconds``; per-scene collision and near miss."""
    s = to_state(a, lanes, rng)
    steps = int(round(seconds * 15))
    _, tr = S.simulate(s, steps, every=3)
    near = np.zeros(len(a), bool)
    for t in range(tr["x"].shape[0]):
        st = s._replace(x=tr["x"][t], y=tr["y"][t])
        front, _ = S.neighbours(st)
        own = np.take_along_axis(front, S.lane_of(st.y, lanes)[:, :, None], 2)[:, :, 0]
        gap = S._take(st.x, own) - st.x - S.LENGTH
        near |= ((own >= 0) & (gap < NEAR_MISS_M)).any(axis=1)
    crash = tr["crashed"][-1].any(axis=1)
    return {"collision": crash, "near_miss": near | crash}
