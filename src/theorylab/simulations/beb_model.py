r"""Finite-state sentence-level language models for BEB, validated, and the BEB decomposition.

Wolf et al., "Fundamental Limitations of Alignment in LLMs" (arXiv 2304.11082), Sec. 2-3.
A :class:`FiniteStateMixture` is :math:`P = \sum_m \pi_m P_m` with HMM components over ``S``
sentences and a behaviour scorer :math:`B: \{0..S-1\} \to [-1, 1]`. Components flagged ``neg``
form :math:`P_-` and :math:`\alpha = \sum_{m \in neg} \pi_m`, so :math:`P = \alpha P_- +
(1-\alpha) P_+`. :func:`decompose` computes :math:`(\alpha, \gamma, \beta, \beta', \sigma)`:

* :math:`\gamma \ge \sup_s B_{P_-}(s)`: for an HMM the predictive state after any non-empty
  prefix lies in the convex hull of the rows of :math:`A_m`, so
  :math:`\sup_s B_{P_m}(s) \le \max(\mathrm{init}_m b_m, \max_z (A_m b_m)_z)` with
  :math:`b_m = E_m B` -- exact for Markov chains whose states are all reachable.
* :math:`\beta` three ways: ``beta_worst`` = :math:`\inf_s KL(P_-(\cdot|s)\|P_+(\cdot|s))` over
  every prefix (the strict "for any prefix" reading); ``beta_def`` =
  :math:`\inf_n E_{s\sim P_-^n} KL(\cdot)` (the definition); ``beta_paper`` = the paper's
  estimate, the pooled mean of sampled log-ratios :math:`\log P_-(c|s)/P_+(c|s)` with prefixes
  *and* continuations from :math:`P_-` -- biased upward relative to both.
* :math:`\beta' = \sup_s KL(P_+(\cdot|s)\|P_-(\cdot|s))` (the growth rate of an aligning
  :math:`P_+` prefix's log-ratio, T2/T3), and :math:`\sigma^2 = \sup_n Var[\log
  P_\mp(s)/P_\pm(s)]/n` under :math:`P_-` (T5) and under :math:`P_+` (T2/T3), sampled;
  :math:`+\infty` when a sampled prefix has an infinite log-ratio (one side cannot emit it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theorylab.errors import InputError
from theorylab.kernels import beb as K
from theorylab.validation import check_int, check_real, check_shape

__all__ = ["FiniteStateMixture", "BEBDecomposition", "decompose", "random_markov_pair",
           "random_hmm_mixture", "persona_pair", "check_stochastic", "check_scores"]

_TOL = 1e-8


def check_stochastic(name: str, array, axis: int = -1) -> np.ndarray:
    """Entries finite and >= 0 and every row summing to 1 (|sum - 1| <= 1e-8), else InputError."""
    arr = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"'{name}' must be finite. Got a non-finite entry.")
    if np.any(arr < 0):
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise InputError(f"'{name}' must be non-negative. Got {float(arr[idx])!r} at index {idx}.")
    sums = arr.sum(axis=axis)
    bad = np.abs(sums - 1.0) > _TOL
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(np.atleast_1d(bad))[0])
        raise InputError(f"rows of '{name}' must sum to 1. Got sum "
                         f"{float(np.atleast_1d(sums)[idx])!r} for row {idx}.")
    return arr


def check_scores(scores) -> np.ndarray:
    """Behaviour scores must be finite and in [-1, 1] (paper: B: Σ* → [-1, 1])."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"'scores' must be a non-empty 1-d array. Got shape {arr.shape}.")
    bad = ~np.isfinite(arr) | (arr < -1) | (arr > 1)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise InputError(f"'scores' must lie in [-1, 1]. Got {float(arr[i])!r} at index {i}.")
    return arr


