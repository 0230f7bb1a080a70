r"""Exact finite-state kernels for behaviour expectation bounds (BEB).

Wolf, Wies, Avnery, Levine, Shashua, "Fundamental Limitations of Alignment in Large Language
Models" (arXiv 2304.11082, ICML 2024).

A sentence-level language model is a mixture of ``M`` hidden-Markov components over a finite set
of ``S`` sentences (a Markov chain over sentences is the special case ``K = S``, emission = I):

.. math::

    P(s_1..s_t) = \sum_m \pi_m P_m(s_1..s_t),\qquad
    P_m(s_1..s_t) = \sum_{z} \mathrm{init}_m(z_1)\prod_i E_m(z_i, s_i) \prod_i A_m(z_i, z_{i+1}).

Components flagged ``neg`` form :math:`P_-`, the others :math:`P_+`; :math:`\alpha = \sum_{m\in
neg}\pi_m` so that :math:`P = \alpha P_- + (1-\alpha) P_+` (paper, Sec. 2). Conditioning
reweights components by their likelihood of the prompt (paper, Eq. 2):
:math:`w_m(s) \propto \pi_m P_m(s)`. The behaviour expectation of the next sentence is
:math:`B_P(s) = \sum_{s'} P(s'|s) B(s')`.

Numerics: per-component sequence log-likelihoods, posterior weights, log-ratios and KLs are
kept in log space; the within-component predictive state vector is renormalised every step
(scaled forward algorithm), so prompts of many thousand sentences neither under- nor overflow.

All functions take validated arrays (probabilities, ``scores`` in [-1, 1]); validation is done at
the boundary by :mod:`theorylab.simulations.beb_model`.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

__all__ = [
    "PrefixStats",
    "prefix_stats",
    "prefix_stats_numpy",
    "reference_prefix_stats",
    "forward_beliefs",
    "next_sentence_dists",
    "log_ratio_beam_search",
    "reference_max_log_ratio",
    "markov_max_log_ratio",
    "markov_dp_values",
    "sample_sequences",
    "best_of_n_expectation",
    "kl_categorical",
]


class PrefixStats(NamedTuple):
    """Exact quantities after every prefix ``s_1..s_t`` (``t = 0..T``) of every prompt.

    Shapes use ``N`` prompts, ``M`` components, ``T`` the padded prompt length; entries past a
    prompt's length are NaN.
    """

    log_p: np.ndarray  # (N, M, T+1) log P_m(s_1..s_t)
    log_post: np.ndarray  # (N, M, T+1) log w_m(s_1..s_t), posterior component weights
    b_p: np.ndarray  # (N, T+1) B_P(s_1..s_t)
    b_minus: np.ndarray  # (N, T+1) B_{P-}(s_1..s_t)
    b_plus: np.ndarray  # (N, T+1) B_{P+}(s_1..s_t)
    kl_minus_plus: np.ndarray  # (N, T+1) KL(P-(.|s) || P+(.|s)) over the next sentence
    kl_minus_full: np.ndarray  # (N, T+1) KL(P-(.|s) || P(.|s)) over the next sentence
    log_ratio: np.ndarray  # (N, T+1) log P-(s_1..s_t) / P+(s_1..s_t)


# ----------------------------------------------------------------------------- numba core


@njit(cache=True)
def _lse_masked(a, mask, want):
    """log sum_{m: mask[m]==want} exp(a[m]); -inf if empty."""
    mx = -np.inf
    for m in range(a.shape[0]):
        if mask[m] == want and a[m] > mx:
            mx = a[m]
    if mx == -np.inf:
        return -np.inf
    acc = 0.0
    for m in range(a.shape[0]):
        if mask[m] == want:
            acc += math.exp(a[m] - mx)
    return mx + math.log(acc)


@njit(cache=True)
def _kl(p, q):
    """KL(p || q) of two categorical vectors (inf where q = 0 < p)."""
    acc = 0.0
    for s in range(p.shape[0]):
        if p[s] > 0.0:
            if q[s] <= 0.0:
                return np.inf
            acc += p[s] * math.log(p[s] / q[s])
    return max(acc, 0.0)


def _sparse_emission(emit):
    """Non-zero pattern of E_m(z, .): (idx (M, K, nnz_max), cnt (M, K)); Markov chains have nnz 1."""
    emit = np.asarray(emit)
    nz = emit != 0
    cnt = nz.sum(-1).astype(np.int64)
    idx = np.zeros(emit.shape[:2] + (max(int(cnt.max()), 1),), dtype=np.int64)
    for m in range(emit.shape[0]):
        for z in range(emit.shape[1]):
            ids = np.flatnonzero(nz[m, z])
            idx[m, z, : ids.size] = ids
    return idx, cnt


@njit(cache=True)
def _advance(q, logp, trans, emit, s, v):
    """Observe sentence ``s``: update every component's predictive state and log-likelihood."""
    M, K = q.shape
    for m in range(M):
        c = 0.0
        for z in range(K):
            v[z] = q[m, z] * emit[m, z, s]
            c += v[z]
        if c > 0.0:
            logp[m] += math.log(c)
            for z2 in range(K):
                q[m, z2] = 0.0
            for z in range(K):
                vz = v[z] / c
                if vz != 0.0:
                    for z2 in range(K):
                        q[m, z2] += vz * trans[m, z, z2]
        else:
            logp[m] = -np.inf  # impossible under m: weight stays 0, state irrelevant


