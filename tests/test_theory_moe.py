"""Tests of theorylab.theory.moe: the strong-identifiability decision of Nguyen, Ho, Rinaldo (2024)."""

from __future__ import annotations

import pytest
import sympy as sp

from theorylab.errors import ConfigError
from theorylab.theory.moe import (
    FAMILIES,
    KINDS,
    Member,
    function_set,
    function_set_latex,
    identifiability_report,
    verify,
)

EXPECTED = {"sigmoid": True, "tanh": True, "linear": False, "polynomial": False}


@pytest.fixture(scope="module", params=KINDS)
def report(request):
    return request.param, identifiability_report(request.param)


def test_verdicts_match_the_paper(report):
    kind, rep = report
    assert set(rep) == set(FAMILIES)
    for family, result in rep.items():
        assert result.holds is EXPECTED[family], (kind, family, result.method)
        assert result.method.startswith("symbolic")  # decided exactly, not only numerically
        assert result.details["numeric_agrees"], (kind, family, result.details["numeric_ratio"])


def test_independent_sets_are_well_conditioned_and_dependent_ones_singular(report):
    _, rep = report
    for result in rep.values():
        if result.holds:
            assert result.details["numeric_ratio"] > 1e-12 and result.details["dependence"] is None
        else:
            assert result.details["numeric_ratio"] < 1e-25 or result.details["vanishing"]


def test_dependence_found_vanishes_identically(report):
    kind, rep = report
    for family in ("linear", "polynomial"):
        result = rep[family]
        assert result.details["dependence"] is not None
        members = {m.label: m.expr for m in function_set(family, kind)[0]}
        combo = sum(sp.sympify(c) * members[label] for label, c in result.details["combination"])
        assert sp.expand(combo) == 0
        assert len(result.details["combination"]) >= 2  # a genuine combination, not a zero member


def test_gated_linear_dependence_is_euler_relation():
    # h = a x + b is 1-homogeneous in eta: F = a dF/da + b dF/db at every atom
    result = verify("linear", "gated")
    labels = {label.split("@")[0] for label, _ in result.details["combination"]}
    assert labels == {"F", "dF/da", "dF/db"}


def test_shared_gate_expert_interaction_is_merged_for_every_activation():
    for family in ("sigmoid", "tanh", "linear"):
        merged = dict(function_set(family, "expert")[1])
        assert merged["x dh/db@2"] == "dh/da@2"
        merged = dict(function_set(family, "gated")[1])
        assert merged["d2F/dbeta1db@2"] == "dF/da@2"  # atom 2: b = log 3 != 0, no other merge


@pytest.mark.parametrize("family", ["sigmoid", "tanh"])
def test_check_detects_an_injected_dependence(family):
    members, _ = function_set(family, "expert")
    m0, m1 = members[0], members[5]
    injected = Member(1, "injected", sp.expand(2 * m0.expr - 3 * m1.expr))
    result = verify(family, "expert", extra=(injected,))
    assert result.holds is False
    assert "nullspace" in result.method
    assert result.details["residual_is_zero"]
    labels = {label for label, _ in result.details["combination"]}
    assert {"injected", m0.label, m1.label} <= labels
    assert result.details["numeric_ratio"] < 1e-25 and result.details["numeric_agrees"]


def test_check_detects_an_injected_zero_member():
    result = verify("sigmoid", "expert", extra=(Member(0, "zero", sp.Integer(0)),))
    assert result.holds is False and result.details["vanishing"] == ("zero",)


def test_latex_of_the_sets():
    tex = function_set_latex("sigmoid")
    assert r"\sigma'" in tex and r"\sigma''" in tex and "Subs" not in tex
    assert "e^{\\beta_{1} x}" in function_set_latex("tanh", "gated")
    # linear experts: dh/da = x, dh/db = 1, three vanishing second derivatives, x dh/da, x dh/db
    assert function_set_latex("linear") == r"\left\{x,\ 1,\ 0,\ 0,\ 0,\ x^{2},\ x\right\}"


def test_bad_family_or_kind():
    with pytest.raises(ConfigError, match="'family'"):
        verify("relu")
    with pytest.raises(ConfigError, match="'kind'"):
        verify("sigmoid", kind="other")


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_identifiability_claim_statement_matches_its_verdict(family):
    """The claim says 'not strongly identifiable' exactly where the set is linearly dependent."""
    import theorylab.papers.moe  # noqa: F401
    from theorylab.claims import REGISTRY
    text = REGISTRY[f"moe.identifiability.{family}"].statement
    independent = EXPECTED[family]
    assert ("not strongly identifiable" in text) is not independent
    assert text.endswith("linearly independent)" if independent else "linearly dependent)")
