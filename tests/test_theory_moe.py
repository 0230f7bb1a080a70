"""Tests of theorylab.theory.moe: the strong-identifiability decision of Nguyen, Ho, Rinaldo (2024)."""

from __future__ import annotations

import mpmath
import pytest
import sympy as sp

from theorylab.errors import ConfigError
from theorylab.theory.moe import (
    ATOMS,
    FAMILIES,
    KINDS,
    Member,
    atom_parameters,
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


# ---- an independent construction of the sets, from h itself (sympy diff), by label ----------

def _h(family, eta):
    x = sp.Symbol("x")
    if family == "polynomial":
        return eta[-1] + sum(a * x ** (i + 1) for i, a in enumerate(eta[:-1]))
    u = eta[0] * x + eta[1]
    return {"sigmoid": 1 / (1 + sp.exp(-u)), "tanh": sp.tanh(u), "linear": u}[family]


def _functions_by_label(family, kind, params=None):
    """Every member of the raw (unmerged) set, label -> function of x, built by differentiating h.

    ``params``: per atom (beta1, eta) to substitute; None keeps them symbolic (one generic atom).
    """
    x, beta1 = sp.Symbol("x"), sp.Symbol("beta_1")
    names = ["a_1", "a_2", "b"] if family == "polynomial" else ["a", "b"]
    eta = sp.symbols(names)
    h = _h(family, eta)
    F = sp.exp(beta1 * x) * h
    raw = {}
    if kind == "expert":
        for i, n in enumerate(names):
            raw[f"dh/d{n}"] = sp.diff(h, eta[i])
            raw[f"x dh/d{n}"] = x * sp.diff(h, eta[i])
            for k in range(i, len(names)):
                raw[f"d2h/d{n}d{names[k]}"] = sp.diff(h, eta[i], eta[k])
    else:
        raw.update({"F": F, "dF/dbeta1": sp.diff(F, beta1), "d2F/dbeta1^2": sp.diff(F, beta1, 2)})
        for i, n in enumerate(names):
            raw[f"dF/d{n}"] = sp.diff(F, eta[i])
            raw[f"d2F/dbeta1d{n}"] = sp.diff(F, beta1, eta[i])
            for k in range(i, len(names)):
                raw[f"d2F/d{n}d{names[k]}"] = sp.diff(F, eta[i], eta[k])
    if params is None:
        return raw
    return {f"{label}@{j + 1}": f.subs({beta1: b1, **dict(zip(eta, e, strict=True))})
            for j, (b1, e) in enumerate(params) for label, f in raw.items()}


def _atoms(family):
    return [atom_parameters(family, j) for j in range(len(ATOMS))]


def _numeric_rank(functions):
    """Rank of functions of x from 64 points of [-3, 3] at 40 digits (gap: > 1e-12 vs < 1e-30)."""
    x = sp.Symbol("x")
    fns = [sp.lambdify(x, f, "mpmath") for f in functions]
    with mpmath.workdps(40):
        M = mpmath.matrix([[mpmath.mpf(f(3 * mpmath.cos(mpmath.pi * (2 * i + 1) / 128)))
                            for f in fns] for i in range(64)])
        for c in range(M.cols):
            norm = mpmath.sqrt(sum(M[r, c] ** 2 for r in range(M.rows))) or 1  # zero members
            for r in range(M.rows):
                M[r, c] /= norm
        svs = mpmath.svd_r(M, compute_uv=False)
        return sum(1 for v in svs if v > 1e-20 * max(svs))


def _accounts_for_every_function(family, kind, result):
    """Nothing is dropped wrongly: merged + kept labels are the raw set, and the raw set's rank
    deficiency is exactly merges + vanishing members + relations."""
    raw = _functions_by_label(family, kind, _atoms(family))
    kept, _ = function_set(family, kind)
    merged = result.details["merged"]
    if {m.label for m in kept} | {a for a, _ in merged} != set(raw) or \
            len(kept) + len(merged) != len(raw):
        return False
    deficiency = len(raw) - _numeric_rank(list(raw.values()))
    return deficiency == len(merged) + len(result.details["vanishing"]) + \
        len(result.details["relations"])


def test_relations_vanish_identically(report):
    """Every returned combination, rebuilt from h by differentiation, simplifies to 0."""
    kind, rep = report
    for family, result in rep.items():
        relations = result.details["relations"]
        assert result.details["relations_vanish"] and result.details["relations_complete"]
        if result.holds:
            assert relations == () and result.details["dependence"] is None
            continue
        assert relations and len(result.details["dependence"]) == len(relations)
        functions = _functions_by_label(family, kind, _atoms(family))
        for relation in relations:
            assert len(relation) >= 2  # a genuine combination, not a zero member
            assert sp.simplify(sum(c * functions[label] for label, c in relation)) == 0


def test_merges_hold_for_every_parameter_value(report):
    """A member is dropped only as the same Taylor coefficient: equal for symbolic beta1, eta."""
    kind, rep = report
    for family, result in rep.items():
        generic = _functions_by_label(family, kind)
        for dropped, kept in result.details["merged"]:
            assert dropped.split("@")[1] == kept.split("@")[1]
            assert sp.simplify(generic[dropped.split("@")[0]] - generic[kept.split("@")[0]]) == 0


def test_nothing_is_dropped_wrongly(report):
    kind, rep = report
    for family, result in rep.items():
        assert _accounts_for_every_function(family, kind, result), (kind, family)


def test_the_accounting_check_catches_a_wrong_drop(monkeypatch):
    """Dropping a member that is no duplicate (here d2h/dbdb@1 of sigmoid) fails the check."""
    from theorylab.theory import moe
    real = moe._function_set

    def drops_one(family, kind, degree):
        members, merged, tex = real(family, kind, degree)
        return ([m for m in members if m.label != "d2h/dbdb@1"],
                merged + [("d2h/dbdb@1", "dh/da@1")], tex)

    monkeypatch.setattr(moe, "_function_set", drops_one)
    result = moe.verify("sigmoid")
    assert result.holds  # the smaller set is still independent: the verdict alone cannot tell
    assert not _accounts_for_every_function("sigmoid", "expert", result)


def test_linear_experts_first_derivatives_do_not_depend_on_eta():
    """What makes linear experts fail: zero second derivatives and eta-free first ones."""
    result = verify("linear")
    assert set(result.details["dependence"]) == {
        "dh/da@1 - dh/da@2 = 0", "dh/db@1 - dh/db@2 = 0", "x dh/da@1 - x dh/da@2 = 0"}
    assert {v.split("@")[0] for v in result.details["vanishing"]} == {
        "d2h/dada", "d2h/dadb", "d2h/dbdb"}
    assert r"\partial_{a} h_1 - \partial_{a} h_2 = 0" in result.details["dependence_latex"]
    # x dh/db = dh/da is merged for every phi(ax + b): the same merge for sigmoid
    assert result.details["merged"] == verify("sigmoid").details["merged"]


def test_gated_linear_dependence_is_euler_relation():
    # h = a x + b is 1-homogeneous in eta: F = a dF/da + b dF/db at every atom
    result = verify("linear", "gated")
    _, (a, b) = atom_parameters("linear", 1)
    euler = {("F@2", 1), ("dF/da@2", -a), ("dF/db@2", -b)}
    assert any(set(r) == euler for r in result.details["relations"])


def test_shared_gate_expert_interaction_is_merged_for_every_activation():
    for family in ("sigmoid", "tanh", "linear"):
        merged = dict(function_set(family, "expert")[1])
        assert merged == {"x dh/db@1": "dh/da@1", "x dh/db@2": "dh/da@2"}
        merged = dict(function_set(family, "gated")[1])
        # only the identity that holds at every atom; F = dF/da at atom 1 (b = 0) is not merged
        assert merged == {"d2F/dbeta1db@1": "dF/da@1", "d2F/dbeta1db@2": "dF/da@2"}


@pytest.mark.parametrize("family", ["sigmoid", "tanh"])
def test_check_detects_an_injected_dependence(family):
    members, _ = function_set(family, "expert")
    m0, m1 = members[0], members[5]
    injected = Member(1, "injected", sp.expand(2 * m0.expr - 3 * m1.expr))
    result = verify(family, "expert", extra=(injected,))
    assert result.holds is False
    assert "nullspace" in result.method
    assert result.details["relations_vanish"]
    labels = {label for label, _ in result.details["relations"][0]}
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


def test_book_renders_every_relation_found():
    """book/render_tables.py puts each returned combination and merge in the chapter's tables."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "book" / "render_tables.py"
    spec = importlib.util.spec_from_file_location("render_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    page = module.moe_identifiability()
    for kind in KINDS:
        for result in identifiability_report(kind).values():
            for tex in result.details["dependence_latex"]:
                assert tex.replace(" = 0", " &= 0") in page
            for tex in result.details["merged_latex"] + result.details["vanishing_latex"]:
                assert tex.removesuffix(" = 0") in page
    assert page.count(r"\begin{aligned}") == 4  # linear and polynomial, expert and gated sets
