"""theorylab.theory.steps: a derivation holds only when every step is proven or a cited premise
and the steps chain to the claim; the prover never proves a false statement."""

from __future__ import annotations

import random

import pytest
import sympy as sp

from theorylab.theory.steps import (
    Chain,
    Step,
    StepDerivation,
    chain_complete,
    prove_nonneg,
    prove_zero,
)

x = sp.Symbol("x", real=True)
p, q = sp.symbols("p q", positive=True)


def _sample(rng: random.Random) -> dict:
    return {x: rng.uniform(-3, 3), p: rng.uniform(0.01, 5), q: rng.uniform(0.01, 5)}


def _derive(*steps, lhs=None, rel="<=", rhs=None):
    lhs = steps[0].lhs if lhs is None else lhs
    rhs = steps[-1].rhs if rhs is None else rhs
    return StepDerivation("d", "", (Chain(lhs, rel, rhs, tuple(steps)),), _sample, "x real, p, q > 0")


# e^x >= 1 + x is true (checked at every point) but beyond sympy's assumptions system
TRUE_UNPROVABLE = Step("e^x >= 1 + x", 1 + x, "<=", sp.exp(x))


def test_numeric_only_step_does_not_hold():
    chk = _derive(Step("1 + x <= 1 + x + x^2", 1 + x, "<=", 1 + x + x**2),
                  Step("... <= e^x + x^2", 1 + x + x**2, "<=", sp.exp(x) + x**2)).verify()
    assert chk.proved_by == {"1 + x <= 1 + x + x^2": "proven", "... <= e^x + x^2": "numeric"}
    assert chk.details["counts"] == {"proven": 1, "numeric": 1, "premise": 0, "FAILED": 0}
    assert chk.details["chain_complete"] and not chk.holds and chk.method == "FAILED"


def test_same_step_marked_as_premise_holds():
    cited = Step(TRUE_UNPROVABLE.name, TRUE_UNPROVABLE.lhs, "<=", TRUE_UNPROVABLE.rhs,
                 premise="exp(x) >= 1 + x (convexity of exp; textbook)")
    chk = _derive(cited).verify()
    assert chk.holds and chk.proved_by == {cited.name: "premise"}
    assert chk.details["premises"] == {cited.name: cited.premise}
    assert not _derive(TRUE_UNPROVABLE).verify().holds


def test_broken_chain_does_not_hold():
    a = Step("p <= p + q", p, "<=", p + q)
    b = Step("p + 2q <= p + 3q", p + 2 * q, "<=", p + 3 * q)   # does not start where a ends
    chk = _derive(a, b).verify()
    assert set(chk.proved_by.values()) == {"proven"}            # each step alone is fine
    assert not chk.details["chain_complete"] and not chk.holds
    assert "does not start where" in chk.details["chain_problems"][0]


@pytest.mark.parametrize("rel, rhs, why", [
    ("<=", p + 2 * q, "does not end at the claim's rhs"),      # conclusion is not the last rhs
    ("<", p + q, "a strict claim without a strict step"),
    (">=", p + q, "steps point in different directions"),
    ("==", p + q, "an inequality step in an identity"),
], ids=["wrong-end", "strict", "direction", "identity"])
def test_chain_must_imply_the_claim(rel, rhs, why):
    ok, msg = chain_complete(Chain(p, rel, rhs, (Step("p <= p + q", p, "<=", p + q),)))
    assert not ok and why in msg


def test_counterexample_fails_the_step():
    chk = _derive(Step("x^2 >= x (false for x in (0, 1))", x, "<=", x**2)).verify()
    assert chk.proved_by == {"x^2 >= x (false for x in (0, 1))": "FAILED"} and not chk.holds


@pytest.mark.parametrize("expr", [p - 1, sp.log(p), 2 - sp.Abs(x), sp.exp(x) - 2, p * sp.log(q),
                                  sp.Abs(x) - 1, p - q],
                         ids=["p-1", "log p", "2-|x|", "e^x-2", "p log q", "|x|-1", "p-q"])
def test_prover_never_proves_a_false_inequality(expr):
    assert not prove_nonneg(expr)


@pytest.mark.parametrize("expr", [sp.log(p * q) - sp.log(p), sp.exp(x) - 1 - x, p / q - 1,
                                  sp.Abs(x) - x], ids=["log", "exp", "ratio", "abs"])
def test_prover_never_proves_a_false_identity(expr):
    assert not prove_zero(expr)


@pytest.mark.parametrize("expr, strict", [
    (sp.Abs(x) - x, False), (p * sp.log(1 + q / p), True), (sp.log(1 + p), True),
    ((p - q) ** 2, False), (p / (p + q) - p**2 / (p + q) ** 2, True)],
    ids=["|x|>=x", "p log(1+q/p)", "log(1+p)", "square", "rational"])
def test_prover_proves_true_inequalities(expr, strict):
    assert prove_nonneg(expr, strict=strict)
