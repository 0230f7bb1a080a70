r"""Planners: the LM planner (GPT-Driver style), an MLP on the raw features, constant velocity.

Every planner maps a scene, seen from the ego, to K = 3 waypoints at t_k = 1, 2, 3 s in the ego's
road-aligned frame. They are trained (LM, MLP) on the expert's futures and scored open loop by the
L2 error at each t_k,

.. math:: \mathrm{L2}(t_k) = \frac1n \sum_i \lVert \hat p_i(t_k) - p_i(t_k) \rVert_2,

the survey's (and GPT-Driver's) open-loop metric. Constant velocity predicts p(t) = (v t, 0);
the learned planners predict the offset from it (:mod:`.serialise`).

The LM is the shared :class:`~theorylab.empirical.lm.TinyLM` over the tokens of
:mod:`.serialise`: prompts are left-padded to one length so that the plan always starts at the
same position, training is next-token cross-entropy on the plan tokens, and decoding is greedy
under the plan grammar (logits outside the allowed set are −∞), so every output parses.

In closed loop (:func:`waypoint_control`) a plan is followed for one policy step (1 s): constant
acceleration towards the first waypoint, a = 2 (x̂₁ − v t₁) / (t₁² (1 − Δt/t₁)) (the
simulator's Euler steps of Δt = 1/15 s land on x̂₁ exactly; clipped to ±6 m/s²), and the lane
closest to its y, steered by highway-env's lane controller.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from theorylab.empirical.driving import batched_sim as S
from theorylab.empirical.driving import serialise as T
from theorylab.empirical.lm import TinyLM

__all__ = ["SENSE_M", "HORIZONS", "scene_features", "expert_pairs", "cv_plan", "MLPPlanner",
           "LMPlanner", "prompt_batch", "lm_loss", "decode", "l2_at", "waypoint_control",
           "steering_to", "closed_loop", "lm_plan", "mlp_plan", "sequences", "PROMPT_LEN"]

SENSE_M = 99.0              # neighbours farther than this are "none" (fits the ±99.9 numbers)
HORIZONS = (1.0, 2.0, 3.0)  # waypoint times (s)


def scene_features(x, y, heading, speed, present, lanes: int, ego: int = 0) -> np.ndarray:
    """(B, N) states → (B, :data:`~.serialise.N_FEATURES`) features of vehicle ``ego``."""
    s = S.State(x, y, heading, speed, speed, np.zeros(x.shape, np.int64), speed * 0,
                speed * 0 + 4, np.zeros(x.shape, bool), present, lanes)
    front, rear = S.neighbours(s)
    B = x.shape[0]
    b = np.arange(B)
    lane = S.lane_of(y[:, ego], lanes)
    out = np.zeros((B, T.N_FEATURES))
    out[:, 0] = speed[:, ego]
    out[:, 1] = lane
    out[:, 2] = y[:, ego] - S.LANE_WIDTH * lane
    out[:, 3] = np.degrees(heading[:, ego])
    k = 4
    for side in (-1, 0, 1):
        ell = lane + side
        ok_lane = (ell >= 0) & (ell < lanes)
        for table in (front, rear):
            j = table[b, ego, np.clip(ell, 0, lanes - 1)]
            jj = np.clip(j, 0, None)
            dx = x[b, jj] - x[:, ego]
            ok = ok_lane & (j >= 0) & (np.abs(dx) <= SENSE_M)
            out[:, k] = ok
            out[:, k + 1] = np.where(ok, dx, 0.0)
            out[:, k + 2] = np.where(ok, speed[b, jj] - speed[:, ego], 0.0)
            k += 3
    return out


def expert_pairs(traj: dict, present: np.ndarray, lanes: int, hz: int = 1) -> dict:
    """(scene features, expert residual waypoints) of the ego at every whole second of
    trajectories ``traj`` (arrays (T, B, N) sampled at ``hz``), where 3 s of future exist and the
    ego has not crashed by then. Returns ``features`` (n, F), ``future`` (n, K, 2) (positions
    relative to t), ``residual`` (n, K, 2), ``speed`` (n,), ``lane`` (n,)."""
    steps = [int(round(h * hz)) for h in HORIZONS]
    feats, fut, speed, lane = [], [], [], []
    for t in range(0, traj["x"].shape[0] - steps[-1], hz):
        f = scene_features(traj["x"][t], traj["y"][t], traj["heading"][t], traj["speed"][t],
                           present, lanes)
        p = np.stack([np.stack([traj["x"][t + k, :, 0] - traj["x"][t, :, 0],
                                traj["y"][t + k, :, 0] - traj["y"][t, :, 0]], -1)
                      for k in steps], 1)                                         # (B, K, 2)
        ok = ~traj["crashed"][t + steps[-1], :, 0]
        feats.append(f[ok])
        fut.append(p[ok])
        speed.append(traj["speed"][t, ok, 0])
        lane.append(f[ok, 1])
    future = np.concatenate(fut)
    speed = np.concatenate(speed)
    return {"features": np.concatenate(feats), "future": future, "speed": speed,
            "lane": np.concatenate(lane), "residual": future - cv_plan(speed)}


def cv_plan(speed: np.ndarray) -> np.ndarray:
    """Constant velocity: (v t_k, 0) (n, K, 2)."""
    t = np.asarray(HORIZONS)
    return np.stack([speed[:, None] * t, np.zeros((len(speed), len(t)))], -1)


def l2_at(pred: np.ndarray, future: np.ndarray) -> np.ndarray:
    """Mean L2 error (m) at each waypoint time, (K,)."""
    return np.linalg.norm(pred - future, axis=-1).mean(axis=0)


# -- the MLP ---------------------------------------------------------------------------------

class MLPPlanner(nn.Module):
    """Standardised features → residual waypoints (K·2), two hidden layers."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden: int = 128):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        k = len(HORIZONS) * 2
        self.net = nn.Sequential(nn.Linear(len(mean), hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, k))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net((f - self.mean) / self.std).view(-1, len(HORIZONS), 2)


