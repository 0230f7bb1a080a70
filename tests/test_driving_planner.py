"""Driving planners: serialise → tokenize → parse is exact, constrained decoding always parses,
scene features against a direct reading of the scene, the LM loss and the closed-loop control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.empirical.driving import batched_sim as S
from theorylab.empirical.driving import planner as P
from theorylab.empirical.driving import serialise as T
from theorylab.errors import InputError

BOUND = 99.99
finite = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False)


@given(q=st.integers(-9999, 9999))
def test_number_round_trip_is_exact(q):
    toks = T.encode_number(q)
    assert len(toks) == T.NUM_LEN
    assert T.decode_number(toks) == q


@given(z=finite)
def test_quantise_is_nearest_hundredth(z):
    q = int(T.quantise(z))
    assert abs(q / 100 - z) <= 0.005 + 1e-9


def _features(draw_vals, lane, present):
    f = np.zeros(T.N_FEATURES)
    f[:4] = [abs(draw_vals[0]), lane, draw_vals[1], draw_vals[2]]
    for k in range(len(T.SLOTS)):
        f[4 + 3 * k: 7 + 3 * k] = [present[k], draw_vals[3 + 2 * k], draw_vals[4 + 2 * k]]
    return f


@given(vals=st.lists(finite, min_size=15, max_size=15), lane=st.integers(0, 9),
       present=st.lists(st.booleans(), min_size=6, max_size=6),
       plan=st.lists(finite, min_size=6, max_size=6))
def test_serialise_tokenize_parse_round_trip(vals, lane, present, plan):
    """Scene: every number comes back from the prompt's text; plan: parse(tokens) is exact on
    the quantised waypoints, and its text reads back to the same tokens' numbers."""
    f = _features(vals, lane, present)
    toks = T.scene_tokens(f)
    assert len(toks) <= P.PROMPT_LEN and toks[0] == T.TOKEN["<bos>"]
    words = T.to_text(toks).split()
    nums = [float(w) for w in words if w[0] in "+-"]
    want = [f[0], f[2], f[3]] + [v for k in range(6) if present[k]
                                 for v in f[5 + 3 * k: 7 + 3 * k]]
    np.testing.assert_array_equal(nums, T.quantise(want) / 100)
    assert f"lane{lane}" in words and words.count("none") == 6 - sum(present)
    r = np.array(plan).reshape(3, 2)
    np.testing.assert_array_equal(T.parse_plan(T.plan_tokens(r)), T.quantise(r) / 100)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 4))
def test_constrained_decoding_always_parses(seed, n):
    """Any weights (random init, logits scaled up so that grammar-violating tokens would win
    unconstrained), any prompt: every decoded plan parses."""
    torch.manual_seed(seed)
    m = P.LMPlanner(16, 1, 2)
    with torch.no_grad():
        m.tok.weight.mul_(50)
    rng = np.random.default_rng(seed)
    f = np.stack([_features(rng.uniform(-50, 50, 15), rng.integers(0, 3), rng.random(6) < 0.5)
                  for _ in range(n)])
    out = P.decode(m, P.prompt_batch(f))
    assert out.shape == (n, T.PLAN_LEN)
    for row in out:
        T.parse_plan(row)


def test_unconstrained_tokens_would_not_parse():
    """The constraint matters: the same models, decoded without the grammar, break the format."""
    bad = 0
    for seed in range(5):
        torch.manual_seed(seed)
        m = P.LMPlanner(16, 1, 2)
        f = np.zeros((1, T.N_FEATURES))
        seq = P.prompt_batch(f)
        with torch.no_grad():
            for _ in range(T.PLAN_LEN):
                seq = torch.cat([seq, m(seq)[:, -1:].argmax(-1)], 1)
        try:
            T.parse_plan(seq[0, P.PROMPT_LEN:])
        except InputError:
            bad += 1
    assert bad == 5


@pytest.mark.parametrize("tokens,msg", [
    ([1, 2, 3], "must be 16 tokens"),
    ([T.TOKEN["wp2"]] + [T.TOKEN["+1"], T.TOKEN[".00"]] * 2 + [0] * 10 + [T.TOKEN["<eos>"]],
     "must be wp1"),
])
def test_malformed_plan_is_one_line(tokens, msg):
    with pytest.raises(InputError, match=msg) as e:
        T.parse_plan(tokens)
    assert "\n" not in str(e.value)


