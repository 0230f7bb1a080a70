"""Tests of theorylab.theory.exo: every derivation verifies, and verify() can fail."""

from __future__ import annotations

import random

import pytest
import sympy as sp
import torch

from theorylab.kernels import exo as kx
from theorylab.theory import exo as tx


@pytest.fixture(scope="module")
def checks():
    return {c.name: c for c in tx.verify()}


@pytest.mark.parametrize("name", list(tx.DERIVATIONS))
def test_each_derivation_verifies(checks, name):
    c = checks[name]
    assert c.holds, c
    assert c.method in ("symbolic", "numeric")
    assert c.n_points == tx.N_POINTS and c.max_abs_residual < 1e-20


def test_symbolic_steps_that_should_close_do(checks):
    assert checks["softmax_policy_gradient"].method == "symbolic"
    assert checks["exo_optimum_stationary"].method == "symbolic"


def test_mode_seeking_numbers(checks):
    d = checks["dpo_stationary_point_differs"].details
    # the EXO (reverse-KL) root picks the higher-reward end, the DPO root moment-matches in between
    assert d["t_exo"] < d["t_dpo"] < 0 and d["J_exo"] > d["J_dpo"]
    assert d["t_representable"] == pytest.approx([0.6, 0.6], abs=1e-12)


def test_dpo_root_is_moment_matching_against_kernels(checks):
    """The forward-KL root t_dpo makes E_{π_t} φ = E_{π*} φ, recomputed with the torch kernels."""
    d = checks["dpo_stationary_point_differs"].details
    phi = torch.tensor([-2.0, -1, 0, 1, 2], dtype=torch.float64)
    r = torch.tensor([2.0, 0, 0, 0, 1.5], dtype=torch.float64)
    lps = torch.full((5,), -torch.log(torch.tensor(5.0, dtype=torch.float64)).item(), dtype=torch.float64)
    pt = torch.softmax(d["t_dpo"] * phi, -1)
    ps = kx.optimal_policy(lps, r, 0.5).exp()
    assert (pt * phi).sum().item() == pytest.approx((ps * phi).sum().item(), abs=1e-12)
    # and the EXO root is a stationary point of the reverse KL in t (finite differences)
    f = lambda t: kx.kl(torch.log_softmax(t * phi, -1), torch.log(ps)).item()  # noqa: E731
    h = 1e-6
    assert abs((f(d["t_exo"] + h) - f(d["t_exo"] - h)) / (2 * h)) < 1e-7


def test_verify_rejects_a_false_identity():
    x = sp.Symbol("x", real=True)
    bad = tx.Derivation("bad", "x**2 == x", [x ** 2], [x],
                        lambda rng: {x: sp.Float(rng.uniform(2, 3), 30)}, "x in U(2, 3)")
    c = bad.verify()
    assert not c.holds and c.method == "FAILED" and c.max_abs_residual > 1


def test_verify_numeric_step_catches_a_perturbed_rhs():
    d = tx.pref_loss_is_kl()
    wrong = tx.Derivation(d.name, d.statement, d.lhs, [d.rhs[0] * 1.0001, d.rhs[1]], d.sample, d.domain,
                          simplify_symbolic=False)
    assert not wrong.verify().holds


def test_samplers_are_deterministic():
    d = tx.exo_limit_identity()
    assert d.sample(random.Random(3)) == d.sample(random.Random(3))
