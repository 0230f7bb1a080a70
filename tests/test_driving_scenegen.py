"""Scenario generation: attributes, the shuffled baseline, realism, the generator's contexts
(teacher forcing equals sampling) and criticality."""

from __future__ import annotations

import numpy as np
import torch

from theorylab.empirical.driving import batched_sim as S
from theorylab.empirical.driving import scenegen as G
from theorylab.empirical.train import TrainConfig


def _scenes(rng, B=40, N=12, lanes=3):
    a = np.stack([rng.integers(0, lanes, (B, N)), rng.exponential(12, (B, N)) + 6,
                  rng.uniform(15, 22, (B, N)), rng.uniform(22, 25, (B, N))], -1).astype(float)
    a[:, 0, 1] = 0.0
    return a


def test_attributes_sort_by_x_and_rebuild_positions():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 300, (5, 9))
    y = rng.integers(0, 3, (5, 9)) * 4.0 + rng.uniform(-1, 1, (5, 9))
    v, vt = rng.uniform(15, 25, (5, 9)), rng.uniform(20, 25, (5, 9))
    a = G.attributes(x, y, v, vt, 3)
    np.testing.assert_allclose(np.sort(x, 1) - x.min(1, keepdims=True), np.cumsum(a[..., 1], 1))
    order = np.argsort(x, 1)
    np.testing.assert_array_equal(a[..., 2], np.take_along_axis(v, order, 1))
    np.testing.assert_array_equal(a[..., 0], S.lane_of(np.take_along_axis(y, order, 1), 3))


def test_shuffled_keeps_every_marginal_and_breaks_the_pairing():
    a = _scenes(np.random.default_rng(1))
    b = G.shuffled(a, np.random.default_rng(2))
    for j in (0, 2, 3):
        np.testing.assert_array_equal(np.sort(a[..., j], None), np.sort(b[..., j], None))
    np.testing.assert_array_equal(np.sort(a[:, 1:, 1], None), np.sort(b[:, 1:, 1], None))
    assert (b[:, 0, 1] == 0).all() and not np.array_equal(a, b)


def test_realism_is_zero_against_itself_and_grows_with_a_shift():
    a = _scenes(np.random.default_rng(3))
    assert G.realism(a, a, 3)["mean"] == 0.0
    shifted = a.copy()
    shifted[..., 2] += 3.0
    r = G.realism(shifted, a, 3)
    assert r["speed"] > 1.0 and r["bumper_gap"] == 0.0


def test_teacher_forced_contexts_are_the_sampling_contexts():
    """A scene drawn by ``sample`` gets, under teacher forcing, exactly the contexts its
    vehicles were drawn from (the running per-lane summaries agree)."""
    a = _scenes(np.random.default_rng(4))
    torch.manual_seed(0)
    m = G.fit(a, 3, TrainConfig(epochs=1, batch_size=128, device="cpu"), 0, hidden=16)
    seen = []
    real = G._step_context

    def spy(*args):
        seen.append(real(*args))
        return seen[-1]
    G._step_context = spy
    try:
        drawn = G.sample(m, 6, 12, torch.Generator().manual_seed(5))
        seen_sampling = np.stack(seen[-12:], 1)
    finally:
        G._step_context = real
    np.testing.assert_array_equal(G._context(drawn, 3), seen_sampling)
    lanes = G._context(drawn, 3)[:, 1:, :3].argmax(-1)
    np.testing.assert_array_equal(lanes, drawn[:, :-1, 0])     # one-hot of the previous lane


def test_criticality_sees_an_overlap_and_a_clear_road():
    # two scenes of two vehicles on lane 0: 1 m apart (overlapping) and 80 m apart, same speed
    a = np.array([[[0, 0.0, 20, 20], [0, 1.0, 20, 20]], [[0, 0.0, 20, 20], [0, 80.0, 20, 20]]])
    c = G.criticality(a, 3, 1.0, np.random.default_rng(0))
    assert c["collision"].tolist() == [True, False]
    assert c["near_miss"].tolist() == [True, False]


def _undertrained(seed=6):
    """A generator trained for one epoch on synthetic scenes: its Gaussians are wide, so its own
    draws leave the training support."""
    a = _scenes(np.random.default_rng(seed))
    m = G.fit(a, 3, TrainConfig(epochs=1, batch_size=128, device="cpu"), 0, hidden=16)
    return a, m


def test_truncated_samples_stay_within_the_training_support():
    a, m = _undertrained()
    box = G.support(a)
    raw = G.sample(m, 60, 12, torch.Generator().manual_seed(7))
    cut = G.sample(m, 60, 12, torch.Generator().manual_seed(7), box)
    outside = ((raw[:, 1:, 1] < box[0, 0]) | (raw[:, 1:, 1] > box[0, 1])).any()
    outside |= ((raw[..., 2] < box[1, 0]) | (raw[..., 2] > box[1, 1])).any()
    assert outside                      # the untruncated draw does leave it: the test can fail
    assert (cut[:, 0, 1] == 0).all()
    for row, col in ((0, cut[:, 1:, 1]), (1, cut[..., 2]), (2, cut[..., 3])):
        assert box[row, 0] <= col.min() and col.max() <= box[row, 1]
    assert set(np.unique(cut[..., 0])) <= {0.0, 1.0, 2.0}
    assert G.realism(cut, cut, 3)["mean"] == 0.0
    assert np.isfinite(list(G.realism(cut, a, 3).values())).all()


def test_a_box_containing_every_draw_changes_nothing():
    """Truncation acts only on draws outside the box: with a box no draw leaves, the sample is
    the untruncated one bit for bit (same noise), and ``support`` is the attributes' range."""
    a, m = _undertrained(8)
    wide = np.array([[0.0, 1e9], [-1.0, 41.0], [-1.0, 41.0]])
    np.testing.assert_array_equal(G.sample(m, 20, 12, torch.Generator().manual_seed(9)),
                                  G.sample(m, 20, 12, torch.Generator().manual_seed(9), wide))
    box = G.support(a)
    assert box[0].tolist() == [a[:, 1:, 1].min(), a[:, 1:, 1].max()]
    assert box[2].tolist() == [a[..., 3].min(), a[..., 3].max()]
