import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorylab.claims import Context
from theorylab.errors import ConfigError, InputError, StoreError
from theorylab.papers import moe as moe_paper
from theorylab.simulations import moe_rates
from theorylab.simulations.moe_rates import MoERateStudy, case_study
from theorylab.stats import band_overlaps, loglog_slope, rate_band, within_bound
from theorylab.study import from_dict
from theorylab.sweep import Sweeper

TINY = dict(ns=(60, 120), n_reps=2, n_starts=3, max_iter=60)


@pytest.mark.parametrize("changes, message", [
    ({"expert": "relu"}, "'expert' of MoERateStudy must be one of 'sigmoid', 'tanh', 'linear', 'polynomial'. Got 'relu'."),
    ({"k_fit": 0}, "'k_fit' of MoERateStudy must be an int >= 1 and <= 20. Got 0."),
    ({"k_true": 0}, "'k_true' of MoERateStudy must be an int >= 1 and <= 20. Got 0."),
    ({"k_fit": 1}, "'k_fit' of MoERateStudy must be >= k_true = 2"),
    ({"ns": (5, 100)}, "must be >= the number of free parameters (6 for k=2, d=1). Got n = 5."),
    ({"noise_sd": float("nan")}, "'noise_sd' of MoERateStudy must be a finite real > 0. Got nan."),
    ({"true_eta": ((1.0, 2.0),)}, "'true_eta' of MoERateStudy must have shape (2, 2)"),
    ({"true_beta0": (0.0, 1.0)}, "the last atom's gate of G* must be 0"),
], ids=["family", "k_fit<1", "k_true<1", "under-fitted", "n<params", "nan", "eta-shape", "gauge"])
def test_bad_config_is_one_clear_error(changes, message):
    with pytest.raises(ConfigError) as err:
        MoERateStudy().replace(**changes)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_config_field():
    with pytest.raises(ConfigError, match="unknown config field 'reps' for MoERateStudy"):
        from_dict(MoERateStudy, {"reps": 3})


def test_unit_is_deterministic_and_sane():
    study = MoERateStudy(**TINY)
    a, b = study.run_unit({"n": 120, "rep": 0}), study.run_unit({"n": 120, "rep": 0})
    for key in a:
        if key != "fit_seconds":
            assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key])), key
    assert a["d1"] >= 0 and a["l2"] >= 0 and a["obj_fit"] <= a["obj_true"] * (1 + 1e-9)
    assert np.isnan(a["over_err"])  # exact-fitted: no over-specified cell


def test_exact_and_over_fitted_share_data():
    exact, over = case_study("tanh", "exact"), case_study("tanh", "over")
    assert over.k_fit == exact.k_true + 1
    for x, y in zip(exact.sample(50, 3), over.sample(50, 3), strict=True):
        np.testing.assert_array_equal(x, y)


def test_quick_form_keeps_criteria_inputs():
    full, quick = MoERateStudy(), MoERateStudy().quick()
    assert set(quick.ns) < set(full.ns) | set(quick.ns) and quick.n_reps < full.n_reps
    assert (quick.noise_sd, quick.param_bound, quick.n_starts) == (full.noise_sd, full.param_bound, full.n_starts)


@given(st.floats(-1.5, 0.0), st.floats(-2.0, 2.0), st.integers(0, 2**31))
def test_loglog_slope_recovers_a_known_slope(slope, intercept, seed):
    rng = np.random.default_rng(seed)
    n = np.repeat(np.array([100, 1000, 10000, 100000]), 30)
    loss = np.exp(intercept + slope * np.log(n) + 0.05 * rng.standard_normal(n.size))
    fit = loglog_slope(n, loss)
    assert fit.ci_lo <= fit.slope <= fit.ci_hi
    assert abs(fit.slope - slope) < 0.02


def test_loglog_slope_rejects_bad_losses():
    with pytest.raises(InputError, match="must be finite and > 0"):
        loglog_slope([10, 100], [0.1, 0.0])
    with pytest.raises(InputError, match="at least 2 distinct"):
        loglog_slope([10, 10], [0.1, 0.2])


