"""Tests of theorylab.kernels.exo: slow twins, TRL 1.16.0 transcriptions, autograd / finite differences,
hypothesis properties and one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.errors import TheorylabError
from theorylab.kernels import exo as kx

DT = torch.float64


# ----------------------------------------------------------------------------- slow twins

def _slow_exo_loss(lr, r, bp, br):
    """KL(p_f ‖ p_r) from the formula, one prompt, plain Python floats."""
    f = [bp * v for v in lr]
    zf = math.log(sum(math.exp(v - max(f)) for v in f)) + max(f)
    s = [v / br for v in r]
    zr = math.log(sum(math.exp(v - max(s)) for v in s)) + max(s)
    return sum(math.exp(fi - zf) * ((fi - zf) - (si - zr)) for fi, si in zip(f, s, strict=True))


def _slow_dpo_ksample(lr, r, bp, br):
    f = [bp * v for v in lr]
    zf = math.log(sum(math.exp(v - max(f)) for v in f)) + max(f)
    s = [v / br for v in r]
    zr = math.log(sum(math.exp(v - max(s)) for v in s)) + max(s)
    return -sum(math.exp(si - zr) * (fi - zf) for fi, si in zip(f, s, strict=True))


def _slow_sequence_logprobs(logits, tokens, mask):
    out = []
    for b in range(logits.shape[0]):
        tot = 0.0
        for t in range(1, logits.shape[1]):
            if mask[b, t]:
                row = logits[b, t - 1].tolist()
                m = max(row)
                lse = m + math.log(sum(math.exp(v - m) for v in row))
                tot += row[int(tokens[b, t])] - lse
        out.append(tot)
    return torch.tensor(out, dtype=DT)


# Transcriptions of TRL 1.16.0's DPOTrainer losses (trl/trainer/dpo_trainer.py, reverse-KL scores:
# delta_score = chosen_logratios - rejected_logratios = Δ). TRL is not a dependency.

def _trl_exo_pair(delta_score, beta, label_smoothing):
    """loss_type == "exo_pair" (TRL makes ε a default-dtype tensor: float32, rounded to ~6e-8)."""
    epsilon = torch.tensor(label_smoothing)
    qw, log_qw = torch.sigmoid(beta * delta_score), F.logsigmoid(beta * delta_score)
    ql, log_ql = torch.sigmoid(-beta * delta_score), F.logsigmoid(-beta * delta_score)
    return qw * (log_qw - torch.log1p(-epsilon)) + ql * (log_ql - torch.log(epsilon))


def _trl_sigmoid(delta_score, beta):
    """loss_type == "sigmoid": plain DPO; TRL 1.16.0 ignores label_smoothing here."""
    return -F.logsigmoid(beta * delta_score)


def _trl_aot_unpaired(chosen_logratios, rejected_logratios, beta, label_smoothing):
    """loss_type == "aot_unpaired" on one batch (sorted along the batch): Mitchell's cDPO at batch size 1."""
    chosen_sorted, _ = torch.sort(chosen_logratios, dim=0)
    rejected_sorted, _ = torch.sort(rejected_logratios, dim=0)
    delta = chosen_sorted - rejected_sorted
    return (-F.logsigmoid(beta * delta) * (1 - label_smoothing)
            - F.logsigmoid(-beta * delta) * label_smoothing)


def _rand(shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=g, dtype=DT)


# ----------------------------------------------------------------------------- losses vs twins

