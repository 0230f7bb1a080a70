"""Criterion objects: each kind decides holds / fails / inconclusive on synthetic numbers, and its
rendered text and machine-readable description say what it decides."""

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorylab.claims import ClaimResult, Verdict, claim
from theorylab.criteria import (
    STATUSES,
    AllOf,
    CIAbove,
    CIBelow,
    CIContains,
    Equality,
    Measured,
    RateBand,
    RateBound,
    Threshold,
    from_description,
)
from theorylab.errors import ConfigError

BAND = (-0.5, -0.43)
finite = st.floats(-5, 5, allow_nan=False)


def _ci(centre, half):
    return (centre - half, centre + half)


# ----------------------------------------------------------------------------- rates

@pytest.mark.parametrize("ci, status", [
    (_ci(-0.48, 0.05), "holds"),          # meets the band, decays, precise
    (_ci(-0.48, 0.3), "inconclusive"),    # meets the band only because it is wide
    (_ci(-0.80, 0.05), "fails"),          # faster than the band: not two-sided
    (_ci(-0.80, 0.5), "inconclusive"),    # wide, touches the band
    (_ci(-1.50, 0.5), "fails"),           # wide but disjoint from the band
    (_ci(-0.30, 0.05), "fails"),          # above the band
    ((-0.45, 0.01), "inconclusive"),      # meets the band, no measured decay, wide
])
def test_rate_band(ci, status):
    assert RateBand(BAND, max_half_width=0.1).decide(-0.0, ci) == status


def test_rate_band_without_decay_fails_when_precise_enough():
    assert RateBand(BAND, max_half_width=0.3).decide(-0.2, (-0.45, 0.01)) == "fails"


@pytest.mark.parametrize("ci, status", [
    (_ci(-0.48, 0.05), "holds"),          # attains the bound
    (_ci(-0.80, 0.05), "holds"),          # faster than the bound: an upper bound holds
    (_ci(-0.80, 0.3), "inconclusive"),    # too wide to tell
    (_ci(-0.30, 0.05), "fails"),          # slower than the band
    (_ci(-0.30, 0.5), "inconclusive"),    # wide: reaches the band, crosses 0
    (_ci(0.5, 0.3), "fails"),             # wide, entirely above the band
])
def test_rate_bound(ci, status):
    assert RateBound(BAND, max_half_width=0.1).decide(-0.0, ci) == status


def test_rate_without_ci_is_inconclusive():
    assert RateBound(BAND, 0.1).decide(-0.5, None) == "inconclusive"
    assert RateBand(BAND, 0.1).decide(-0.5, (math.nan, math.nan)) == "inconclusive"


@given(lo=finite, width=st.floats(0, 3), hw=st.floats(0.01, 1))
def test_rate_bound_is_weaker_than_band_and_precision_gates_holds(lo, width, hw):
    ci = (lo, lo + width)
    band, bound = RateBand(BAND, hw).decide(None, ci), RateBound(BAND, hw).decide(None, ci)
    assert band in STATUSES and bound in STATUSES
    if band == "holds":
        assert bound == "holds"
    if "holds" in (band, bound):
        assert width / 2 <= hw and ci[1] < 0


# ----------------------------------------------------------------------------- threshold, CI

@given(x=finite, v=finite, op=st.sampled_from(["<", "<=", ">", ">="]))
def test_threshold_matches_its_rendered_comparison(x, v, op):
    c = Threshold(op, v)
    text = c.render()
    assert text.split()[0] == op and float(text.split()[1]) == pytest.approx(v, rel=1e-5)
    assert (c.decide(x) == "holds") == eval(f"{x!r} {op} {v!r}")
    assert c.describe() == {"kind": "threshold", "op": op, "value": v}


def test_threshold_nan_fails_and_bad_op_is_rejected():
    assert Threshold("<", 1.0).decide(math.nan) == "fails"
    with pytest.raises(ConfigError, match="'op' of Threshold must be one of"):
        Threshold("==", 1.0)


@pytest.mark.parametrize("ci, inclusive, status", [
    ((0.1, 0.3), False, "holds"),
    ((0.1, 5.0), False, "holds"),          # wide but entirely above: width does not help it
    ((0.0, 0.3), False, "inconclusive"),   # touches 0, wide
    ((0.0, 0.3), True, "holds"),           # inclusive: lo >= 0
    ((-0.05, 0.05), False, "fails"),       # straddles, precise
    ((-0.5, 0.5), False, "inconclusive"),  # straddles, wide
    ((-3.0, -1.0), False, "fails"),        # wide but entirely below
])
def test_ci_above(ci, inclusive, status):
    assert CIAbove(0.0, max_half_width=0.1, inclusive=inclusive).decide(None, ci) == status


@given(lo=finite, width=st.floats(0, 3), v=finite, hw=st.floats(0.01, 1))
def test_ci_below_mirrors_ci_above(lo, width, v, hw):
    above = CIAbove(v, hw).decide(None, (lo, lo + width))
    below = CIBelow(-v, hw).decide(None, (-lo - width, -lo))
    assert above == below
    assert (above == "holds") == (lo > v)