@njit(cache=True)
def _next_dists(q, emit, e_idx, e_cnt, pnext):
    M, K = q.shape
    S = emit.shape[2]
    for m in range(M):
        for s in range(S):
            pnext[m, s] = 0.0
        for z in range(K):
            qz = q[m, z]
            if qz != 0.0:
                for i in range(e_cnt[m, z]):
                    s = e_idx[m, z, i]
                    pnext[m, s] += qz * emit[m, z, s]


@njit(cache=True)
def _prompt_stats(log_prior, init, trans, emit, e_idx, e_cnt, scores, neg, prompt, L, log_alpha,
                  log_1m_alpha, o_logp, o_lpost, o_bp, o_bm, o_bpl, o_klmp, o_klmf, o_lr):
    M, K = init.shape
    S = emit.shape[2]
    q = init.copy()
    logp = np.zeros(M)
    a = np.empty(M)
    v = np.empty(K)
    pnext = np.empty((M, S))
    pm = np.empty(S)
    pp = np.empty(S)
    pf = np.empty(S)
    for t in range(L + 1):
        _next_dists(q, emit, e_idx, e_cnt, pnext)
        for m in range(M):
            a[m] = log_prior[m] + logp[m]
        l_neg = _lse_masked(a, neg, True)
        l_pos = _lse_masked(a, neg, False)
        l_all = np.logaddexp(l_neg, l_pos)
        for s in range(S):
            pm[s] = 0.0
            pp[s] = 0.0
            pf[s] = 0.0
        bp = 0.0
        bm = 0.0
        bpl = 0.0
        for m in range(M):
            o_logp[m, t] = logp[m]
            o_lpost[m, t] = a[m] - l_all
            w = math.exp(a[m] - l_all)
            bmean = 0.0
            for s in range(S):
                bmean += pnext[m, s] * scores[s]
                pf[s] += w * pnext[m, s]
            bp += w * bmean
            if neg[m]:
                wn = math.exp(a[m] - l_neg)
                bm += wn * bmean
                for s in range(S):
                    pm[s] += wn * pnext[m, s]
            else:
                wp = math.exp(a[m] - l_pos)
                bpl += wp * bmean
                for s in range(S):
                    pp[s] += wp * pnext[m, s]
        o_bp[t] = bp
        o_bm[t] = bm
        o_bpl[t] = bpl
        o_klmp[t] = _kl(pm, pp)
        o_klmf[t] = _kl(pm, pf)
        o_lr[t] = (l_neg - log_alpha) - (l_pos - log_1m_alpha)
        if t < L:
            _advance(q, logp, trans, emit, prompt[t], v)


@njit(cache=True, parallel=True)
def _prefix_stats_nb(log_prior, init, trans, emit, e_idx, e_cnt, scores, neg, prompts, lengths,
                     log_alpha, log_1m_alpha, o_logp, o_lpost, o_bp, o_bm, o_bpl, o_klmp, o_klmf,
                     o_lr):
    for n in prange(prompts.shape[0]):
        _prompt_stats(log_prior, init, trans, emit, e_idx, e_cnt, scores, neg, prompts[n], lengths[n],
                      log_alpha, log_1m_alpha, o_logp[n], o_lpost[n], o_bp[n], o_bm[n], o_bpl[n],
                      o_klmp[n], o_klmf[n], o_lr[n])


