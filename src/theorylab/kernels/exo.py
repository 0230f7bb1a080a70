r"""EXO and DPO losses and exact tabular quantities (torch).

Ji et al., "Towards Efficient Exact Optimization of Language Model Alignment" (EXO, arXiv
2402.00856, ICML 2024). For a prompt :math:`x` and :math:`K` completions :math:`y_1..y_K`:

.. math::

    f_\theta(x, y) = \beta_\pi \log\frac{\pi_\theta(y|x)}{\pi_{sft}(y|x)},\quad
    p_f(i) = \mathrm{softmax}_i f_\theta(x, y_i),\quad
    p_r(i) = \mathrm{softmax}_i r(x, y_i)/\beta_r,

    L_{exo} = \mathrm{KL}(p_f \,\|\, p_r)\ \text{(reverse KL)},\qquad
    L_{dpo} = -\textstyle\sum_i p_r(i)\log p_f(i)\ \text{(forward KL + const)}.

Preference mode (:math:`K = 2`, :math:`y_w \succ y_l`): the targets are :math:`[1-\varepsilon,
\varepsilon]`, so with :math:`q = \sigma(\beta_\pi\Delta)`,
:math:`\Delta = \log\frac{\pi_\theta(y_w)}{\pi_{sft}(y_w)} - \log\frac{\pi_\theta(y_l)}{\pi_{sft}(y_l)}`,
:math:`L = q\log\frac{q}{1-\varepsilon} + (1-q)\log\frac{1-q}{\varepsilon}` (Eq. 16 as cited by TRL's
``exo_pair``); DPO is :math:`-(1-\varepsilon)\log\sigma(\beta\Delta) - \varepsilon\log\sigma(-\beta\Delta)`
(:math:`\varepsilon = 0`: the DPO paper's Eq. 7, TRL's ``sigmoid``; :math:`\varepsilon > 0`: Mitchell's
conservative DPO, cDPO -- see :func:`dpo_loss`).

Tabular (categorical) policies over :math:`N` actions are given by log-probability vectors on the
last axis. With :math:`\pi_\theta = \mathrm{softmax}(\theta)`:

.. math::

    \pi^{\beta_\pi}_\theta \propto \pi_\theta^{\beta_\pi}\pi_{sft}^{1-\beta_\pi},\qquad
    \pi^*_{\beta} \propto \pi_{sft}\, e^{r/\beta},\qquad
    J_\beta(\pi) = \mathbb{E}_\pi r - \beta\,\mathrm{KL}(\pi\|\pi_{sft}),

and as :math:`K\to\infty`, :math:`L_{exo}\to\mathrm{KL}(\pi^{\beta_\pi}_\theta\|\pi^*_{\beta_r})
= -J_{\beta_r}(\pi^{\beta_\pi}_\theta)/\beta_r + \log Z`, :math:`L_{dpo}\to
\mathrm{KL}(\pi^*_{\beta_r}\|\pi^{\beta_\pi}_\theta) + \text{const}`; both vanish at
:math:`\pi_\theta \propto \pi_{sft} e^{r/(\beta_r\beta_\pi)}`.

Every function works on float64 or float32 tensors and is stable for log-ratios of :math:`\pm 10^4`
(only log-softmax / log-sigmoid are used, never a raw ``exp`` of a log-ratio). Public functions
validate their arguments and raise a one-line :class:`~theorylab.errors.InputError` (tensors) or
:class:`~theorylab.errors.ConfigError` (β, ε), both ``ValueError`` subclasses, so that the CLI
reports them as ``error: ...`` like every other bad input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from theorylab.errors import ConfigError, InputError

__all__ = [
    # losses on samples
    "sequence_logprobs", "exo_loss", "exo_loss_soft", "exo_pref_loss",
    "dpo_loss", "dpo_ksample_loss", "dpo_loss_soft",
    # per-sample gradients w.r.t. the scores f (closed form)
    "reverse_kl_grad_f", "forward_kl_grad_f",
    # exact tabular quantities
    "kl", "tilted_policy", "optimal_policy", "analytic_optimum", "objective_J", "grad_J",
    "exo_limit_loss", "exo_limit_grad", "dpo_limit_loss", "dpo_limit_grad",
    "ksample_grad_tabular",
]


# --------------------------------------------------------------------------- validation

def _check_pos(name: str, value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value <= 0:
        raise ConfigError(f"'{name}' must be a finite real > 0. Got {value!r}.")
    return float(value)


def _check_eps(value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0.0 < value < 0.5):
        raise ConfigError(f"'eps' (label smoothing) must be a real in (0, 0.5). Got {value!r}.")
    return float(value)


def _check_tensor(name: str, t, ndim: int | None = None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise InputError(f"'{name}' must be a torch.Tensor. Got {type(t).__name__}.")
    if ndim is not None and t.ndim != ndim:
        raise InputError(f"'{name}' must have {ndim} dims. Got shape {tuple(t.shape)}.")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise InputError(f"'{name}' must be finite. Got a non-finite entry.")
    return t


def _check_ksample(logratios, other, other_name: str) -> None:
    _check_tensor("logratios", logratios)
    _check_tensor(other_name, other)
    if logratios.ndim < 1:
        raise InputError(f"'logratios' must have shape (..., K). Got {tuple(logratios.shape)}.")
    if logratios.shape != other.shape:
        raise InputError(f"'{other_name}' must have the shape of 'logratios' "
                         f"{tuple(logratios.shape)}. Got {tuple(other.shape)}.")
    if logratios.shape[-1] < 2:
        raise InputError(f"'K' (samples per prompt, last dim) must be an int >= 2. "
                         f"Got {logratios.shape[-1]}.")


def _check_pair(w, l) -> None:
    _check_tensor("logratio_w", w)
    _check_tensor("logratio_l", l)
    if w.shape != l.shape:
        raise InputError(f"'logratio_l' must have the shape of 'logratio_w' {tuple(w.shape)}. "
                         f"Got {tuple(l.shape)}.")


# --------------------------------------------------------------------------- sequences

def sequence_logprobs(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Summed log-probabilities of a batch of sequences under an autoregressive model.

    .. math:: \log\pi(y) = \sum_{t=1}^{T-1} m_t \log \mathrm{softmax}(\ell_{t-1})[y_t]

    Parameters
    ----------
    logits : (B, T, V) float — ``logits[:, t]`` predicts ``tokens[:, t + 1]``.
    tokens : (B, T) long.
    mask : (B, T) bool or {0, 1} — 1 where ``tokens[:, t]`` is a real token to score; column 0
        (the first token, never predicted) is ignored.

    Returns
    -------
    (B,) tensor of summed log-probs (differentiable w.r.t. ``logits``).
    """
    _check_tensor("logits", logits, 3)
    _check_tensor("tokens", tokens, 2)
    _check_tensor("mask", mask, 2)
    B, T, V = logits.shape
    if tokens.shape != (B, T):
        raise InputError(f"'tokens' must have shape {(B, T)} to match 'logits'. Got {tuple(tokens.shape)}.")
    if mask.shape != (B, T):
        raise InputError(f"'mask' must have shape {(B, T)} to match 'tokens'. Got {tuple(mask.shape)}.")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise InputError(f"'tokens' must be an integer tensor. Got dtype {tokens.dtype}.")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
        raise InputError(f"'tokens' must lie in [0, {V - 1}] (vocab size {V}). "
                         f"Got range [{int(tokens.min())}, {int(tokens.max())}].")
    m = mask.to(logits.dtype)
    if not bool(((m == 0) | (m == 1)).all()):
        raise InputError("'mask' must be boolean or 0/1.")
    logp = torch.log_softmax(logits[:, :-1], dim=-1)                      # (B, T-1, V)
    tok = torch.gather(logp, -1, tokens[:, 1:].long().unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    return (tok * m[:, 1:]).sum(-1)


# --------------------------------------------------------------------------- K-sample losses

def _reverse_kl_softmax(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(f) ‖ q) over the last dim; q given by log-probs (targets may contain 0)."""
    log_p = torch.log_softmax(f, dim=-1)
    p = log_p.exp()
    # where p == 0 the term is 0 whatever log_q is (incl. -inf targets)
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return (p * diff).sum(-1)


def _cross_entropy_softmax(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """−Σ q log softmax(f) over the last dim."""
    log_p = torch.log_softmax(f, dim=-1)
    q = log_q.exp()
    return -(torch.where(q > 0, q * log_p, torch.zeros_like(log_p))).sum(-1)


def exo_loss(logratios: torch.Tensor, rewards: torch.Tensor, beta_pi: float, beta_r: float) -> torch.Tensor:
    r"""EXO loss in reward mode: :math:`\mathrm{KL}(p_f\|p_r)` per prompt (the paper's reward-mode EXO objective).

    Parameters
    ----------
    logratios : (..., K) — :math:`\log\pi_\theta(y_i|x) - \log\pi_{sft}(y_i|x)`, :math:`K \ge 2`.
    rewards : (..., K) — :math:`r(x, y_i)`.
    beta_pi, beta_r : > 0 — policy and reward temperatures.

    Returns
    -------
    (...) tensor of losses (≥ 0; 0 iff :math:`f \equiv r/\beta_r` up to a constant).
    """
    _check_ksample(logratios, rewards, "rewards")
    bp, br = _check_pos("beta_pi", beta_pi), _check_pos("beta_r", beta_r)
    return _reverse_kl_softmax(bp * logratios, torch.log_softmax(rewards / br, dim=-1))


def exo_loss_soft(logratios: torch.Tensor, targets: torch.Tensor, beta_pi: float) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p_f\|p)` for soft targets :math:`p` (rows of ``targets`` sum to 1)."""
    _check_ksample(logratios, targets, "targets")
    bp = _check_pos("beta_pi", beta_pi)
    _check_simplex(targets)
    return _reverse_kl_softmax(bp * logratios, torch.log(targets))


def _check_simplex(targets: torch.Tensor) -> None:
    if bool((targets < 0).any()) or not torch.allclose(
            targets.sum(-1), torch.ones((), dtype=targets.dtype), atol=1e-6):
        raise InputError("'targets' must be probabilities (>= 0, summing to 1 over the last dim).")


def exo_pref_loss(logratio_w: torch.Tensor, logratio_l: torch.Tensor, beta_pi: float,
                  eps: float = 1e-3) -> torch.Tensor:
    r"""EXO with a pairwise preference (:math:`K = 2`), Eq. 16 as cited by TRL's ``exo_pair``.

    .. math:: q = \sigma(\beta_\pi\Delta),\quad
              L = q\log\frac{q}{1-\varepsilon} + (1-q)\log\frac{1-q}{\varepsilon}
              = \mathrm{KL}([q, 1-q]\,\|\,[1-\varepsilon, \varepsilon]).

    ``eps`` must lie in (0, 0.5) (with ε = 0 the target is one-hot and the reverse KL infinite).

    Examples
    --------
    Zero exactly where :math:`q = 1 - \varepsilon`, i.e. :math:`\beta_\pi\Delta = \log\frac{1-\varepsilon}{\varepsilon}`:

    >>> import math, torch
    >>> d = torch.tensor([math.log(0.99 / 0.01)], dtype=torch.float64)
    >>> round(exo_pref_loss(d, torch.zeros(1, dtype=torch.float64), 1.0, eps=0.01).item(), 12)
    0.0
    """
    _check_pair(logratio_w, logratio_l)
    bp, e = _check_pos("beta_pi", beta_pi), _check_eps(eps)
    z = bp * (logratio_w - logratio_l)
    log_q, log_1mq = F.logsigmoid(z), F.logsigmoid(-z)
    return log_q.exp() * (log_q - math.log1p(-e)) + log_1mq.exp() * (log_1mq - math.log(e))


def dpo_loss(logratio_w: torch.Tensor, logratio_l: torch.Tensor, beta: float,
             label_smoothing: float = 0.0) -> torch.Tensor:
    r"""DPO pairwise loss :math:`-(1-\varepsilon)\log\sigma(\beta\Delta) - \varepsilon\log\sigma(-\beta\Delta)`.

    ε = 0 is DPO (Rafailov et al. 2023, Eq. 7). ε ∈ (0, 0.5) is conservative DPO (cDPO, E. Mitchell's
    note https://ericmitchell.ai/cdpo.pdf): the cross-entropy with the smoothed target
    :math:`[1-\varepsilon, \varepsilon]`, i.e. preferences flipped with probability ε.

    TRL, read in the source of TRL 1.16.0's ``DPOTrainer`` (the tests hold transcriptions): ε = 0
    is ``loss_type="sigmoid"``, which ignores ``label_smoothing``, so for ε > 0 that branch is
    *not* this loss. With ε > 0 this is the ``"aot_unpaired"`` branch at batch size 1 (where its
    sort is the identity), bit for bit. TRL 0.11.4's ``sigmoid`` did apply ``label_smoothing``
    this way; 0.29.1's, like 1.16.0's, does not.

    Examples
    --------
    >>> import torch
    >>> dpo_loss(torch.tensor([0.0]), torch.tensor([0.0]), 0.1)   # log 2 when Δ = 0
    tensor([0.6931])
    """
    _check_pair(logratio_w, logratio_l)
    b = _check_pos("beta", beta)
    ok = isinstance(label_smoothing, (int, float)) and 0.0 <= label_smoothing < 0.5
    if not ok:
        raise InputError(f"'label_smoothing' must be a real in [0, 0.5). Got {label_smoothing!r}.")
    z = b * (logratio_w - logratio_l)
    return -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


def dpo_ksample_loss(logratios: torch.Tensor, rewards: torch.Tensor, beta_pi: float,
                     beta_r: float) -> torch.Tensor:
    r"""Generalised K-sample DPO: :math:`-\sum_i p_r(i)\log p_f(i)` (forward KL up to a constant)."""
    _check_ksample(logratios, rewards, "rewards")
    bp, br = _check_pos("beta_pi", beta_pi), _check_pos("beta_r", beta_r)
    return _cross_entropy_softmax(bp * logratios, torch.log_softmax(rewards / br, dim=-1))


def dpo_loss_soft(logratios: torch.Tensor, targets: torch.Tensor, beta_pi: float) -> torch.Tensor:
    r""":math:`-\sum_i p(i)\log p_f(i)` for soft targets :math:`p` (K = 2, one-hot = pairwise DPO)."""
    _check_ksample(logratios, targets, "targets")
    bp = _check_pos("beta_pi", beta_pi)
    _check_simplex(targets)
    return _cross_entropy_softmax(bp * logratios, torch.log(targets))


# --------------------------------------------------------------------------- closed-form grads

def reverse_kl_grad_f(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial\,\mathrm{KL}(\mathrm{softmax}(f)\|q)/\partial f = p\odot(\log p - \log q - \mathrm{KL})`."""
    log_p = torch.log_softmax(f, dim=-1)
    p = log_p.exp()
    d = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return p * (d - (p * d).sum(-1, keepdim=True))


def forward_kl_grad_f(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial(-\sum q\log\mathrm{softmax}(f))/\partial f = \mathrm{softmax}(f) - q`."""
    return torch.softmax(f, dim=-1) - log_q.exp()


# --------------------------------------------------------------------------- tabular, exact

def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p\|q) = \sum p(\log p - \log q)` over the last dim (0·log 0 = 0)."""
    p = log_p.exp()
    return (p * torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))).sum(-1)


def tilted_policy(theta: torch.Tensor, logp_sft: torch.Tensor, beta_pi: float) -> torch.Tensor:
    r"""Log of :math:`\pi^{\beta_\pi}_\theta \propto \pi_\theta^{\beta_\pi}\pi_{sft}^{1-\beta_\pi}`,
    :math:`\pi_\theta = \mathrm{softmax}(\theta)`."""
    return torch.log_softmax(beta_pi * torch.log_softmax(theta, -1) + (1 - beta_pi) * logp_sft, -1)


def optimal_policy(logp_sft: torch.Tensor, r: torch.Tensor, beta: float) -> torch.Tensor:
    r"""Log of :math:`\pi^*_\beta \propto \pi_{sft} e^{r/\beta}`, the maximiser of :math:`J_\beta`."""
    return torch.log_softmax(logp_sft + r / beta, -1)


def analytic_optimum(logp_sft: torch.Tensor, r: torch.Tensor, beta_r: float, beta_pi: float) -> torch.Tensor:
    r"""Log of the EXO/DPO optimum :math:`\pi_\theta \propto \pi_{sft} e^{r/(\beta_r\beta_\pi)}`."""
    return optimal_policy(logp_sft, r, beta_r * beta_pi)


def objective_J(log_pi: torch.Tensor, logp_sft: torch.Tensor, r: torch.Tensor, beta: float) -> torch.Tensor:
    r""":math:`J_\beta(\pi) = \mathbb{E}_{\pi} r - \beta\,\mathrm{KL}(\pi\|\pi_{sft})`."""
    return (log_pi.exp() * r).sum(-1) - beta * kl(log_pi, logp_sft)


def grad_J(theta: torch.Tensor, logp_sft: torch.Tensor, r: torch.Tensor, beta: float) -> torch.Tensor:
    r""":math:`\nabla_\theta J_\beta(\mathrm{softmax}\,\theta) = \pi\odot(A - \mathbb{E}_\pi A)`,
    :math:`A = r - \beta(\log\pi - \log\pi_{sft})`."""
    log_pi = torch.log_softmax(theta, -1)
    pi = log_pi.exp()
    a = r - beta * (log_pi - logp_sft)
    return pi * (a - (pi * a).sum(-1, keepdim=True))


def exo_limit_loss(theta, logp_sft, r, beta_pi: float, beta_r: float) -> torch.Tensor:
    r"""K → ∞ EXO loss :math:`\mathrm{KL}(\pi^{\beta_\pi}_\theta\|\pi^*_{\beta_r})`."""
    return kl(tilted_policy(theta, logp_sft, beta_pi), optimal_policy(logp_sft, r, beta_r))


def exo_limit_grad(theta, logp_sft, r, beta_pi: float, beta_r: float) -> torch.Tensor:
    r""":math:`\nabla_\theta\mathrm{KL}(\pi^{\beta_\pi}_\theta\|\pi^*) = \beta_\pi\,\pi^{\beta_\pi}
    \odot(\log\pi^{\beta_\pi} - \log\pi^* - \mathrm{KL}) = -\tfrac{1}{\beta_r}\nabla_\theta
    J_{\beta_r}(\pi^{\beta_\pi}_\theta)`."""
    lt = tilted_policy(theta, logp_sft, beta_pi)
    return beta_pi * reverse_kl_grad_f(lt, optimal_policy(logp_sft, r, beta_r))


def dpo_limit_loss(theta, logp_sft, r, beta_pi: float, beta_r: float) -> torch.Tensor:
    r"""K → ∞ DPO direction: forward :math:`\mathrm{KL}(\pi^*_{\beta_r}\|\pi^{\beta_\pi}_\theta)`."""
    return kl(optimal_policy(logp_sft, r, beta_r), tilted_policy(theta, logp_sft, beta_pi))


def dpo_limit_grad(theta, logp_sft, r, beta_pi: float, beta_r: float) -> torch.Tensor:
    r""":math:`\nabla_\theta\mathrm{KL}(\pi^*\|\pi^{\beta_\pi}_\theta) = \beta_\pi(\pi^{\beta_\pi}_\theta - \pi^*)`."""
    lt = tilted_policy(theta, logp_sft, beta_pi)
    return beta_pi * (lt.exp() - optimal_policy(logp_sft, r, beta_r).exp())


def ksample_grad_tabular(theta: torch.Tensor, logp_sft: torch.Tensor, r: torch.Tensor,
                         idx: torch.Tensor, beta_pi: float, beta_r: float,
                         kind: str = "exo") -> torch.Tensor:
    r"""Mean over draws of the K-sample loss gradient w.r.t. the logits :math:`\theta` (N,).

    ``idx`` (M, K) holds M independent draws of K actions (from :math:`\pi_{sft}`). Since
    :math:`\partial f_i/\partial\theta = \beta_\pi(e_{y_i} - \pi_\theta)` and the
    :math:`\partial L/\partial f_i` sum to 0 (both losses are shift-invariant in f),
    :math:`\nabla_\theta L = \beta_\pi\sum_i (\partial L/\partial f_i)\, e_{y_i}`: a scatter-add.
    ``kind`` is ``"exo"`` (reverse KL) or ``"dpo"`` (generalised DPO, forward KL).
    """
    _check_tensor("idx", idx, 2)
    if idx.shape[1] < 2:
        raise InputError(f"'K' (samples per prompt, idx.shape[1]) must be an int >= 2. Got {idx.shape[1]}.")
    if kind not in ("exo", "dpo"):
        raise InputError(f"'kind' must be one of 'exo', 'dpo'. Got {kind!r}.")
    bp, br = _check_pos("beta_pi", beta_pi), _check_pos("beta_r", beta_r)
    n = theta.shape[-1]
    logratio = torch.log_softmax(theta, -1) - logp_sft                  # (N,)
    f = bp * logratio[idx]                                              # (M, K)
    log_q = torch.log_softmax(r[idx] / br, dim=-1)
    g = reverse_kl_grad_f(f, log_q) if kind == "exo" else forward_kl_grad_f(f, log_q)
    out = torch.zeros(n, dtype=theta.dtype).index_add_(0, idx.reshape(-1), g.reshape(-1))
    return bp * out / idx.shape[0]