# -- the LM ----------------------------------------------------------------------------------

def prompt_batch(features: np.ndarray) -> torch.Tensor:
    """Left-padded prompt tokens (n, P), P the longest prompt (all slots present)."""
    rows = [T.scene_tokens(f) for f in features]
    P = PROMPT_LEN
    out = torch.full((len(rows), P), T.TOKEN["<pad>"], dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, P - len(r):] = torch.tensor(r)
    return out


PROMPT_LEN = 1 + (1 + T.NUM_LEN) * 3 + 2 + len(T.SLOTS) * (1 + 2 * T.NUM_LEN) + 1


def LMPlanner(d_model: int = 64, n_layers: int = 2, n_heads: int = 4) -> TinyLM:
    """The shared TinyLM sized for a prompt and a plan."""
    return TinyLM(len(T.VOCAB), d_model, n_layers, n_heads, max_len=PROMPT_LEN + T.PLAN_LEN)


def sequences(features: np.ndarray, residual: np.ndarray) -> torch.Tensor:
    """Prompt + plan tokens (n, P + plan length), for teacher forcing."""
    plans = torch.tensor(np.array([T.plan_tokens(r) for r in residual]), dtype=torch.long)
    return torch.cat([prompt_batch(features), plans], 1)


def lm_loss(model: TinyLM, batch) -> torch.Tensor:
    """Mean over examples of the mean cross-entropy of the plan tokens given what precedes."""
    seq = batch[0] if isinstance(batch, (list, tuple)) else batch
    logits = model(seq[:, :-1])[:, PROMPT_LEN - 1:]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                       seq[:, PROMPT_LEN:].reshape(-1))


class _Cache:
    """Keys and values per layer of the tokens so far (incremental decoding of a TinyLM)."""

    def __init__(self, n_layers: int):
        self.k = [None] * n_layers
        self.v = [None] * n_layers


def _forward_cached(model: TinyLM, tokens: torch.Tensor, cache: _Cache, start: int
                    ) -> torch.Tensor:
    """Logits of ``tokens`` (B, T) at positions start.. given the cached earlier positions: the
    same arithmetic as ``model(all tokens)`` (pre-norm blocks, causal attention, tied head),
    each earlier token's keys and values computed once."""
    T = tokens.shape[1]
    pos = torch.arange(start, start + T)
    h = model.tok(tokens) + model.pos(pos)[None]
    for i, layer in enumerate(model.blocks.layers):
        att = layer.self_attn
        x = layer.norm1(h)
        q, k, v = nn.functional.linear(x, att.in_proj_weight, att.in_proj_bias).chunk(3, -1)
        B, nh = x.shape[0], att.num_heads
        q, k, v = (t.view(B, T, nh, -1).transpose(1, 2) for t in (q, k, v))
        if cache.k[i] is not None:
            k, v = torch.cat([cache.k[i], k], 2), torch.cat([cache.v[i], v], 2)
        cache.k[i], cache.v[i] = k, v
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=start == 0 and T > 1)
        h = h + att.out_proj(y.transpose(1, 2).reshape(B, T, -1))
        h = h + layer.linear2(layer.activation(layer.linear1(layer.norm2(h))))
    return model.head(model.norm(h))


