"""BEB derivations: every step verifies; broken steps are caught; numeric forms match sympy."""

import math
import random

import pytest
import sympy as sp

from theorylab.errors import ConfigError
from theorylab.theory import beb as T
from theorylab.theory.steps import Chain, Step, StepDerivation


@pytest.mark.parametrize("name", list(T.DERIVATIONS))
def test_derivation_verifies(name):
    chk = T.DERIVATIONS[name]().verify(seed=1)
    assert chk.holds, chk
    assert chk.max_abs_residual < 1e-20
    assert chk.details["chain_complete"]
    # every step is proven by sympy or a premise that carries its citation; none is numeric-only
    assert set(chk.proved_by.values()) <= {"proven", "premise"}
    assert set(chk.details["premises"]) == {k for k, v in chk.proved_by.items() if v == "premise"}
    assert all(len(c) > 20 for c in chk.details["premises"].values())


def test_verify_all_and_centre_limit():
    checks = T.verify()
    assert [c.name.split("(")[0] for c in checks] == list(T.DERIVATIONS)
    assert all(c.holds for c in checks)
    assert checks[-1].proved_by["centre/log(1/a) -> 1"] == "proven"
    assert checks[-1].details["counts"]["proven"] == sum(
        v == "proven" for v in checks[-1].proved_by.values())


@pytest.mark.parametrize("factor", [1, sp.Rational(1, 2)], ids=["lemma-without-2", "half"])
def test_wrong_lemma_constant_is_caught(factor):
    """The key lemma's last step with a too-small constant (1 or 1/2 instead of 2) fails."""
    good = T.key_lemma()
    steps = list(good.chains[1].steps)
    last = steps[-1]
    steps[-1] = Step(last.name, last.lhs, "<=", factor * T.ab / T.al * T.pp / T.pm)
    broken = StepDerivation("broken", "", (Chain(steps[0].lhs, "<=", steps[-1].rhs, tuple(steps)),),
                            lambda r: T._pt(r, {T.pm: 1.0, T.pp: 1.0, T.Bm: -1.0, T.Bp: 1.0,
                                                T.al: 0.9, T.ab: 0.1}), good.domain, good.subs)
    chk = broken.verify()
    assert not chk.holds and chk.proved_by[last.name] == "FAILED"


def test_wrong_identity_fails():
    """T1's identity at a length log 2/beta too short is refuted by the spot checks."""
    bad = Step("wrong T1", 2 * T.ab / T.al * sp.exp(-(T.C - sp.log(2))), "==", T.ab * T.eps / 2)
    d = StepDerivation("x", "", (Chain(bad.lhs, "==", bad.rhs, (bad,)),), T._pt, "", T.SUBS)
    chk = d.verify()
    assert not chk.holds and chk.proved_by["wrong T1"] == "FAILED"


def test_numeric_forms_match_sympy():
    rng = random.Random(0)
    for _ in range(20):
        a, b, e = rng.uniform(1e-6, 0.9), rng.uniform(0.05, 10), rng.uniform(1e-4, 1)
        bp, s, d = rng.uniform(0.1, 5), rng.uniform(0.1, 5), rng.uniform(0.01, 1)
        s0, nb = rng.randint(1, 50), rng.randint(1, 64)
        sub = {T.al: a, T.eps: e, T.beta: b}
        assert T.t1_length(a, b, e) == pytest.approx(float((T.C / T.beta).subs(sub)))
        assert T.t4_length(a, b, e, nb) == pytest.approx(T.t1_length(a, b, e) + math.log(nb) / b)
        assert T.t2_length(a, b, e, bp, s, s0, d) == pytest.approx(
            T.t1_length(a, b, e) + bp / b * s0 + s / b * math.sqrt(s0 / d) + 1)
        assert T.t3_length(a, b, e, bp, s, [s0], d) == pytest.approx(
            T.t2_length(a, b, e, bp, s, s0, d))
        assert T.t5_length(a, b, e, s, d) >= 2 * T.t1_length(a, b, e)
        L = rng.uniform(0, 30)
        # Eq. 7: the aligned bound is 1 - w at log-ratio beta L; the KL bound is log(1/w)
        one_minus_w = T.eq7_aligned_bound(a, b, L)
        assert T.eq7_kl_bound(a, b, L) == pytest.approx(-math.log1p(-one_minus_w), rel=1e-9)
        assert T.eq7_aligned_bound(a, b, T.sigmoid_centre(a, b)) == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs", [dict(alpha=0.0, beta=1.0, eps=0.1),
                                    dict(alpha=1.0, beta=1.0, eps=0.1),
                                    dict(alpha=0.1, beta=0.0, eps=0.1),
                                    dict(alpha=0.1, beta=1.0, eps=-1.0)],
                         ids=["alpha=0", "alpha=1", "beta=0", "eps<0"])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ConfigError, match="must be"):
        T.t1_length(**kwargs)