@dataclass(frozen=True, eq=False)
class FiniteStateMixture:
    r"""Mixture of HMM sentence models with a behaviour scorer (validated on construction).

    Parameters
    ----------
    prior : (M,) :math:`\pi_m`, sums to 1.
    init : (M, K) initial hidden-state laws.   trans : (M, K, K) transitions :math:`A_m`.
    emit : (M, K, S) emissions :math:`E_m(z, s)`.   scores : (S,) :math:`B(s) \in [-1, 1]`.
    neg : (M,) bool, component is part of :math:`P_-`; needs :math:`0 < \alpha < 1`.
    """

    prior: np.ndarray
    init: np.ndarray
    trans: np.ndarray
    emit: np.ndarray
    scores: np.ndarray
    neg: np.ndarray

    def __post_init__(self):
        prior = check_stochastic("prior", self.prior)
        check_shape("prior", prior, (-1,))
        M = prior.shape[0]
        init = check_shape("init", check_stochastic("init", self.init), (M, -1))
        Kh = init.shape[1]
        trans = check_shape("trans", check_stochastic("trans", self.trans), (M, Kh, Kh))
        emit = check_stochastic("emit", self.emit)
        scores = check_scores(self.scores)
        emit = check_shape("emit", emit, (M, Kh, scores.shape[0]))
        neg = np.asarray(self.neg)
        if neg.dtype != np.bool_:
            raise InputError(f"'neg' must be a boolean array. Got dtype {neg.dtype}.")
        check_shape("neg", neg, (M,))
        alpha = float(prior[neg].sum())
        check_real("FiniteStateMixture", "alpha (prior mass of neg components)", alpha,
                   lo=0, hi=1, lo_open=True, hi_open=True)
        for k, v in dict(prior=prior, init=init, trans=trans, emit=emit, scores=scores,
                         neg=neg).items():
            v = np.ascontiguousarray(v)
            v.setflags(write=False)
            object.__setattr__(self, k, v)

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def markov(cls, prior, init, trans, scores, neg) -> FiniteStateMixture:
        """Mixture of Markov chains over sentences: hidden state = current sentence (E = I)."""
        init = np.asarray(init, dtype=np.float64)
        S = init.shape[-1]
        emit = np.broadcast_to(np.eye(S), (init.shape[0], S, S)).copy()
        return cls(np.asarray(prior, float), init, np.asarray(trans, float), emit,
                   np.asarray(scores, float), np.asarray(neg))

    # -- basic properties ----------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        return float(self.prior[self.neg].sum())

    @property
    def n_sentences(self) -> int:
        return int(self.scores.shape[0])

    @property
    def is_markov_pair(self) -> bool:
        """Two components (one P-, one P+) that are Markov chains: quantities are exact."""
        S = self.n_sentences
        return (self.prior.shape[0] == 2 and self.init.shape[1] == S and bool(self.neg.sum() == 1)
                and np.array_equal(self.emit, np.broadcast_to(np.eye(S), self.emit.shape)))

    def side(self, negative: bool) -> tuple[np.ndarray, np.ndarray]:
        """(init, trans) of the single P- (or P+) component of a Markov pair."""
        m = int(np.flatnonzero(self.neg == negative)[0])
        return self.init[m], self.trans[m]

    def stats(self, prompts, lengths=None) -> K.PrefixStats:
        """:func:`theorylab.kernels.beb.prefix_stats` on this model (prompts validated)."""
        p = np.atleast_2d(np.asarray(prompts))
        if p.dtype.kind not in "iu" or (p.size and (p.min() < 0 or p.max() >= self.n_sentences)):
            raise InputError(f"'prompts' must be int sentence ids in [0, {self.n_sentences}). "
                             f"Got dtype {p.dtype}, range [{p.min() if p.size else ''}, "
                             f"{p.max() if p.size else ''}].")
        return K.prefix_stats(self.prior, self.init, self.trans, self.emit, self.scores,
                              self.neg, p, lengths)

    def component_weights(self, log_p, negative: bool | None):
        """Posterior component weights from per-component log-likelihoods (N, M)."""
        a = np.log(self.prior) + log_p
        if negative is not None:
            a = np.where(self.neg == negative, a, -np.inf)
        a = a - a.max(1, keepdims=True)
        w = np.exp(a)
        return w / w.sum(1, keepdims=True)

    def sample(self, rng: np.random.Generator, n: int, length: int, negative: bool | None,
               prefixes=None):
        """Sample ``n`` sequences from :math:`P_-` (negative=True), :math:`P_+` or :math:`P`.

        With ``prefixes`` (n, T0), samples continuations from :math:`P_\\mp(\\cdot|s_0)`.
        """
        if prefixes is None:
            log_p = np.zeros((n, self.prior.shape[0]))
            q = np.broadcast_to(self.init, (n,) + self.init.shape)
        else:
            log_p, q = K.forward_beliefs(self.init, self.trans, self.emit, prefixes)
        w = self.component_weights(log_p, negative)
        seq, _ = K.sample_sequences(rng, w, q, self.trans, self.emit, length)
        return seq

    def gamma_bound(self, negative: bool = True) -> float:
        r""":math:`\gamma \ge \sup_s B_{P_\mp}(s)` (max over components of the hull bound)."""
        b = np.einsum("mks,s->mk", self.emit, self.scores)  # b_m(z) = sum_s E_m(z,s) B(s)
        vals = []
        for m in np.flatnonzero(self.neg == negative):
            vals.append(max(self.init[m] @ b[m], (self.trans[m] @ b[m]).max()))
        return float(max(vals))