@torch.no_grad()
def decode(model: TinyLM, prompts: torch.Tensor, batch: int = 512,
           cached: bool = True) -> torch.Tensor:
    """Greedy decoding under the plan grammar → plan tokens (n, plan length); every row parses
    (:func:`~.serialise.parse_plan`). Forced positions (a single allowed token) take no model
    call for their choice. ``cached``: incremental decoding with keys and values kept
    (:func:`_forward_cached`); otherwise the whole sequence is re-run at every position."""
    model.eval()
    grammar = T.plan_grammar()
    masks = []
    for allowed in grammar:
        m = torch.full((len(T.VOCAB),), float("-inf"))
        m[torch.as_tensor(allowed)] = 0.0
        masks.append(m)
    outs = []
    for i in range(0, len(prompts), batch):
        seq = prompts[i:i + batch]
        cache = _Cache(len(model.blocks.layers))
        if cached:
            last = _forward_cached(model, seq, cache, 0)[:, -1]
        for j, (allowed, m) in enumerate(zip(grammar, masks, strict=True)):
            if len(allowed) == 1:
                nxt = torch.full((len(seq), 1), int(allowed[0]), dtype=torch.long)
            else:
                logits = last if cached else model(seq)[:, -1]
                nxt = (logits.float() + m.to(seq.device)).argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
            if cached and j < len(grammar) - 1:
                last = _forward_cached(model, nxt, cache, seq.shape[1] - 1)[:, -1]
        outs.append(seq[:, prompts.shape[1]:])
    return torch.cat(outs)


def lm_plan(model: TinyLM, features: np.ndarray) -> np.ndarray:
    """Waypoints (n, K, 2) of the LM planner: decode, parse, add constant velocity."""
    toks = decode(model, prompt_batch(features)).numpy()
    res = np.stack([T.parse_plan(t) for t in toks])
    return res + cv_plan(features[:, 0])


def mlp_plan(model: MLPPlanner, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        res = model(torch.as_tensor(features, dtype=torch.float32)).double().numpy()
    return res + cv_plan(features[:, 0])


# -- closed loop -----------------------------------------------------------------------------

def waypoint_control(s: S.State, plan: np.ndarray, dt: float = 1 / 15
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(acceleration, target lane) (B,) that follow the first waypoint of ``plan`` (B, K, 2)."""
    v = s.speed[:, 0]
    t1 = HORIZONS[0]
    # x(t1) = v t1 + a dt² n(n−1)/2 under the simulator's explicit Euler step (n = t1/dt)
    acc = 2 * (plan[:, 0, 0] - v * t1) / (t1 ** 2 * (1 - dt / t1))
    acc = np.clip(acc, -S.ACC_MAX, S.ACC_MAX)
    lane = S.lane_of(s.y[:, 0] + plan[:, 0, 1], s.lanes)
    return acc, lane


def steering_to(s: S.State, lane: np.ndarray) -> np.ndarray:
    """highway-env's lane-following steering of the ego towards ``lane`` (B,)."""
    r = s.y[:, 0] - S.LANE_WIDTH * lane
    v_nz = S._not_zero(s.speed[:, 0])
    heading_ref = np.clip(np.arcsin(np.clip(-S.KP_LATERAL * r / v_nz, -1, 1)), -np.pi / 4,
                          np.pi / 4)
    rate = S.KP_HEADING * S._wrap(heading_ref - s.heading[:, 0])
    slip = np.arcsin(np.clip(S.LENGTH / 2 / v_nz * rate, -1, 1))
    return np.clip(np.arctan(2 * np.tan(slip)), -S.MAX_STEERING, S.MAX_STEERING)


def closed_loop(s: S.State, plan_fn, seconds: float, every: int = 5, hz: int = 15):
    """Run the scenes with the ego (vehicle 0) driven by ``plan_fn`` (features (B, F) → plan
    (B, K, 2)), replanning once a second; ``plan_fn=None`` leaves the ego to the expert.

    Returns (trajectories (T', B, N) every ``every`` steps, planning CPU seconds, decisions)."""
    import time
    keys = ("x", "y", "heading", "speed", "crashed")
    out = {k: [getattr(s, k).copy()] for k in keys}
    acc_e = lane_e = None
    cpu, decisions = 0.0, 0
    for k in range(int(round(seconds * hz))):
        target, timer, steer, acc = S.decide(s)
        if plan_fn is not None:
            if k % hz == 0:
                t0 = time.process_time()
                f = scene_features(s.x, s.y, s.heading, s.speed, s.present, s.lanes)
                acc_e, lane_e = waypoint_control(s, plan_fn(f), 1 / hz)
                cpu += time.process_time() - t0
                decisions += len(f)
            steer, acc = steer.copy(), acc.copy()
            steer[:, 0], acc[:, 0] = steering_to(s, lane_e), acc_e
            target = target.copy()
            target[:, 0] = np.where(s.crashed[:, 0], target[:, 0], lane_e)
        s = s._replace(target_lane=target, timer=timer)
        s = S.integrate(s, steer, acc, 1 / hz)
        s = s._replace(crashed=s.crashed | S.collisions(s))
        if (k + 1) % every == 0:
            for key in keys:
                out[key].append(getattr(s, key).copy())
    return {k: np.stack(v) for k, v in out.items()}, cpu, decisions