def test_scene_features_read_the_scene():
    # ego on lane 1 at x=100; ahead on lane 1 at 130, behind on lane 0 at 90, far on lane 2
    x = np.array([[100.0, 130.0, 90.0, 350.0]])
    y = np.array([[4.3, 4.0, 0.0, 8.0]])
    v = np.array([[25.0, 22.0, 24.0, 20.0]])
    f = P.scene_features(x, y, np.zeros_like(x), v, np.ones_like(x, bool), 3)[0]
    assert f[:3].tolist() == pytest.approx([25.0, 1, 0.3])
    slot = {s: f[4 + 3 * k: 7 + 3 * k].tolist() for k, s in enumerate(T.SLOTS)}
    assert slot["SF"] == [1, 30.0, -3.0] and slot["LR"] == [1, -10.0, -1.0]
    assert slot["RF"] == [0, 0, 0] and slot["SR"] == [0, 0, 0] and slot["LF"] == [0, 0, 0]


def test_lm_loss_is_plan_cross_entropy():
    """lm_loss equals the cross-entropy of the plan tokens computed token by token."""
    torch.manual_seed(0)
    m = P.LMPlanner(16, 1, 2)
    rng = np.random.default_rng(1)
    f = np.stack([_features(rng.uniform(-9, 9, 15), 1, [True] * 6) for _ in range(2)])
    seq = P.sequences(f, rng.uniform(-3, 3, (2, 3, 2)))
    logp = torch.log_softmax(m(seq), -1)
    want = -np.mean([logp[b, t - 1, seq[b, t]].item() for b in range(2)
                     for t in range(P.PROMPT_LEN, seq.shape[1])])
    assert P.lm_loss(m, (seq,)).item() == pytest.approx(want, rel=1e-5)


def test_waypoint_control_reaches_the_first_waypoint():
    """Constant acceleration from the plan: x after 1 s of the bicycle model equals the waypoint
    (straight ahead); the lane is the one closest to the waypoint's y."""
    s = S.State(*(np.array([[v]], float) for v in (0.0, 4.0, 0.0, 20.0, 20.0)),
                np.array([[1]]), np.zeros((1, 1)), np.full((1, 1), 4.0), np.zeros((1, 1), bool),
                np.ones((1, 1), bool), 3)
    plan = np.array([[[21.5, 0.1], [44, 0], [66, 0]]])
    acc, lane = P.waypoint_control(s, plan)
    assert lane.tolist() == [1] and acc[0] == pytest.approx(3.0 * 15 / 14)
    for _ in range(15):
        s = S.integrate(s, P.steering_to(s, lane), acc, 1 / 15)
    assert s.x[0, 0] == pytest.approx(21.5, abs=0.01)
    plan[0, 0, 1] = 3.0
    assert P.waypoint_control(s, plan)[1].tolist() == [2]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_cached_decoding_equals_full_recomputation(seed):
    """Incremental decoding (keys and values kept) gives the logits of the full forward pass and
    the same tokens."""
    torch.manual_seed(seed)
    m = P.LMPlanner(16, 2, 2)
    rng = np.random.default_rng(seed)
    f = np.stack([_features(rng.uniform(-50, 50, 15), rng.integers(0, 3), rng.random(6) < 0.5)
                  for _ in range(3)])
    pr = P.prompt_batch(f)
    out = P.decode(m, pr, cached=True)
    assert torch.equal(out, P.decode(m, pr, cached=False))
    seq = torch.cat([pr, out], 1)
    cache = P._Cache(2)
    with torch.no_grad():
        first = P._forward_cached(m, seq[:, :P.PROMPT_LEN], cache, 0)
        rest = [P._forward_cached(m, seq[:, t:t + 1], cache, t)
                for t in range(P.PROMPT_LEN, seq.shape[1])]
        full = m(seq)
    torch.testing.assert_close(torch.cat([first] + rest, 1), full, atol=1e-5, rtol=1e-5)