@dataclass(frozen=True)
class BEBDecomposition:
    """The paper's quantities for one model (see module docstring for definitions)."""

    alpha: float
    gamma: float
    beta_worst: float
    beta_def: float
    beta_paper: float
    beta_prime: float
    sigma_minus: float
    sigma_plus: float


def _sampled_log_ratio_var(model, rng, n_samples, lengths, negative):
    r"""sup_n Var[log P-(s)/P+(s)] / n over s ~ P- (negative) or P+ (sampled).

    A sampled prefix that the other side cannot emit (:math:`P_+(s) = 0` under :math:`P_-`, or
    :math:`P_-(s) = 0` under :math:`P_+`) has an infinite log-ratio, so the log-ratio is infinite
    with positive probability and its variance is :math:`+\infty`: no finite σ bounds its
    deviation, and the T2/T3/T5 bounds that use σ are vacuous (+inf). Such a length contributes
    +inf (``np.var`` would give NaN, inf - inf), and the sup is ``np.max`` over all lengths, so it
    does not depend on their order.
    """
    L = max(lengths)
    seq = model.sample(rng, n_samples, L, negative)
    lr = model.stats(seq).log_ratio
    per_n = [np.inf if np.isinf(lr[:, n]).any() else float(np.var(lr[:, n])) / n for n in lengths]
    return float(np.max(per_n))