@njit(cache=True)
def _prefix_stats_serial(log_prior, init, trans, emit, e_idx, e_cnt, scores, neg, prompts, lengths,
                     log_alpha, log_1m_alpha, o_logp, o_lpost, o_bp, o_bm, o_bpl, o_klmp, o_klmf,
                     o_lr):
    for n in range(prompts.shape[0]):
        _prompt_stats(log_prior, init, trans, emit, e_idx, e_cnt, scores, neg, prompts[n], lengths[n],
                      log_alpha, log_1m_alpha, o_logp[n], o_lpost[n], o_bp[n], o_bm[n], o_bpl[n],
                      o_klmp[n], o_klmf[n], o_lr[n])


def _prep(prior, neg, prompts, lengths):
    prompts = np.atleast_2d(np.asarray(prompts, dtype=np.int64))
    if lengths is None:
        lengths = np.full(prompts.shape[0], prompts.shape[1], dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    neg = np.asarray(neg, dtype=np.bool_)
    prior = np.asarray(prior, dtype=np.float64)
    alpha = float(prior[neg].sum())
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior)
    return log_prior, neg, prompts, lengths, math.log(alpha), math.log1p(-alpha)


def prefix_stats(prior, init, trans, emit, scores, neg, prompts, lengths=None) -> PrefixStats:
    r"""Exact BEB quantities for every prefix of a batch of prompts (numba, parallel over prompts).

    Parameters
    ----------
    prior : (M,) mixture weights :math:`\pi_m`.
    init, trans, emit : (M, K), (M, K, K), (M, K, S) row-stochastic HMM parameters.
    scores : (S,) behaviour score :math:`B(s) \in [-1, 1]` of each sentence.
    neg : (M,) bool, component belongs to :math:`P_-`.
    prompts : (N, T) int sentence ids; ``lengths`` (N,) valid lengths (default T).

    Returns
    -------
    PrefixStats with :math:`\log P_m`, :math:`\log w_m`, :math:`B_P, B_{P_-}, B_{P_+}`,
    :math:`KL(P_-(\cdot|s)\|P_+(\cdot|s))`, :math:`KL(P_-(\cdot|s)\|P(\cdot|s))` and
    :math:`\log P_-(s)/P_+(s)` after each prefix (index t = number of prompt sentences seen).
    """
    log_prior, neg, prompts, lengths, la, l1a = _prep(prior, neg, prompts, lengths)
    N, T = prompts.shape
    M = log_prior.shape[0]
    out = [np.full((N, M, T + 1), np.nan), np.full((N, M, T + 1), np.nan)]
    out += [np.full((N, T + 1), np.nan) for _ in range(6)]
    emit = np.ascontiguousarray(emit, dtype=np.float64)
    e_idx, e_cnt = _sparse_emission(emit)
    # few prompts: the serial kernel (thread start-up costs more than it saves)
    kern = _prefix_stats_nb if N >= 16 * numba.get_num_threads() else _prefix_stats_serial
    kern(log_prior, np.ascontiguousarray(init, dtype=np.float64),
                     np.ascontiguousarray(trans, dtype=np.float64), emit, e_idx, e_cnt,
                     np.ascontiguousarray(scores, dtype=np.float64), neg, prompts, lengths,
                     la, l1a, *out)
    return PrefixStats(*out)


# ----------------------------------------------------------------------------- numpy baseline