def test_rate_band_and_overlap():
    lo, hi = rate_band([1e2, 1e3, 1e4, 1e5], 0.5)
    assert lo == -0.5 and -0.5 < hi < -0.35  # the log factor flattens the slope
    assert band_overlaps((-0.6, -0.49), (lo, hi)) and not band_overlaps((-0.7, -0.55), (lo, hi))
    # an upper bound is met by any decay at least as fast, and missed only by a slower one
    assert within_bound((-0.7, -0.55), (lo, hi)) and within_bound((-0.48, -0.3), (lo, hi))
    assert not within_bound((hi + 0.01, -0.1), (lo, hi))


def test_figure_is_built_from_the_store_alone(tmp_path, monkeypatch, store):
    full = moe_rates.case_study  # the paper module imports it from moe_rates when it plots
    monkeypatch.setattr(moe_rates, "case_study",
                        lambda e, c, quick=False: full(e, c).replace(**TINY))
    ctx = Context(store, Sweeper(store, "serial", progress=False), figdir=tmp_path / "fig")
    with pytest.raises(StoreError, match="compute them with `theorylab run moe-rates --quick"):
        moe_paper.rate_figure.make(ctx)
    for e, c in moe_rates.CASES:
        ctx.run(moe_rates.case_study(e, c))
    paths = moe_paper.rate_figure.make(ctx)
    assert sorted(p.suffix for p in paths) == [".png", ".svg"]
    assert all(p.stat().st_size > 10_000 for p in paths)


@pytest.mark.parametrize("slope", [-0.5, -0.7, -0.3])
def test_rate_verdict_criteria_two_sided_vs_upper_bound(monkeypatch, slope):
    # a synthetic loss ~ n^slope: exact-fitted claims need the CI to meet the n^-1/2 band
    # (two-sided), over-fitted ones only to reach it or lie below (the theorems' O_P bound)
    rng = np.random.default_rng(0)
    ns = np.repeat(np.logspace(2, 5, 10), 40)
    table = pd.DataFrame({"n": ns, "d1": ns ** slope * np.exp(0.1 * rng.normal(size=ns.size))})
    monkeypatch.setattr(moe_paper, "_table", lambda ctx, expert, case, noise_sd=None: table)
    exact = moe_paper._rate_verdict(None, "sigmoid", "exact", "d1", 0.5)
    over = moe_paper._rate_verdict(None, "sigmoid", "over", "d1", 0.5)
    assert exact.criterion.kind == "rate_band" and over.criterion.kind == "rate_bound"
    assert exact.status in ("holds", "fails") and over.status in ("holds", "fails")  # precise
    assert exact.holds == (slope == -0.5) == exact.details["tight"]
    assert over.holds == (slope <= -0.5) and over.details["tight"] == (slope == -0.5)


@pytest.mark.parametrize("slope", [-0.5, -0.7, -0.3])
def test_tightness_is_its_own_report_only_claim(monkeypatch, slope):
    # moe.tight.*: the two-sided test on the over-fitted table; report-only (the theorems give
    # upper bounds), holding exactly when the bound claim's details say "tight"
    from theorylab.claims import REGISTRY
    from theorylab.papers import load_all
    load_all()
    rng = np.random.default_rng(1)
    ns = np.repeat(np.logspace(2, 5, 10), 40)
    table = pd.DataFrame({"n": ns, "d1": ns ** slope * np.exp(0.1 * rng.normal(size=ns.size))})
    monkeypatch.setattr(moe_paper, "_table", lambda ctx, expert, case, noise_sd=None: table)
    tight = REGISTRY["moe.tight.d1.sigmoid.over"]
    bound = REGISTRY["moe.d1.sigmoid.over"]
    assert tight.must_hold is False and bound.must_hold is True
    t, b = tight.check(None), bound.check(None)
    assert t.criterion.kind == "rate_band" and t.measured == b.measured
    assert t.holds == b.details["tight"] == (slope == -0.5)
    for prefix in moe_paper.REGIMES:  # each noise regime has its own tightness claims
        root = f"moe.{prefix}." if prefix else "moe."
        others = tuple(f"moe.{p}." for p in moe_paper.REGIMES if p and p != prefix)
        over_ids = {k for k in REGISTRY if k.startswith(root) and k.endswith(".over")
                    and not k.startswith(("moe.tail.", f"{root}tight.", *others))}
        assert {k.replace(root, f"{root}tight.", 1) for k in over_ids} == {
            k for k in REGISTRY if k.startswith(f"{root}tight.")}