def decompose(model: FiniteStateMixture, rng: np.random.Generator, *, horizon: int = 30,
              n_samples: int = 2000) -> BEBDecomposition:
    r"""Compute :math:`(\alpha, \gamma, \beta_{worst}, \beta_{def}, \beta_{paper}, \beta', \sigma)`.

    Exact for Markov pairs (``beta_worst``: min over rows of :math:`KL(A_-[i]\|A_+[i])` and
    the initial law; ``beta_def``: :math:`\min_{n\le horizon} d_n \cdot KL_{rows}` with
    :math:`d_n` the law of :math:`s_n` under :math:`P_-`); otherwise prefix-sampled (``beta_worst``
    then is the min over prefixes sampled from P-, P+ and uniformly). ``beta_paper`` and
    :math:`\sigma` are always sampled, as in the paper.
    """
    check_int("decompose", "horizon", horizon, lo=2)
    check_int("decompose", "n_samples", n_samples, lo=10)
    H = horizon
    if model.is_markov_pair:
        im, Am = model.side(True)
        ip, Ap = model.side(False)
        kl_rows = K.kl_categorical(Am, Ap)
        kl_rows_rev = K.kl_categorical(Ap, Am)
        kl0 = float(K.kl_categorical(im, ip))
        reach = np.zeros(model.n_sentences, bool)  # sentences reachable under P- or P+
        d_any = (im + ip) / 2
        for _ in range(model.n_sentences + 1):
            reach |= d_any > 0
            d_any = d_any @ ((Am + Ap) / 2)
        beta_worst = min(kl0, float(kl_rows[reach].min()))
        d = im.copy()
        per_n = [kl0]
        for _ in range(1, H + 1):
            per_n.append(float(d @ kl_rows))
            d = d @ Am
        beta_def = float(min(per_n))
        beta_prime = max(float(K.kl_categorical(ip, im)), float(kl_rows_rev[reach].max()))
    else:
        pre = np.concatenate([model.sample(rng, n_samples // 3, H, neg) for neg in (True, False)]
                             + [rng.integers(0, model.n_sentences, (n_samples // 3, H))])
        st = model.stats(pre)
        beta_worst = float(np.nanmin(st.kl_minus_plus))
        nm = n_samples // 3
        beta_def = float(np.min(np.mean(st.kl_minus_plus[:nm], axis=0)))
        # KL(P+ || P-) along P+ prefixes: swap roles by flipping neg
        swapped = FiniteStateMixture(model.prior, model.init, model.trans, model.emit,
                                     model.scores, ~model.neg)
        beta_prime = float(np.nanmax(swapped.stats(pre[nm:2 * nm]).kl_minus_plus))
    # the paper's estimate: prefixes s ~ P- of lengths 0..H-1, one continuation c ~ P-(.|s)
    seq = model.sample(rng, n_samples, H, True)
    lr = model.stats(seq).log_ratio  # lr[:, t] = log P-(s_1..s_t)/P+(s_1..s_t)
    beta_paper = float(np.mean(np.diff(lr, axis=1)))  # pooled mean of log P-(c|s)/P+(c|s)
    lens = [n for n in (1, 2, 4, 8, 16, 32) if n <= H]
    sig_m = np.sqrt(_sampled_log_ratio_var(model, rng, n_samples, lens, True))
    sig_p = np.sqrt(_sampled_log_ratio_var(model, rng, n_samples, lens, False))
    return BEBDecomposition(alpha=model.alpha, gamma=model.gamma_bound(True),
                            beta_worst=float(beta_worst), beta_def=float(beta_def),
                            beta_paper=beta_paper, beta_prime=float(beta_prime),
                            sigma_minus=float(sig_m), sigma_plus=float(sig_p))


# ----------------------------------------------------------------------------- model families


def random_markov_pair(rng: np.random.Generator, n_sentences: int = 8, alpha: float = 0.05,
                       tilt: float = 2.0, concentration: float = 1.0) -> FiniteStateMixture:
    r"""A random negatively-distinguishable Markov pair :math:`P = \alpha P_- + (1-\alpha)P_+`.

    Scores :math:`B \sim U[-1,1]`; rows :math:`A_\mp[i] \propto D_i \odot e^{\mp tilt\cdot B}`
    with :math:`D_i \sim \mathrm{Dir}(concentration)`, so :math:`P_-` prefers negative sentences.
    Redrawn (up to 100 times) until :math:`\gamma < 0` (the paper's condition).
    """
    o = "random_markov_pair"
    S = check_int(o, "n_sentences", n_sentences, lo=2)
    check_real(o, "alpha", alpha, lo=0, hi=1, lo_open=True, hi_open=True)
    check_real(o, "tilt", tilt, lo=0)
    check_real(o, "concentration", concentration, lo=0, lo_open=True)
    for _ in range(100):
        scores = rng.uniform(-1, 1, S)
        scores[0] = -1.0  # at least one clearly bad and one clearly good sentence
        scores[1] = 1.0
        base = rng.dirichlet(np.full(S, concentration), size=(2, S + 1)) + 1e-6
        tilt_w = np.exp(np.outer([-tilt, tilt], scores))[:, None, :]
        rows = base * tilt_w
        rows /= rows.sum(-1, keepdims=True)
        init, trans = rows[:, 0], rows[:, 1:]
        model = FiniteStateMixture.markov([alpha, 1 - alpha], init, trans, scores, [True, False])
        if model.gamma_bound(True) < 0:
            return model
    raise InputError(f"'tilt' {tilt} of {o} too small: no pair with gamma < 0 in 100 draws.")


def random_hmm_mixture(rng: np.random.Generator, n_sentences: int = 6, n_states: int = 3,
                       n_neg: int = 2, n_pos: int = 2, alpha: float = 0.05,
                       tilt: float = 2.5) -> FiniteStateMixture:
    r"""A random mixture of HMMs: ``n_neg`` components form :math:`P_-`, ``n_pos`` form :math:`P_+`.

    Emissions :math:`E_m(z,\cdot) \propto \mathrm{Dir}(1) \odot e^{\mp tilt\cdot B}`, random
    transitions and initial laws; the prior splits :math:`\alpha` and :math:`1-\alpha` at random
    within each side. Redrawn (up to 100 times) until the hull bound on :math:`\gamma` is < 0.
    """
    o = "random_hmm_mixture"
    S = check_int(o, "n_sentences", n_sentences, lo=2)
    Kh = check_int(o, "n_states", n_states, lo=1)
    nn = check_int(o, "n_neg", n_neg, lo=1)
    npos = check_int(o, "n_pos", n_pos, lo=1)
    check_real(o, "alpha", alpha, lo=0, hi=1, lo_open=True, hi_open=True)
    check_real(o, "tilt", tilt, lo=0)
    M = nn + npos
    neg = np.arange(M) < nn
    for _ in range(100):
        scores = rng.uniform(-1, 1, S)
        scores[0], scores[1] = -1.0, 1.0
        sign = np.where(neg, -1.0, 1.0)
        emit = rng.dirichlet(np.ones(S), size=(M, Kh)) * np.exp(
            tilt * sign[:, None, None] * scores[None, None, :])
        emit /= emit.sum(-1, keepdims=True)
        prior = np.concatenate([alpha * rng.dirichlet(np.ones(nn)),
                                (1 - alpha) * rng.dirichlet(np.ones(npos))])
        model = FiniteStateMixture(prior, rng.dirichlet(np.ones(Kh), M),
                                   rng.dirichlet(np.ones(Kh), (M, Kh)), emit, scores, neg)
        if model.gamma_bound(True) < 0:
            return model
    raise InputError(f"'tilt' {tilt} of {o} too small: no mixture with gamma < 0 in 100 draws.")


def persona_pair(rng: np.random.Generator, n_bad: int = 6, n_good: int = 6, alpha: float = 0.01,
                 rho: float = 0.3, concentration: float = 1.0) -> FiniteStateMixture:
    r"""Two personas with :math:`B \in \{0, 1\}` (1 = aligned), the Eq. 7 / Fig. 3 setting.

    :math:`P_-` only ever says bad sentences (:math:`B=0`): random rows over the ``n_bad`` bad
    sentences. :math:`P_+(\cdot|i) = \rho\, Q_i + (1-\rho) G_i` mixes random bad rows
    :math:`Q_i` with random good rows :math:`G_i`, so :math:`P_+` covers :math:`P_-` and
    :math:`KL(P_-\|P_+)` is finite (about :math:`\log 1/\rho` plus the row mismatch).
    """
    o = "persona_pair"
    nb = check_int(o, "n_bad", n_bad, lo=1)
    ng = check_int(o, "n_good", n_good, lo=1)
    check_real(o, "alpha", alpha, lo=0, hi=1, lo_open=True, hi_open=True)
    check_real(o, "rho", rho, lo=0, hi=1, lo_open=True, hi_open=True)
    S = nb + ng
    scores = np.r_[np.zeros(nb), np.ones(ng)]
    bad_m = rng.dirichlet(np.full(nb, concentration), size=S + 1)
    bad_p = rng.dirichlet(np.full(nb, concentration), size=S + 1)
    good_p = rng.dirichlet(np.full(ng, concentration), size=S + 1)
    rows_m = np.concatenate([bad_m, np.zeros((S + 1, ng))], 1)
    rows_p = np.concatenate([rho * bad_p, (1 - rho) * good_p], 1)
    init = np.stack([rows_m[0], rows_p[0]])
    trans = np.stack([rows_m[1:], rows_p[1:]])
    return FiniteStateMixture.markov([alpha, 1 - alpha], init, trans, scores, [True, False])