@pytest.mark.parametrize("ci, status", [
    ((-0.05, 0.05), "holds"),          # contains 0, precise
    ((0.0, 0.2), "holds"),             # an end on the value counts as inside
    ((-0.5, 0.5), "inconclusive"),     # contains 0, too wide to tell
    ((0.01, 0.05), "fails"),           # precise, excludes 0
    ((0.01, 5.0), "fails"),            # wide, but excludes 0: width does not help it
    ((-3.0, -1.0), "fails"),
])
def test_ci_contains_is_two_sided(ci, status):
    assert CIContains(0.0, max_half_width=0.1).decide(None, ci) == status
    assert CIContains(0.0, max_half_width=0.1).decide(None, None) == "inconclusive"


# ----------------------------------------------------------------------------- equality, all-of

def test_equality_exact_tolerances_and_precision():
    assert Equality("key").decide("key") == "holds"
    assert Equality("key").decide("attn_out") == "fails"
    assert Equality(True).decide(False) == "fails"
    assert Equality(1.0, abs_tol=0.1).decide(1.05) == "holds"
    assert Equality(1.0, abs_tol=0.1).decide(1.2) == "fails"
    assert Equality(2.0, rel_tol=0.1).decide(2.19) == "holds"
    assert Equality(2.0, rel_tol=0.1).decide(1.79) == "fails"
    c = Equality(2.0, rel_tol=0.1, max_half_width=0.05)
    assert c.decide(2.0, (1.9, 2.1)) == "inconclusive"
    assert c.decide(2.0, (1.99, 2.01)) == "holds"
    assert c.decide(2.0, None) == "inconclusive"
    assert "± 10% (relative)" in c.render() and "half-width <= 0.05" in c.render()
    with pytest.raises(ConfigError, match="not both"):
        Equality(1.0, abs_tol=0.1, rel_tol=0.1)


def test_all_of_fails_before_inconclusive_and_renders_every_part():
    c = AllOf({"ratio": Threshold("<", 0.25), "rho": Threshold("<=", -0.9),
               "gap": CIAbove(0.0, 0.1)})
    assert c.render() == "ratio < 0.25 and rho <= -0.9 and gap CI > 0"
    ok = {"ratio": 0.1, "rho": -0.95, "gap": Measured(0.2, (0.1, 0.3))}
    assert c.decide(ok) == "holds"
    assert c.decide({**ok, "rho": -0.5}) == "fails"          # the part the old text hid
    assert c.decide({**ok, "gap": Measured(0.0, (-1, 1))}) == "inconclusive"
    assert c.decide({**ok, "rho": -0.5, "gap": Measured(0.0, (-1, 1))}) == "fails"
    assert set(c.describe()["parts"]) == {"ratio", "rho", "gap"}
    with pytest.raises(ConfigError, match="misses measured values for: rho"):
        c.decide({"ratio": 0.1, "gap": 0.2})


# ----------------------------------------------------------------------------- verdict, JSON

def test_verdict_status_expected_and_json_come_from_the_criterion():
    @claim("_crit.demo", paper="TOY", kind="theory", statement="s", must_hold=False,
           register=False)
    def demo(ctx):
        return Verdict(measured=-0.48, criterion=RateBound(BAND, 0.1), ci=_ci(-0.48, 0.3))

    v = demo.check(None)
    assert (v.status, v.holds) == ("inconclusive", False)
    assert v.expected == RateBound(BAND, 0.1).render()
    j = json.loads(json.dumps(ClaimResult(demo, v, 0.1).to_json()))
    assert j["status"] == "inconclusive" and j["holds"] is False and j["must_hold"] is False
    assert j["criterion"] == {"kind": "rate_bound", "band": list(BAND), "requires_decay": True,
                              "max_half_width": 0.1}
    with pytest.raises(TypeError, match="criterion"):
        Verdict(measured=1.0, criterion="< 2")


@st.composite
def criteria(draw, depth=1):
    v, hw = draw(finite), draw(st.floats(0.01, 1))
    options = [Threshold(draw(st.sampled_from(["<", "<=", ">", ">="])), v),
               RateBand((v, v + draw(st.floats(0, 1))), hw),
               RateBound((v, v + draw(st.floats(0, 1))), hw),
               CIAbove(v, hw, draw(st.booleans())), CIBelow(v, hw, draw(st.booleans())),
               CIContains(v, hw),
               Equality(v, abs_tol=draw(st.floats(0, 1))), Equality(v, rel_tol=0.1, max_half_width=hw)]
    if depth:
        options.append(AllOf({"a": draw(criteria(depth=0)), "b": draw(criteria(depth=0))}))
    return draw(st.sampled_from(options))


@given(c=criteria(), x=finite, lo=finite, width=st.floats(0, 3))
def test_description_round_trips_to_the_same_decision_and_text(c, x, lo, width):
    """describe() is JSON and says everything decide() uses: rebuilt from it, the criterion
    renders the same text and decides every measurement the same way."""
    again = from_description(json.loads(json.dumps(c.describe())))
    assert again.render() == c.render()
    m = {"a": Measured(x, (lo, lo + width)), "b": Measured(-x, (lo - width, lo))}
    value = m if isinstance(c, AllOf) else x
    assert again.decide(value, (lo, lo + width)) == c.decide(value, (lo, lo + width))


def test_unknown_description_is_one_line():
    with pytest.raises(ConfigError, match="unknown criterion kind 'median'"):
        from_description({"kind": "median"})
