"""Tests of theorylab.kernels.fastexp: the vectorisable exp against numpy's (its slow twin)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.kernels.fastexp import exp_simd

# Cody-Waite reduction + degree-13 Taylor: about 1 ulp; a lost digit anywhere would exceed this
REL_TOL = 4e-16


def test_exp_matches_numpy_over_the_whole_range():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-708, 709, 400_000), rng.uniform(-1, 1, 400_000),
                        np.arange(-708, 710, dtype=float),  # integers: r = x - k ln 2 at its edges
                        (np.arange(-1021, 1023) + 0.5) * np.log(2.0),  # ties of the rounding of k, all <= 709
                        [0.0, -0.0, 1e-300, -1e-300]])
    ref = np.exp(x)
    assert np.max(np.abs(exp_simd(x) - ref) / ref) <= REL_TOL


@settings(deadline=None, max_examples=200)
@given(st.floats(-708.0, 709.0))
def test_exp_relative_error_property(x):
    ref = np.exp(x)
    assert abs(exp_simd([x])[0] - ref) <= REL_TOL * ref


@given(st.floats(allow_nan=False, allow_infinity=True))
def test_exp_is_clamped_finite_and_monotone_at_the_ends(x):
    v = exp_simd([x])[0]
    assert np.isfinite(v) and v > 0.0
    assert exp_simd([-708.0])[0] <= v <= exp_simd([709.0])[0]
    if x <= -708.0:
        assert v == exp_simd([-708.0])[0] < 1e-307
    if x >= 709.0:
        assert v == exp_simd([709.0])[0] > 8e307


def test_exp_is_increasing_across_reduction_boundaries():
    # consecutive k = round(x log2 e) meet at x = (k + 1/2) ln 2: no jump downwards there
    edges = (np.arange(-1000, 1000) + 0.5) * np.log(2.0)
    x = np.sort(np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)]))
    assert np.all(np.diff(exp_simd(x)) >= 0.0)