@pytest.mark.parametrize("K", [2, 3, 7, 64])
@pytest.mark.parametrize("bp,br", [(1.0, 1.0), (0.7, 0.5), (0.1, 2.0)])
def test_ksample_losses_match_slow_twins(K, bp, br):
    lr, r = _rand((5, K), 1, 2.0), _rand((5, K), 2)
    fast_e = kx.exo_loss(lr, r, bp, br)
    fast_d = kx.dpo_ksample_loss(lr, r, bp, br)
    for b in range(5):
        assert fast_e[b].item() == pytest.approx(_slow_exo_loss(lr[b].tolist(), r[b].tolist(), bp, br),
                                                 rel=1e-10, abs=1e-12)
        assert fast_d[b].item() == pytest.approx(_slow_dpo_ksample(lr[b].tolist(), r[b].tolist(), bp, br),
                                                 rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("eps", [1e-3, 0.1, 0.49])
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_exo_pref_and_plain_dpo_match_trl_exo_pair_and_sigmoid(beta, eps):
    w, l = _rand((50,), 3, 5.0), _rand((50,), 4, 5.0)
    torch.testing.assert_close(kx.exo_pref_loss(w, l, beta, eps), _trl_exo_pair(w - l, beta, eps),
                               rtol=1e-7, atol=1e-7)   # TRL's float32 ε
    torch.testing.assert_close(kx.dpo_loss(w, l, beta), _trl_sigmoid(w - l, beta),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("eps", [1e-3, 0.1, 0.49])
@pytest.mark.parametrize("beta", [0.1, 2.0, 10.0])
def test_conservative_dpo_is_trl_aot_unpaired_at_batch_size_one(beta, eps):
    """cDPO (ε > 0) equals TRL 1.16.0's aot_unpaired per pair bit for bit, over |Δ| up to 1e4."""
    w = torch.cat([_rand((40,), 7, 5.0), torch.tensor([5e3, -5e3, 0.0], dtype=DT)])
    l = torch.cat([_rand((40,), 8, 5.0), torch.tensor([-5e3, 5e3, 0.0], dtype=DT)])
    ours = kx.dpo_loss(w, l, beta, eps)
    trl = torch.cat([_trl_aot_unpaired(w[i:i + 1], l[i:i + 1], beta, eps) for i in range(len(w))])
    assert torch.equal(ours, trl)


def test_conservative_dpo_is_not_trl_sigmoid():
    """TRL 1.16.0's sigmoid ignores label_smoothing: at β = 10, ε = 0.49, Δ = -1e4 it gives 1e5,
    cDPO (1 - ε)·1e5 = 5.1e4."""
    w, l = torch.tensor([-1e4], dtype=DT), torch.tensor([0.0], dtype=DT)
    assert _trl_sigmoid(w - l, 10.0).item() == pytest.approx(1e5, rel=1e-12)
    assert kx.dpo_loss(w, l, 10.0, 0.49).item() == pytest.approx(0.51e5, rel=1e-12)


@pytest.mark.parametrize("eps", [1e-3, 0.2])
def test_pref_modes_are_the_k2_soft_target_losses(eps):
    """EXO-pref = KL(p_f ‖ [1-ε, ε]) and DPO = cross-entropy with one-hot [1, 0] at K = 2."""
    w, l, bp = _rand((30,), 5, 3.0), _rand((30,), 6, 3.0), 0.5
    lr = torch.stack([w, l], -1)
    tgt = torch.tensor([1 - eps, eps], dtype=DT).expand(30, 2)
    torch.testing.assert_close(kx.exo_pref_loss(w, l, bp, eps), kx.exo_loss_soft(lr, tgt, bp))
    one_hot = torch.tensor([1.0, 0.0], dtype=DT).expand(30, 2)
    torch.testing.assert_close(kx.dpo_loss(w, l, bp), kx.dpo_loss_soft(lr, one_hot, bp))
    # smoothed DPO = cross-entropy with the smoothed target
    torch.testing.assert_close(kx.dpo_loss(w, l, bp, eps), kx.dpo_loss_soft(lr, tgt, bp))


def test_reward_mode_with_rewards_at_pm_infinity_scale_tends_to_pref_mode():
    """p_r = softmax(r/β_r) with r = (ρ, 0) equals [1-ε, ε] for ε = σ(-ρ/β_r)."""
    w, l, eps, br = _rand((10,), 7), _rand((10,), 8), 0.05, 0.3
    rho = br * math.log((1 - eps) / eps)
    r = torch.tensor([rho, 0.0], dtype=DT).expand(10, 2)
    torch.testing.assert_close(kx.exo_loss(torch.stack([w, l], -1), r, 0.8, br),
                               kx.exo_pref_loss(w, l, 0.8, eps))


@pytest.mark.parametrize("seed", [0, 1])
def test_sequence_logprobs_matches_slow_twin_and_ignores_padding(seed):
    B, T, V = 4, 7, 11
    logits = _rand((B, T, V), seed, 3.0)
    g = torch.Generator().manual_seed(seed + 10)
    tokens = torch.randint(0, V, (B, T), generator=g)
    lengths = torch.tensor([7, 5, 2, 1])
    mask = torch.arange(T)[None, :] < lengths[:, None]
    got = kx.sequence_logprobs(logits, tokens, mask)
    torch.testing.assert_close(got, _slow_sequence_logprobs(logits, tokens, mask), rtol=1e-10, atol=1e-10)
    assert got[3].item() == 0.0                                # a lone first token is never scored
    # padding content and the logits after the last real token do not matter
    tokens2, logits2 = tokens.clone(), logits.clone()
    tokens2[~mask] = 0
    logits2[1, 4:] = 1e3
    torch.testing.assert_close(kx.sequence_logprobs(logits2, tokens2, mask), got)
    # gradients reach only the scored positions
    lg = logits.clone().requires_grad_(True)
    kx.sequence_logprobs(lg, tokens, mask).sum().backward()
    assert torch.all(lg.grad[1, 4:] == 0) and torch.all(lg.grad[0, -1] == 0)


# ----------------------------------------------------------------------------- stability

@pytest.mark.parametrize("big", [1e4, -1e4])
def test_losses_are_stable_for_huge_log_ratios(big):
    eps, b = 1e-3, 1.0
    w, l = torch.tensor([big], dtype=DT), torch.tensor([0.0], dtype=DT)
    e = kx.exo_pref_loss(w, l, b, eps).item()
    d = kx.dpo_loss(w, l, b).item()
    # limits: q → 1 gives -log(1-ε) / 0; q → 0 gives -log ε / |βΔ|
    assert e == pytest.approx(-math.log1p(-eps) if big > 0 else -math.log(eps), rel=1e-12)
    assert d == pytest.approx(0.0 if big > 0 else abs(big), abs=1e-12, rel=1e-12)
    lr = torch.tensor([[big, 0.0, -big, 3.0]], dtype=DT, requires_grad=True)
    r = torch.tensor([[1.0, 2.0, 0.5, -1.0]], dtype=DT)
    for fn in (kx.exo_loss, kx.dpo_ksample_loss):
        val = fn(lr, r, 0.7, 0.5)
        (gr,) = torch.autograd.grad(val.sum(), lr)
        assert torch.isfinite(val).all() and torch.isfinite(gr).all()
    # float32 too
    lr32 = lr.detach().float()
    assert torch.isfinite(kx.exo_loss(lr32, r.float(), 0.7, 0.5)).all()
    # the exo value: all mass on the largest f, KL = -log p_r(argmax f)
    top = 0 if big > 0 else 2
    want = -torch.log_softmax(r / 0.5, -1)[0, top].item()
    assert kx.exo_loss(lr.detach(), r, 0.7, 0.5).item() == pytest.approx(want, rel=1e-12)


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_form_f_gradients_match_autograd(seed):
    f = _rand((3, 6), seed, 2.0).requires_grad_(True)
    log_q = torch.log_softmax(_rand((3, 6), seed + 5), -1)
    (ga,) = torch.autograd.grad(kx._reverse_kl_softmax(f, log_q).sum(), f)
    torch.testing.assert_close(kx.reverse_kl_grad_f(f.detach(), log_q), ga)
    (gb,) = torch.autograd.grad(kx._cross_entropy_softmax(f, log_q).sum(), f)
    torch.testing.assert_close(kx.forward_kl_grad_f(f.detach(), log_q), gb)


@pytest.mark.parametrize("name", ["exo", "dpo_k", "exo_soft", "dpo_soft", "exo_pref", "dpo"])
def test_losses_pass_gradcheck(name):
    """Autograd of every loss against central finite differences (torch.autograd.gradcheck)."""
    lr = _rand((3, 4), 21, 2.0).requires_grad_(True)
    r = _rand((3, 4), 22)
    tgt = torch.softmax(_rand((3, 4), 23), -1)
    fns = {
        "exo": lambda x: kx.exo_loss(x, r, 0.7, 0.5),
        "dpo_k": lambda x: kx.dpo_ksample_loss(x, r, 0.7, 0.5),
        "exo_soft": lambda x: kx.exo_loss_soft(x, tgt, 0.7),
        "dpo_soft": lambda x: kx.dpo_loss_soft(x, tgt, 0.7),
        "exo_pref": lambda x: kx.exo_pref_loss(x[:, 0], x[:, 1], 0.7, 0.01),
        "dpo": lambda x: kx.dpo_loss(x[:, 0], x[:, 1], 0.7, 0.1),
    }
    assert torch.autograd.gradcheck(fns[name], (lr,), eps=1e-6, atol=1e-7)


def test_sequence_logprobs_gradcheck():
    logits = _rand((2, 5, 4), 30).requires_grad_(True)
    tokens = torch.tensor([[0, 1, 2, 3, 0], [0, 3, 3, 1, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert torch.autograd.gradcheck(lambda x: kx.sequence_logprobs(x, tokens, mask), (logits,),
                                    eps=1e-6, atol=1e-7)


def _problem(seed, n=12):
    logp_sft = torch.log_softmax(_rand((n,), seed, 1.0), -1)
    r = _rand((n,), seed + 100)
    theta = logp_sft + _rand((n,), seed + 200, 0.8)
    return theta, logp_sft, r


def _fd_grad(fn, theta, h=1e-6):
    g = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = h
        g[i] = (fn(theta + e) - fn(theta - e)) / (2 * h)
    return g


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bp,br", [(1.0, 1.0), (0.7, 0.5), (0.3, 2.0)])
def test_exact_tabular_gradients_autograd_and_finite_differences(seed, bp, br):
    theta, lps, r = _problem(seed)
    th = theta.clone().requires_grad_(True)
    for loss, grad in [(kx.exo_limit_loss, kx.exo_limit_grad), (kx.dpo_limit_loss, kx.dpo_limit_grad)]:
        (ga,) = torch.autograd.grad(loss(th, lps, r, bp, br), th)
        gc = grad(theta, lps, r, bp, br)
        torch.testing.assert_close(gc, ga, rtol=1e-9, atol=1e-12)
        gfd = _fd_grad(lambda t, loss=loss: loss(t, lps, r, bp, br), theta)
        torch.testing.assert_close(gc, gfd, rtol=1e-5, atol=1e-8)
    # grad_J
    (gj,) = torch.autograd.grad(kx.objective_J(torch.log_softmax(th, -1), lps, r, br), th)
    torch.testing.assert_close(kx.grad_J(theta, lps, r, br), gj, rtol=1e-9, atol=1e-12)
    # the EXO limit gradient is -(1/β_r) ∇_θ J_{β_r}(π_θ^{β_π})  (gradient equivalence)
    (gt,) = torch.autograd.grad(kx.objective_J(kx.tilted_policy(th, lps, bp), lps, r, br), th)
    torch.testing.assert_close(kx.exo_limit_grad(theta, lps, r, bp, br), -gt / br, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind,loss", [("exo", kx.exo_loss), ("dpo", kx.dpo_ksample_loss)])
@pytest.mark.parametrize("K", [2, 5])
def test_ksample_grad_tabular_matches_autograd(kind, loss, K):
    theta, lps, r = _problem(3, n=8)
    g = torch.Generator().manual_seed(K)
    idx = torch.multinomial(lps.exp(), 40 * K, replacement=True, generator=g).view(40, K)
    th = theta.clone().requires_grad_(True)
    lr = torch.log_softmax(th, -1)[idx] - lps[idx]
    (ga,) = torch.autograd.grad(loss(lr, r[idx], 0.7, 0.5).mean(), th)
    torch.testing.assert_close(kx.ksample_grad_tabular(theta, lps, r, idx, 0.7, 0.5, kind), ga,
                               rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- optimum

@pytest.mark.parametrize("bp,br", [(1.0, 1.0), (0.7, 0.5), (0.25, 3.0)])
def test_analytic_optimum_zeroes_losses_and_gradients(bp, br):
    _, lps, r = _problem(7, n=20)
    th = kx.analytic_optimum(lps, r, br, bp) + 1.234               # logits: any shift
    for loss, grad in [(kx.exo_limit_loss, kx.exo_limit_grad), (kx.dpo_limit_loss, kx.dpo_limit_grad)]:
        assert abs(loss(th, lps, r, bp, br).item()) < 1e-12
        assert grad(th, lps, r, bp, br).abs().max().item() < 1e-12
    # π^{β_π} at the optimum is π*_{β_r}, the maximiser of J_{β_r}
    torch.testing.assert_close(kx.tilted_policy(th, lps, bp), kx.optimal_policy(lps, r, br))
    assert kx.grad_J(kx.optimal_policy(lps, r, br), lps, r, br).abs().max().item() < 1e-12
    # on samples: logratios ∝ r gives zero EXO loss for every K
    idx = torch.arange(20).view(4, 5)
    lr = (torch.log_softmax(th, -1) - lps)[idx]
    assert kx.exo_loss(lr, r[idx], bp, br).abs().max().item() < 1e-12


# ----------------------------------------------------------------------------- properties

floats = st.floats(min_value=-30, max_value=30, allow_nan=False, allow_infinity=False)
temps = st.floats(min_value=0.05, max_value=5.0)


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 9).flatmap(lambda k: st.tuples(st.lists(floats, min_size=k, max_size=k),
                                                    st.lists(floats, min_size=k, max_size=k))),
       temps, temps, floats)
def test_properties_nonneg_shift_invariance(data, bp, br, c):
    lr, r = (torch.tensor(v, dtype=DT)[None] for v in data)
    e = kx.exo_loss(lr, r, bp, br)
    d = kx.dpo_ksample_loss(lr, r, bp, br)
    assert e.item() >= -1e-12
    h = -(torch.softmax(r / br, -1) * torch.log_softmax(r / br, -1)).sum().item()
    assert d.item() >= h - 1e-9 * max(1.0, abs(h))          # cross-entropy ≥ entropy ≥ 0
    # invariance to adding a constant to r, and to the log-ratios (a per-prompt baseline)
    torch.testing.assert_close(kx.exo_loss(lr, r + c, bp, br), e, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(kx.exo_loss(lr + c, r, bp, br), e, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(kx.dpo_ksample_loss(lr, r + c, bp, br), d, rtol=1e-9, atol=1e-9)
    # zero at the optimum f = r/β_r (+ const)
    assert kx.exo_loss(r / (br * bp) + c, r, bp, br).item() == pytest.approx(0.0, abs=1e-9)


@settings(deadline=None, max_examples=60)
@given(floats, floats, st.floats(min_value=0.01, max_value=10.0), st.floats(min_value=1e-4, max_value=0.499))
def test_pref_loss_properties(w, l, beta, eps):
    lw, ll = torch.tensor([w], dtype=DT), torch.tensor([l], dtype=DT)
    e = kx.exo_pref_loss(lw, ll, beta, eps).item()
    assert e >= -1e-12
    q = 1 / (1 + math.exp(-beta * (w - l)))
    qq = np.clip(np.array([q, 1 - q]), 1e-300, 1)
    direct = float(np.sum(np.where(np.array([q, 1 - q]) > 0, qq * np.log(qq / np.array([1 - eps, eps])), 0)))
    assert e == pytest.approx(direct, rel=1e-7, abs=1e-9)
    # zero exactly where q = 1-ε
    star = math.log((1 - eps) / eps) / beta
    assert kx.exo_pref_loss(torch.tensor([star], dtype=DT), torch.zeros(1, dtype=DT), beta, eps).item() \
        == pytest.approx(0.0, abs=1e-10)


# ----------------------------------------------------------------------------- errors

Z2 = torch.zeros(3, 2, dtype=DT)


@pytest.mark.parametrize("call,match", [
    (lambda: kx.exo_loss(torch.zeros(3, 1, dtype=DT), torch.zeros(3, 1, dtype=DT), 1.0, 1.0), "'K'.*>= 2"),
    (lambda: kx.dpo_ksample_loss(Z2, torch.zeros(3, 3, dtype=DT), 1.0, 1.0), "'rewards' must have the shape"),
    (lambda: kx.exo_loss(Z2, Z2, 0.0, 1.0), "'beta_pi' must be a finite real > 0. Got 0.0"),
    (lambda: kx.exo_loss(Z2, Z2, 1.0, -2.0), "'beta_r' must be a finite real > 0"),
    (lambda: kx.exo_pref_loss(Z2[:, 0], Z2[:, 1], 1.0, 0.0), r"'eps'.*\(0, 0.5\). Got 0.0"),
    (lambda: kx.exo_pref_loss(Z2[:, 0], Z2[:, 1], 1.0, 0.5), r"'eps'.*\(0, 0.5\)"),
    (lambda: kx.exo_pref_loss(Z2[:, 0], Z2[:2, 1], 1.0, 0.1), "'logratio_l' must have the shape"),
    (lambda: kx.dpo_loss(Z2[:, 0], Z2[:, 1], -1.0), "'beta' must be"),
    (lambda: kx.dpo_loss(Z2[:, 0], Z2[:, 1], 1.0, 0.7), "'label_smoothing'"),
    (lambda: kx.exo_loss(torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 2), 1.0, 1.0), "finite"),
    (lambda: kx.exo_loss_soft(Z2, torch.full((3, 2), 0.7, dtype=DT), 1.0), "'targets' must be probabilities"),
    (lambda: kx.sequence_logprobs(torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.long),
                                  torch.ones(2, 4)), "'mask' must have shape"),
    (lambda: kx.sequence_logprobs(torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long),
                                  torch.ones(2, 5)), "'tokens' must have shape"),
    (lambda: kx.sequence_logprobs(torch.zeros(2, 5, 3), torch.full((2, 5), 3, dtype=torch.long),
                                  torch.ones(2, 5)), "'tokens' must lie in"),
    (lambda: kx.sequence_logprobs(torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.long),
                                  torch.full((2, 5), 0.5)), "'mask' must be boolean"),
    (lambda: kx.ksample_grad_tabular(torch.zeros(4), torch.zeros(4), torch.zeros(4),
                                     torch.zeros(3, 1, dtype=torch.long), 1.0, 1.0), "'K'"),
], ids=["K<2", "shape", "beta_pi=0", "beta_r<0", "eps=0", "eps=0.5", "pair-shape", "dpo-beta",
        "smoothing", "nan", "targets", "mask-shape", "token-shape", "token-range", "mask-values",
        "grad-K<2"])
def test_errors_are_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as ei:
        call()
    assert "\n" not in str(ei.value)
    assert isinstance(ei.value, TheorylabError)  # so the CLI prints 'error: ...' and exits 2
