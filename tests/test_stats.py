"""theorylab.stats: the CI over group means against a hand loop, and its invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from theorylab.errors import InputError
from theorylab.stats import grouped_mean_ci, mean_ci


def _slow_grouped_ci(x, groups, level=0.95):
    """Reference straight from the formula: a dict of lists, a loop, the t quantile."""
    by = {}
    for v, g in zip(x, groups, strict=True):
        by.setdefault(g, []).append(v)
    means = [sum(v) / len(v) for v in by.values()]
    r = len(means)
    m = sum(means) / r
    s = math.sqrt(sum((u - m) ** 2 for u in means) / (r - 1))
    h = sps.t.ppf(0.5 + level / 2, r - 1) * s / math.sqrt(r)
    return m, (m - h, m + h), r


finite = st.floats(-1, 1, allow_nan=False, allow_infinity=False)
# a sample of groups, each with its draws: 2..10 groups of 1..6 draws
grouped = st.lists(st.lists(finite, min_size=1, max_size=6), min_size=2, max_size=10)


def _flatten(groups_of_draws):
    x = [v for g in groups_of_draws for v in g]
    labels = [i for i, g in enumerate(groups_of_draws) for _ in g]
    return np.array(x), np.array(labels)


@given(grouped, st.sampled_from([0.8, 0.95, 0.99]))
def test_grouped_mean_ci_matches_the_hand_loop(groups_of_draws, level):
    x, labels = _flatten(groups_of_draws)
    m, ci, r = grouped_mean_ci(x, labels, level)
    m_ref, ci_ref, r_ref = _slow_grouped_ci(x, labels, level)
    assert r == r_ref == len(groups_of_draws)
    assert m == pytest.approx(m_ref, abs=1e-12)
    np.testing.assert_allclose(ci, ci_ref, atol=1e-12)


@given(grouped, st.randoms(use_true_random=False))
def test_permuting_draws_within_groups_changes_nothing(groups_of_draws, rnd):
    x, labels = _flatten(groups_of_draws)
    shuffled = [rnd.sample(g, len(g)) for g in groups_of_draws]
    xs, ls = _flatten(shuffled)
    # also present the rows in another order (labels travel with their values)
    order = np.array(rnd.sample(range(len(xs)), len(xs)))
    a = grouped_mean_ci(x, labels)
    b = grouped_mean_ci(xs[order], ls[order])
    assert a[2] == b[2] and a[0] == pytest.approx(b[0], abs=1e-12)
    np.testing.assert_allclose(a[1], b[1], atol=1e-12)


@given(grouped, st.integers(2, 5))
def test_duplicating_draws_does_not_shrink_the_ci(groups_of_draws, k):
    x, labels = _flatten(groups_of_draws)
    lo, hi = grouped_mean_ci(x, labels)[1]
    lo_k, hi_k = grouped_mean_ci(np.repeat(x, k), np.repeat(labels, k))[1]
    if math.isnan(lo):  # every group mean equal up to rounding: no spread either way
        return
    assert hi_k - lo_k >= (hi - lo) * (1 - 1e-9) - 1e-12
    # whereas counting the k copies as independent draws would narrow the interval
    if np.ptp(x) > 1e-6:
        naive, naive_k = mean_ci(x)[1], mean_ci(np.repeat(x, k))[1]
        assert naive_k[1] - naive_k[0] < naive[1] - naive[0]


def test_groups_weigh_the_same_whatever_their_draws():
    # group 0: one draw of 1.0; group 1: four draws of 0.0 -> mean of group means 0.5
    m, _, r = grouped_mean_ci([1.0, 0.0, 0.0, 0.0, 0.0], ["a", "b", "b", "b", "b"])
    assert (m, r) == (0.5, 2)


@pytest.mark.parametrize("x, groups, fragment", [
    ([], [], "non-empty finite sample. Got 0 values"),
    ([1.0, float("nan")], [0, 1], "1 not finite"),
    ([1.0, 2.0], [0], "one label per value of 'x' (2). Got 1"),
], ids=["empty", "nan", "labels-length"])
def test_grouped_mean_ci_rejects_bad_input(x, groups, fragment):
    with pytest.raises(InputError) as e:
        grouped_mean_ci(x, groups)
    assert fragment in str(e.value)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=8),
       st.lists(st.floats(-10, 10), min_size=2, max_size=8))
def test_seed_paired_difference_pairs_by_seed(xs, ys):
    import pandas as pd

    from theorylab.stats import seed_paired_difference
    va = pd.Series(xs, index=range(len(xs)))
    vb = pd.Series(ys, index=range(len(ys)))[::-1]             # order must not matter, the seed does
    n = min(len(xs), len(ys))
    out = seed_paired_difference(va, vb, "a", "b")
    mean, ci = mean_ci(np.array(xs[:n]) - np.array(ys[:n]))
    assert out["n_seeds"] == n
    assert out["mean"] == pytest.approx(mean, abs=1e-12) and out["ci"] == pytest.approx(ci, abs=1e-9)
    one = seed_paired_difference(va, pd.Series([ys[0]], index=[0]), "a", "b")  # scored once
    assert one["n_seeds"] == len(xs)
    assert one["mean"] == pytest.approx(float(np.mean(xs)) - ys[0], abs=1e-9)
