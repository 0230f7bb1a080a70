"""Tests of theorylab.theory.exo: every derivation verifies, and verify() can fail."""

from __future__ import annotations

import pytest
import sympy as sp
import torch

from theorylab.kernels import exo as kx
from theorylab.theory import exo as tx
from theorylab.theory.steps import Chain, Step


@pytest.fixture(scope="module")
def checks():
    return {c.name: c for c in tx.verify()}


@pytest.mark.parametrize("name", list(tx.DERIVATIONS))
def test_each_derivation_verifies(checks, name):
    c = checks[name]
    assert c.holds, c
    assert c.method == "proven"          # every step proven by sympy: no premise, no numeric-only
    assert set(c.proved_by.values()) == {"proven"} and c.details["chain_complete"]
    assert c.n_points == tx.N_POINTS and c.max_abs_residual < 1e-20
    assert c.details.get("second_line", {"holds": True})["holds"]


def test_mode_seeking_numbers(checks):
    d = checks["dpo_stationary_point_differs"].details["second_line"]
    # the EXO (reverse-KL) root picks the higher-reward end, the DPO root moment-matches in between
    assert d["t_exo"] < d["t_dpo"] < 0 and d["J_exo"] > d["J_dpo"]
    assert d["t_representable"] == pytest.approx(0.6, abs=1e-12)
    # the proven sign changes bracket the numeric roots
    (a1, b1), (a2, b2) = d["brackets"]
    assert a1 < d["t_dpo"] < b1 and a2 < d["t_exo"] < b2 and (b1 < a2 or b2 < a1)


def test_dpo_root_is_moment_matching_against_kernels(checks):
    """The forward-KL root t_dpo makes E_{π_t} φ = E_{π*} φ, recomputed with the torch kernels."""
    d = checks["dpo_stationary_point_differs"].details["second_line"]
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
    bad = tx.Derivation("bad", "x**2 == x", [Chain(x**2, "==", x, (Step("x^2 = x", x**2, "==", x),))],
                        lambda rng: {x: sp.Float(rng.uniform(2, 3), 30)}, "x in U(2, 3)")
    c = bad.verify()
    assert not c.holds and c.method == "FAILED" and c.max_abs_residual > 1