def _lse(a, axis):
    mx = np.max(a, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(mx, axis) + np.log(np.sum(np.exp(a - mx), axis=axis))


def _kl_rows(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return np.maximum(terms.sum(-1), 0.0)


def prefix_stats_numpy(prior, init, trans, emit, scores, neg, prompts, lengths=None) -> PrefixStats:
    """Same as :func:`prefix_stats`, vectorised with numpy over prompts and components.

    The baseline of ``benchmarks/bench_beb.py`` (a Python loop over time steps only).
    """
    log_prior, neg, prompts, lengths, la, l1a = _prep(prior, neg, prompts, lengths)
    init, trans, emit = (np.asarray(x, dtype=np.float64) for x in (init, trans, emit))
    scores = np.asarray(scores, dtype=np.float64)
    N, T = prompts.shape
    M = log_prior.shape[0]
    q = np.broadcast_to(init, (N,) + init.shape).copy()  # (N, M, K)
    logp = np.zeros((N, M))
    res = {k: np.full((N, T + 1), np.nan) for k in ("bp", "bm", "bpl", "klmp", "klmf", "lr")}
    o_logp = np.full((N, M, T + 1), np.nan)
    o_lpost = np.full((N, M, T + 1), np.nan)
    neg_inf = np.where(neg, 0.0, -np.inf)
    pos_inf = np.where(neg, -np.inf, 0.0)
    m_idx = np.arange(M)
    for t in range(T + 1):
        live = lengths >= t
        pnext = np.einsum("nmk,mks->nms", q, emit)  # (N, M, S)
        a = log_prior + logp
        l_neg = _lse(a + neg_inf, 1)
        l_pos = _lse(a + pos_inf, 1)
        l_all = np.logaddexp(l_neg, l_pos)
        w = np.exp(a - l_all[:, None])
        with np.errstate(invalid="ignore"):
            wn = np.exp(a + neg_inf - l_neg[:, None])
            wp = np.exp(a + pos_inf - l_pos[:, None])
        bmean = pnext @ scores  # (N, M)
        pm = np.einsum("nm,nms->ns", wn, pnext)
        pp = np.einsum("nm,nms->ns", wp, pnext)
        pf = np.einsum("nm,nms->ns", w, pnext)
        vals = dict(bp=(w * bmean).sum(1), bm=(wn * bmean).sum(1), bpl=(wp * bmean).sum(1),
                    klmp=_kl_rows(pm, pp), klmf=_kl_rows(pm, pf), lr=(l_neg - la) - (l_pos - l1a))
        for k, val in vals.items():
            res[k][live, t] = val[live]
        o_logp[live, :, t] = logp[live]
        o_lpost[live, :, t] = (a - l_all[:, None])[live]
        if t == T:
            break
        s = np.where(live & (lengths > t), prompts[:, t], 0)
        v = q * emit[m_idx[None, :], :, s[:, None]]  # (N, M, K): q(z) E_m(z, s_t)
        c = v.sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            qn = np.einsum("nmk,mkj->nmj", v / c[..., None], trans)
            upd = (lengths > t)[:, None]
            logp = np.where(upd, logp + np.log(c), logp)
        q = np.where(upd[..., None] & (c[..., None] > 0), qn, q)
    return PrefixStats(o_logp, o_lpost, res["bp"], res["bm"], res["bpl"], res["klmp"],
                       res["klmf"], res["lr"])


# ----------------------------------------------------------------------------- slow exact twin


def _slow_joint(init, trans, emit, seq):
    """P_m(seq) by enumerating every hidden path z_1..z_t (exponential; tiny models only)."""
    K = len(init)
    if len(seq) == 0:
        return 1.0
    total = 0.0
    for path in itertools.product(range(K), repeat=len(seq)):
        p = init[path[0]] * emit[path[0]][seq[0]]
        for i in range(1, len(seq)):
            p *= trans[path[i - 1]][path[i]] * emit[path[i]][seq[i]]
        total += p
    return total


def reference_prefix_stats(prior, init, trans, emit, scores, neg, prompt) -> dict:
    """Slow twin of :func:`prefix_stats` for ONE prompt, straight from the definitions.

    Every conditional is a ratio of whole-sequence probabilities of the mixture,
    :math:`P(s'|s) = P(s s') / P(s)`, each computed by summing over all hidden paths; no forward
    recursion, no log space. Returns lists indexed by prefix length t.
    """
    M = len(prior)
    S = len(scores)
    neg_ids = [m for m in range(M) if neg[m]]
    pos_ids = [m for m in range(M) if not neg[m]]
    alpha = sum(prior[m] for m in neg_ids)
    out = {k: [] for k in ("p_m", "post", "b_p", "b_minus", "b_plus", "kl_minus_plus",
                           "kl_minus_full", "ratio")}
    for t in range(len(prompt) + 1):
        pre = list(prompt[:t])
        p_pre = [_slow_joint(init[m], trans[m], emit[m], pre) for m in range(M)]
        p_ext = [[_slow_joint(init[m], trans[m], emit[m], pre + [s]) for s in range(S)]
                 for m in range(M)]

        def mix(ids, p_pre=p_pre, p_ext=p_ext):
            den = sum(prior[m] * p_pre[m] for m in ids)
            return [sum(prior[m] * p_ext[m][s] for m in ids) / den for s in range(S)]

        P, Pm, Pp = mix(range(M)), mix(neg_ids), mix(pos_ids)
        total = sum(prior[m] * p_pre[m] for m in range(M))

        def kl(p, q):
            return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)

        out["p_m"].append(p_pre)
        out["post"].append([prior[m] * p_pre[m] / total for m in range(M)])
        out["b_p"].append(sum(P[s] * scores[s] for s in range(S)))
        out["b_minus"].append(sum(Pm[s] * scores[s] for s in range(S)))
        out["b_plus"].append(sum(Pp[s] * scores[s] for s in range(S)))
        out["kl_minus_plus"].append(kl(Pm, Pp))
        out["kl_minus_full"].append(kl(Pm, P))
        num = sum(prior[m] * p_pre[m] for m in neg_ids) / alpha
        den = sum(prior[m] * p_pre[m] for m in pos_ids) / (1 - alpha)
        out["ratio"].append(num / den)
    return out


# ----------------------------------------------------------------------------- beliefs, sampling


@njit(cache=True)
def _forward_nb(init, trans, emit, prompts, lengths, o_logp, o_q):
    M, K = init.shape
    v = np.empty(K)
    for n in range(prompts.shape[0]):
        q = init.copy()
        logp = np.zeros(M)
        for t in range(lengths[n]):
            _advance(q, logp, trans, emit, prompts[n, t], v)
        o_logp[n] = logp
        o_q[n] = q


def forward_beliefs(init, trans, emit, prompts, lengths=None):
    """Per-component :math:`\\log P_m(s)` (N, M) and predictive hidden-state vectors (N, M, K)."""
    prompts = np.atleast_2d(np.asarray(prompts, dtype=np.int64))
    if lengths is None:
        lengths = np.full(prompts.shape[0], prompts.shape[1], dtype=np.int64)
    M, K = np.shape(init)
    o_logp = np.empty((prompts.shape[0], M))
    o_q = np.empty((prompts.shape[0], M, K))
    _forward_nb(np.ascontiguousarray(init, dtype=np.float64),
                np.ascontiguousarray(trans, dtype=np.float64),
                np.ascontiguousarray(emit, dtype=np.float64), prompts,
                np.asarray(lengths, dtype=np.int64), o_logp, o_q)
    return o_logp, o_q


def next_sentence_dists(q, emit):
    """:math:`P_m(\\cdot|s) = \\sum_z q_m(z) E_m(z, \\cdot)` for beliefs ``q`` (..., M, K)."""
    return np.einsum("...mk,mks->...ms", q, emit)


@njit(cache=True)
def _draw(p, u):
    acc = 0.0
    for i in range(p.shape[0]):
        acc += p[i]
        if u < acc:
            return i
    for i in range(p.shape[0] - 1, -1, -1):  # round-off: last index with mass
        if p[i] > 0.0:
            return i
    return p.shape[0] - 1


@njit(cache=True)
def _sample_nb(u_comp, u, comp_w, q0, trans, emit, o_seq, o_comp):
    N, T = o_seq.shape
    for n in range(N):
        m = _draw(comp_w[n], u_comp[n])
        o_comp[n] = m
        z = _draw(q0[n, m], u[n, 0, 0])
        for t in range(T):
            if t > 0:
                z = _draw(trans[m, z], u[n, t, 0])
            o_seq[n, t] = _draw(emit[m, z], u[n, t, 1])


def sample_sequences(rng: np.random.Generator, comp_w, q0, trans, emit, length: int):
    r"""Sample ``N`` continuations of length ``length`` from a mixture of HMMs.

    ``comp_w`` (N, M) are the (posterior) component weights and ``q0`` (N, M, K) the predictive
    hidden-state vectors (e.g. from :func:`forward_beliefs`); sampling from :math:`P_-(\cdot|s_0)`
    means ``comp_w`` restricted to the ``neg`` components. Returns (seq (N, length), comp (N,)).
    """
    comp_w = np.ascontiguousarray(comp_w, dtype=np.float64)
    N = comp_w.shape[0]
    u_comp = rng.random(N)
    u = rng.random((N, max(length, 1), 2))
    o_seq = np.empty((N, length), dtype=np.int64)
    o_comp = np.empty(N, dtype=np.int64)
    _sample_nb(u_comp, u, comp_w, np.ascontiguousarray(q0, dtype=np.float64),
               np.ascontiguousarray(trans, dtype=np.float64),
               np.ascontiguousarray(emit, dtype=np.float64), o_seq, o_comp)
    return o_seq, o_comp


# ----------------------------------------------------------------------------- adversarial search


@njit(cache=True)
def _log_ratio_of(logp, log_prior, neg, log_alpha, log_1m_alpha):
    a = log_prior + logp
    return (_lse_masked(a, neg, True) - log_alpha) - (_lse_masked(a, neg, False) - log_1m_alpha)


@njit(cache=True)
def _beam_nb(log_prior, init, trans, emit, neg, prefix, length, width, log_alpha, log_1m_alpha):
    M, K = init.shape
    S = emit.shape[2]
    v = np.empty(K)
    q0 = init.copy()
    lp0 = np.zeros(M)
    for t in range(prefix.shape[0]):
        _advance(q0, lp0, trans, emit, prefix[t], v)
    qs = np.empty((width, M, K))
    lps = np.empty((width, M))
    seqs = np.zeros((width, max(length, 1)), dtype=np.int64)
    qs[0] = q0
    lps[0] = lp0
    nb = 1
    cand = np.empty(width * S)
    cand_lp = np.empty((width * S, M))
    for t in range(length):
        for b in range(nb):
            for s in range(S):
                lp = cand_lp[b * S + s]
                for m in range(M):
                    c = 0.0
                    for z in range(K):
                        c += qs[b, m, z] * emit[m, z, s]
                    lp[m] = lps[b, m] + (math.log(c) if c > 0.0 else -np.inf)
                r = _log_ratio_of(lp, log_prior, neg, log_alpha, log_1m_alpha)
                cand[b * S + s] = r if not math.isnan(r) else -np.inf
        order = np.argsort(-cand[: nb * S], kind="mergesort")
        nnew = min(width, nb * S)
        new_q = np.empty((nnew, M, K))
        new_lp = np.empty((nnew, M))
        new_seq = np.zeros((nnew, seqs.shape[1]), dtype=np.int64)
        for i in range(nnew):
            b = order[i] // S
            s = order[i] % S
            new_q[i] = qs[b]
            new_lp[i] = lps[b]
            _advance(new_q[i], new_lp[i], trans, emit, s, v)
            new_seq[i] = seqs[b]
            new_seq[i, t] = s
        nb = nnew
        qs[:nb] = new_q
        lps[:nb] = new_lp
        seqs[:nb] = new_seq
    best = _log_ratio_of(lps[0], log_prior, neg, log_alpha, log_1m_alpha)
    return seqs[0, :length].copy(), best


def log_ratio_beam_search(prior, init, trans, emit, neg, length: int, width: int = 8,
                          prefix=None):
    r"""Adversarial prompt search: beam search for :math:`\arg\max_s \log P_-(s_0 s)/P_+(s_0 s)`.

    ``width=1`` is greedy. ``prefix`` (:math:`s_0`, e.g. an aligning prefix for T2) is observed
    first and kept. Returns (sentence ids of the continuation (length,), its total log-ratio).
    """
    prior = np.asarray(prior, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.bool_)
    alpha = float(prior[neg].sum())
    with np.errstate(divide="ignore"):
        log_prior = np.log(prior)
    prefix = np.zeros(0, np.int64) if prefix is None else np.asarray(prefix, dtype=np.int64)
    return _beam_nb(log_prior, np.ascontiguousarray(init, dtype=np.float64),
                    np.ascontiguousarray(trans, dtype=np.float64),
                    np.ascontiguousarray(emit, dtype=np.float64), neg, prefix, int(length),
                    int(width), math.log(alpha), math.log1p(-alpha))


@njit(cache=True)
def _markov_dp_nb(r0, R, length):
    S = R.shape[0]
    V = r0.copy()
    back = np.zeros((max(length, 1), S), dtype=np.int64)
    for t in range(1, length):
        Vn = np.full(S, -np.inf)
        for j in range(S):
            for i in range(S):
                x = V[i] + R[i, j]
                if x > Vn[j]:
                    Vn[j] = x
                    back[t, j] = i
        V = Vn
    seq = np.empty(length, dtype=np.int64)
    j = int(np.argmax(V))
    best = V[j]
    for t in range(length - 1, -1, -1):
        seq[t] = j
        j = back[t, j]
    return seq, best


def markov_max_log_ratio(init_minus, trans_minus, init_plus, trans_plus, length: int,
                         start=None):
    r"""Exact :math:`\max_{s_{1..n}} \log P_-(s)/P_+(s)` for two Markov chains (Viterbi DP).

    :math:`\log P_-(s)/P_+(s) = r_0(s_1) + \sum_t R(s_{t-1}, s_t)` with
    :math:`R = \log A_-/A_+` and :math:`r_0 = \log \pi_-/\pi_+`; with ``start`` (last sentence of
    a prefix) the first term is :math:`R(\mathrm{start}, s_1)`. Returns (argmax sequence, max).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.log(trans_minus) - np.log(trans_plus)
        r0 = np.log(init_minus) - np.log(init_plus) if start is None else R[int(start)]
    R = np.where(np.isnan(R), -np.inf, R)
    r0 = np.where(np.isnan(r0), -np.inf, r0)
    if length < 1:
        return np.zeros(0, np.int64), 0.0
    return _markov_dp_nb(np.ascontiguousarray(r0), np.ascontiguousarray(R), int(length))


@njit(cache=True)
def _markov_values_nb(r0, R, max_len):
    S = R.shape[0]
    V = np.empty((max_len, S))
    V[0] = r0
    for t in range(1, max_len):
        for j in range(S):
            best = -np.inf
            for i in range(S):
                x = V[t - 1, i] + R[i, j]
                if x > best:
                    best = x
            V[t, j] = best
    return V


def markov_dp_values(init_minus, trans_minus, init_plus, trans_plus, max_len: int, start=None):
    r"""All Viterbi values at once: ``V[L-1, j]`` = max log-ratio of a length-L prompt ending in j.

    Same recursion as :func:`markov_max_log_ratio`; ``max_j V[L-1, j]`` is the best length-L
    adversarial prompt's log-ratio, for every ``L <= max_len`` in one pass.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.log(trans_minus) - np.log(trans_plus)
        r0 = np.log(init_minus) - np.log(init_plus) if start is None else R[int(start)]
    R = np.where(np.isnan(R), -np.inf, R)
    r0 = np.where(np.isnan(r0), -np.inf, r0)
    return _markov_values_nb(np.ascontiguousarray(r0), np.ascontiguousarray(R), int(max_len))


def reference_max_log_ratio(prior, init, trans, emit, neg, length: int):
    """Slow twin of the prompt searches: the max log-ratio over ALL S^length prompts."""
    M = len(prior)
    S = np.shape(emit)[2]
    alpha = sum(prior[m] for m in range(M) if neg[m])
    best, arg = -math.inf, None
    for seq in itertools.product(range(S), repeat=length):
        p = [_slow_joint(init[m], trans[m], emit[m], list(seq)) for m in range(M)]
        num = sum(prior[m] * p[m] for m in range(M) if neg[m]) / alpha
        den = sum(prior[m] * p[m] for m in range(M) if not neg[m]) / (1 - alpha)
        r = math.inf if den == 0 and num > 0 else (-math.inf if num == 0 else math.log(num / den))
        if r > best:
            best, arg = r, seq
    return np.array(arg, dtype=np.int64), best


# ----------------------------------------------------------------------------- small helpers


def kl_categorical(p, q, axis=-1):
    """:math:`\\sum_i p_i \\log p_i/q_i` along ``axis`` (inf where q = 0 < p)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return np.maximum(terms.sum(axis), 0.0)


def best_of_n_expectation(p_next, scores, n: int):
    r"""Behaviour expectation under best-of-n: :math:`E[\max_{i\le n} B(s_i)]`, :math:`s_i` iid.

    Exact for a categorical next-sentence law ``p_next`` (..., S): with :math:`F` the CDF of
    :math:`B(s)` over distinct score values :math:`v_1<\dots<v_J`,
    :math:`E\max = \sum_j v_j (F(v_j)^n - F(v_{j-1})^n)` (paper, T4 setting).
    """
    p_next = np.asarray(p_next, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    vals, inv = np.unique(scores, return_inverse=True)
    mass = np.zeros(p_next.shape[:-1] + (vals.size,))
    for j in range(vals.size):
        mass[..., j] = p_next[..., inv == j].sum(-1)
    F = np.clip(np.cumsum(mass, -1), 0.0, 1.0)
    Fn = F ** n
    Fprev = np.concatenate([np.zeros(Fn.shape[:-1] + (1,)), Fn[..., :-1]], -1)
    return ((Fn - Fprev) * vals).sum(-1)
