r"""BEB prompting studies on exact finite-state mixtures (Wolf et al., arXiv 2304.11082).

Every study draws Markov-pair mixtures :math:`P = \alpha P_- + (1-\alpha) P_+` (see
:mod:`theorylab.simulations.beb_model`), for which :math:`\gamma`, :math:`\beta` and every
:math:`B_P(s)` are exact, and compares measured prompt lengths with the paper's bounds
(:mod:`theorylab.theory.beb`):

* :class:`BoundStudy` (``beb-bounds``): T1 prompt (Viterbi-optimal) of the bound's length gives
  :math:`B_P(s^*) < \gamma + \varepsilon`; Eq. 7 bounds :math:`KL(P_-(\cdot|s)\|P(\cdot|s))`.
* :class:`SigmoidStudy` (``beb-misalignment``): the mean posterior weight of :math:`P_+` after
  :math:`P_-`-sampled prompts is a reverse sigmoid; its centre vs :math:`\log 1/\alpha`.
* :class:`LengthStudy` (``beb-lengths``): measured T1/T2/T3/T4/T5 lengths beside the bounds.
* :class:`BetaBiasStudy` (``beb-beta-bias``): :math:`\beta_{worst} \le \beta_{def} \le
  \beta_{paper}`, and what the paper's estimate does to the predicted length.
* :class:`RLHFStudy` (``beb-rlhf``): KL-regularised reward maximisation
  :math:`\pi \propto P e^{r/\beta_{RL}}` applied to a mixture; how :math:`\alpha, \beta, \gamma`
  and the needed prompt length move.

For a Markov pair, :math:`B_P` after a prompt depends only on the prompt's log-ratio
:math:`\ell = \log P_-(s)/P_+(s)` and its last sentence :math:`j`:
:math:`w = \sigma(\log\frac{\alpha}{1-\alpha} + \ell)`, :math:`P(\cdot|s) = w A_-[j] +
(1-w) A_+[j]` (:func:`markov_pair_next`; tested equal to the general kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from theorylab.constraints import NONNEGATIVE, SEED, UNIT, UNIT_OPEN, Int, Real, Tuple
from theorylab.kernels import beb as K
from theorylab.seeding import rng_for
from theorylab.simulations.beb_model import (
    FiniteStateMixture,
    decompose,
    persona_pair,
    random_hmm_mixture,
    random_markov_pair,
)
from theorylab.study import Study
from theorylab.theory import beb as T
from theorylab.validation import check_int, check_real

__all__ = ["BoundStudy", "SigmoidStudy", "LengthStudy", "BetaBiasStudy", "RLHFStudy",
           "markov_pair_next", "draw_pair", "rlhf_tilt", "first_true"]


# ----------------------------------------------------------------------------- helpers


def draw_pair(rng: np.random.Generator) -> FiniteStateMixture:
    """A random Markov pair with random size, alpha in [1e-3, 0.3], tilt and concentration."""
    S = int(rng.choice([4, 8, 12]))
    alpha = float(10 ** rng.uniform(-3, math.log10(0.3)))
    return random_markov_pair(rng, n_sentences=S, alpha=alpha, tilt=float(rng.uniform(1.0, 3.0)),
                              concentration=float(rng.choice([0.5, 1.0, 2.0])))


def markov_pair_next(model: FiniteStateMixture, log_ratio, last):
    """(w, P(.|s)) of a Markov pair after a prompt with log-ratio ``log_ratio``, last sentence ``last``.

    ``last = -1`` means the empty prompt (next law = initial laws).
    """
    im, Am = model.side(True)
    ip, Ap = model.side(False)
    a = model.alpha
    lr = np.asarray(log_ratio, dtype=float)
    w = 1.0 / (1.0 + np.exp(-(math.log(a / (1 - a)) + lr)))
    last = np.asarray(last)
    rows_m = np.where((last >= 0)[..., None], Am[np.maximum(last, 0)], im)
    rows_p = np.where((last >= 0)[..., None], Ap[np.maximum(last, 0)], ip)
    return w, w[..., None] * rows_m + (1 - w[..., None]) * rows_p


def first_true(mask) -> int:
    """Index of the first True (the measured length); -1 if none."""
    idx = np.flatnonzero(np.asarray(mask))
    return int(idx[0]) if idx.size else -1


def _sides(model):
    im, Am = model.side(True)
    ip, Ap = model.side(False)
    return im, Am, ip, Ap


def _step_log_ratios(model, seq):
    """Per-step log P-(s_t|s_<t)/P+(s_t|s_<t) of sequences (N, T) of a Markov pair."""
    im, Am, ip, Ap = _sides(model)
    seq = np.atleast_2d(seq)
    out = np.empty(seq.shape)
    out[:, 0] = np.log(im[seq[:, 0]]) - np.log(ip[seq[:, 0]])
    out[:, 1:] = np.log(Am[seq[:, :-1], seq[:, 1:]]) - np.log(Ap[seq[:, :-1], seq[:, 1:]])
    return out


def _gamma_best_of_n(model, n_best):
    """sup_s best-of-n behaviour of P- (exact for a Markov pair: initial law and every row)."""
    im, Am, _, _ = _sides(model)
    rows = np.vstack([im[None], Am])
    return float(K.best_of_n_expectation(rows, model.scores, n_best).max())


def _stationary(A):
    vals, vecs = np.linalg.eig(A.T)
    v = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    return v / v.sum()


def beta_stationary(model) -> float:
    """Long-run mean per-sentence KL(P-||P+) along P- (the growth rate of E log-ratio)."""
    _, Am, _, Ap = _sides(model)
    return float(_stationary(Am) @ K.kl_categorical(Am, Ap))


# ----------------------------------------------------------------------------- T1 + Eq. 7


@dataclass(frozen=True)
class BoundStudy(Study):
    """T1 and Eq. 7 never violated, over many random Markov-pair mixtures (exact kernel)."""

    name: ClassVar[str] = "beb-bounds"
    n_models: int = 300                  # random mixtures (sizes, alpha, tilts all random)
    epsilons: tuple = (0.1, 0.01, 0.001)  # misalignment margins of T1
    max_len: int = 120                   # lengths checked against Eq. 7 (0..max_len)
    seed: int = 0

    constraints: ClassVar = {
        "n_models": Int(1, 100_000),         # one unit (one random mixture) each
        "epsilons": Tuple(UNIT_OPEN, max_len=100),
        "max_len": Int(1, 100_000),          # Eq. 7 tables are (max_len, S) floats
        "seed": SEED,
    }

    def units(self):
        return [{"model": i} for i in range(self.n_models)]

    def quick(self):
        return self.replace(n_models=40, max_len=60)

    def run_unit(self, unit, ctx=None):
        rng = rng_for(self.seed, "bounds", unit["model"])
        model = draw_pair(rng)
        dec = decompose(model, rng, n_samples=300)
        im, Am, ip, Ap = _sides(model)
        row = dict(alpha=model.alpha, n_sentences=model.n_sentences, gamma=dec.gamma,
                   beta_def=dec.beta_def, beta_worst=dec.beta_worst)
        for k, eps in enumerate(self.epsilons):
            L = max(1, math.ceil(T.t1_length(model.alpha, dec.beta_def, eps)))
            seq, lr = K.markov_max_log_ratio(im, Am, ip, Ap, L)
            st = model.stats(seq[None])  # exact kernel on the actual prompt
            b = float(st.b_p[0, -1])
            row[f"t1_len_{k}"] = L
            row[f"t1_log_ratio_per_sentence_{k}"] = lr / L
            row[f"t1_excess_{k}"] = (b - dec.gamma) / eps  # T1 says < 1 (proof: <= (1-a)/2)
        # Eq. 7 along the Viterbi-optimal prompts of every length 1..max_len
        V = K.markov_dp_values(im, Am, ip, Ap, self.max_len)
        lens = np.arange(1, self.max_len + 1)
        j = V.argmax(1)
        lr = V[lens - 1, j]
        w, p_next = markov_pair_next(model, lr, j)
        kl = K.kl_categorical(Am[j], p_next)
        bound = np.array([T.eq7_kl_bound(model.alpha, dec.beta_def, n) for n in lens])
        sharp = np.log1p((1 - model.alpha) / model.alpha * np.exp(-lr))
        row["eq7_max_violation"] = float(np.max(kl - bound))
        row["eq7_sharp_max_violation"] = float(np.max(kl - sharp))
        row["eq7_min_slack_ratio"] = float(np.min(np.where(kl > 1e-300, bound / np.maximum(kl, 1e-300), np.inf)))
        row.update(self._hmm(unit))
        return row

    def _hmm(self, unit):
        """The same T1 check on a random mixture of HMMs (beam-searched prompt, sampled beta).

        beta is not exact here, so T1's premise log P-(s)/P+(s) >= beta |s| is checked on the
        prompt found (``hmm_premise_k``); the key lemma with the hull bound on gamma,
        B_P(s) <= gamma + 2 (1-a)/a e^{-log-ratio}, must hold on every prompt regardless.
        """
        rng = rng_for(self.seed, "bounds-hmm", unit["model"])
        model = random_hmm_mixture(rng, n_sentences=int(rng.integers(3, 7)),
                                   n_states=int(rng.integers(1, 4)), n_neg=int(rng.integers(1, 3)),
                                   n_pos=int(rng.integers(1, 3)),
                                   alpha=float(10 ** rng.uniform(-3, math.log10(0.3))))
        dec = decompose(model, rng, horizon=12, n_samples=300)
        row = dict(hmm_alpha=model.alpha, hmm_gamma=dec.gamma, hmm_beta_def=dec.beta_def)
        lemma = -np.inf
        for k, eps in enumerate(self.epsilons):
            L = min(400, max(1, math.ceil(T.t1_length(model.alpha, dec.beta_def, eps))))
            seq, lr = K.log_ratio_beam_search(model.prior, model.init, model.trans, model.emit,
                                              model.neg, L, width=8)
            b = float(model.stats(seq[None]).b_p[0, -1])
            row[f"hmm_t1_excess_{k}"] = (b - dec.gamma) / eps
            row[f"hmm_premise_{k}"] = bool(lr >= dec.beta_def * L)
            slack = 2 * (1 - model.alpha) / model.alpha * math.exp(-lr)
            lemma = max(lemma, b - (dec.gamma + slack))
        row["hmm_lemma_max_violation"] = float(lemma)
        return row


# ----------------------------------------------------------------------------- reverse sigmoid


@dataclass(frozen=True)
class SigmoidStudy(Study):
    r"""Misalignment curve vs prompt length for prompts sampled from :math:`P_-` (paper Fig. 3).

    One persona pair (:func:`persona_pair`, :math:`B\in\{0,1\}`) per ``model_seed``; each unit
    sets :math:`\log 1/\alpha`, samples ``n_prompts`` :math:`P_-` prompts and records the mean
    aligned fraction :math:`B_P(s)` and mean :math:`1-w(s)` after each length, and the centre
    (first length where mean :math:`1-w \le 1/2`, linearly interpolated).
    """

    name: ClassVar[str] = "beb-misalignment"
    version: ClassVar[int] = 2  # 2: Eq. 7 on every sampled prefix; beta from independent samples
    log_inv_alphas: tuple = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0)
    n_reps: int = 6
    n_prompts: int = 400
    max_len: int = 80
    rho: float = 0.3          # P+ puts mass rho on bad sentences
    mismatch: float = 0.5     # how much P+'s bad rows differ from P-'s (makes KL state-dependent)
    n_sentences: int = 12
    seed: int = 0

    constraints: ClassVar = {
        "log_inv_alphas": Tuple(Real(0, 700, lo_open=True), max_len=100),  # e^-745 underflows
        "n_reps": Int(1, 10_000),
        # the exact kernel keeps a few (n_prompts, max_len + 1) tables and (n_prompts, 2, S)
        # beliefs per step: 10^4 x 1001 x 8 B = 80 MB each at the bounds
        "n_prompts": Int(2, 10_000),
        "max_len": Int(2, 1000),
        "rho": UNIT_OPEN,
        "mismatch": UNIT,
        "n_sentences": Int(2, 200),
        "seed": SEED,
    }

    def units(self):
        return [{"log_inv_alpha": float(x), "rep": r} for x in self.log_inv_alphas
                for r in range(self.n_reps)]

    def quick(self):
        return self.replace(n_reps=3, n_prompts=200)

    def model(self, alpha: float) -> FiniteStateMixture:
        rng = rng_for(self.seed, "persona")
        nb = self.n_sentences // 2
        base = persona_pair(rng, nb, self.n_sentences - nb, alpha, self.rho)
        # P+'s bad rows = (1-mismatch) * P-'s rows + mismatch * independent rows (times rho)
        im, Am, ip, Ap = _sides(base)
        S = self.n_sentences
        other = rng.dirichlet(np.ones(nb), size=S + 1)
        rows_m = np.vstack([im[None], Am])
        mix = (1 - self.mismatch) * rows_m[:, :nb] + self.mismatch * other
        rows_p = np.vstack([ip[None], Ap])
        rows_p[:, :nb] = self.rho * mix
        return FiniteStateMixture.markov([alpha, 1 - alpha], [im, rows_p[0]],
                                         [Am, rows_p[1:]], base.scores, [True, False])

    def run_unit(self, unit, ctx=None):
        alpha = math.exp(-unit["log_inv_alpha"])
        model = self.model(alpha)
        rng = rng_for(self.seed, "sigmoid", unit["log_inv_alpha"], unit["rep"])
        seq = model.sample(rng, self.n_prompts, self.max_len, True)
        st = model.stats(seq)
        one_minus_w = 1 - np.exp(st.log_post[:, 0, :])  # component 0 is P-
        f = one_minus_w.mean(0)
        aligned = st.b_p.mean(0)
        below = np.flatnonzero(f <= 0.5)
        if below.size and below[0] > 0:
            k = below[0]
            centre = (k - 1) + (f[k - 1] - 0.5) / (f[k - 1] - f[k])
        else:
            centre = float("nan") if not below.size else 0.0
        beta = beta_stationary(model)
        row = dict(alpha=alpha, centre=float(centre), beta_stat=beta,
                   centre_eq7=T.sigmoid_centre(alpha, beta), **self._eq7_on_prefixes(model, st, beta),
                   **self._beta_sampled(model, unit))
        for n in range(self.max_len + 1):
            row[f"aligned_{n}"] = float(aligned[n])
            row[f"post_plus_{n}"] = float(f[n])
            row[f"kl_full_{n}"] = float(np.mean(st.kl_minus_full[:, n]))
        return row

    def _eq7_on_prefixes(self, model, st, beta) -> dict:
        r"""Eq. 7 as the lemma states it, on every prefix :math:`s` (length 1..max_len) of every
        sampled prompt: :math:`KL(P_-(\cdot|s)\|P(\cdot|s)) \le \log(1 + \frac{1-\alpha}{\alpha}
        P_+(s)/P_-(s))` (sharp: the prompt's own log-ratio), and the :math:`\beta` form
        :math:`\le \log(1 + \frac{1-\alpha}{\alpha}e^{-\beta|s|})` on the prefixes that meet its
        premise :math:`\log P_-(s)/P_+(s) \ge \beta|s|` (``beta`` = the stationary rate)."""
        a = model.alpha
        kl, lr = st.kl_minus_full[:, 1:], st.log_ratio[:, 1:]
        lens = np.arange(1, kl.shape[1] + 1)
        with np.errstate(over="ignore"):
            sharp = np.log1p((1 - a) / a * np.exp(-lr))
        prem = lr >= beta * lens
        curve = np.log1p((1 - a) / a * np.exp(-beta * lens))
        viol_beta = (kl - curve)[prem]
        return {"eq7_sampled_sharp_max_violation": float(np.max(kl - sharp)),
                "eq7_sampled_beta_max_violation": float(viol_beta.max()) if viol_beta.size else -np.inf,
                "eq7_sampled_frac_premise": float(prem.mean())}

    def _beta_sampled(self, model, unit) -> dict:
        r""":math:`\beta` estimated independently of the centre, the paper's way: the mean
        per-sentence :math:`KL(P_-(\cdot|s)\|P_+(\cdot|s))` over prefixes of ``n_prompts``
        fresh :math:`P_-` prompts (their own random stream), with its standard error over prompts."""
        rng = rng_for(self.seed, "sigmoid-beta", unit["log_inv_alpha"], unit["rep"])
        st = model.stats(model.sample(rng, self.n_prompts, self.max_len, True))
        per_prompt = st.kl_minus_plus[:, 1:].mean(1)
        return {"beta_sampled": float(per_prompt.mean()),
                "beta_sampled_se": float(per_prompt.std(ddof=1) / np.sqrt(per_prompt.size))}


# ----------------------------------------------------------------------------- T1..T5 lengths


@dataclass(frozen=True)
class LengthStudy(Study):
    r"""Measured prompt lengths beside the bounds T1-T5, per random Markov pair.

    * t1: first L with :math:`B_P(s^*_L) < \gamma+\varepsilon`, :math:`s^*_L` Viterbi-optimal.
    * t2: ``n_samples`` aligning prefixes :math:`s_0\sim P_+` of length ``s0_len``; per prefix the
      first L of an optimal continuation; the measured length is the :math:`(1-\delta)` quantile.
    * t3: ``n_turns`` answers of length ``answer_len`` sampled from :math:`P_+`; questions split
      a total budget evenly and are optimal segments; measured: first total budget that works
      (quantile over sampled conversations).
    * t4: best-of-n for each ``n_best`` (exact :math:`E\max B`), against :math:`\gamma_n`.
    * t5: prompts sampled from :math:`P_-`; first L where a fraction :math:`\ge 1-\delta`
      misaligns.
    """

    name: ClassVar[str] = "beb-lengths"
    n_models: int = 12
    eps: float = 0.05
    delta: float = 0.2
    s0_len: int = 10
    n_turns: int = 3
    answer_len: int = 5
    n_best: tuple = (1, 4, 16, 64)
    n_samples: int = 200
    max_len: int = 400
    seed: int = 0

    constraints: ClassVar = {
        "n_models": Int(1, 10_000),
        "eps": UNIT_OPEN,
        "delta": UNIT_OPEN,
        "s0_len": Int(1, 1000),
        # T3 draws (n_samples, n_turns, answer_len) uniforms: <= 10^4 x 20 x 100 x 8 B = 160 MB
        "n_turns": Int(1, 20),
        "answer_len": Int(1, 100),
        "n_best": Tuple(Int(1, 10**6), max_len=20),
        "n_samples": Int(1, 10_000),
        # T5 samples (n_samples, max_len) prompts and their log-ratios: 10^4 x 5000 x 8 B = 400 MB
        "max_len": Int(1, 5000),
        "seed": SEED,
    }

    def units(self):
        return [{"theorem": t, "model": m} for m in range(self.n_models)
                for t in ("t1", "t2", "t3", "t4", "t5")]

    def quick(self):
        return self.replace(n_models=4, n_samples=100)

    def _model(self, m):
        rng = rng_for(self.seed, "lengths-model", m)
        model = draw_pair(rng)
        return model, decompose(model, rng, n_samples=1000)

    def run_unit(self, unit, ctx=None):
        model, dec = self._model(unit["model"])
        rng = rng_for(self.seed, "lengths", unit["theorem"], unit["model"])
        base = dict(alpha=model.alpha, gamma=dec.gamma, beta_def=dec.beta_def,
                    beta_worst=dec.beta_worst, beta_prime=dec.beta_prime,
                    sigma_minus=dec.sigma_minus, sigma_plus=dec.sigma_plus)
        fn = getattr(self, "_" + unit["theorem"])
        return {**base, **fn(model, dec, rng)}  # t4 overrides the model columns it changes

    def _ok(self, model, lr, last, gamma):
        w, p = markov_pair_next(model, lr, last)
        return p @ model.scores < gamma + self.eps

    def _t1(self, model, dec, rng):
        im, Am, ip, Ap = _sides(model)
        V = K.markov_dp_values(im, Am, ip, Ap, self.max_len)
        j = V.argmax(1)
        L = first_true(self._ok(model, V[np.arange(self.max_len), j], j, dec.gamma)) + 1
        return dict(measured=L, bound=T.t1_length(model.alpha, dec.beta_def, self.eps))

    def _t2(self, model, dec, rng):
        im, Am, ip, Ap = _sides(model)
        s0 = model.sample(rng, self.n_samples, self.s0_len, False)
        lr0 = _step_log_ratios(model, s0).sum(1)
        Vs = [K.markov_dp_values(im, Am, ip, Ap, self.max_len, start=s) for s in
              range(model.n_sentences)]
        lens = []
        for n in range(self.n_samples):
            V = Vs[s0[n, -1]]
            j = V.argmax(1)
            ok = self._ok(model, lr0[n] + V[np.arange(self.max_len), j], j, dec.gamma)
            L = first_true(ok) + 1
            lens.append(L if L > 0 else np.inf)
        meas = float(np.quantile(lens, 1 - self.delta, method="higher"))
        return dict(measured=meas, bound=T.t2_length(model.alpha, dec.beta_worst, self.eps,
                                                     dec.beta_prime, dec.sigma_plus,
                                                     self.s0_len, self.delta))

    def _t3(self, model, dec, rng):
        im, Am, ip, Ap = _sides(model)
        Vs = [K.markov_dp_values(im, Am, ip, Ap, self.max_len, start=s) for s in
              range(model.n_sentences)]
        V0 = K.markov_dp_values(im, Am, ip, Ap, self.max_len)
        n_q = self.n_turns + 1
        U = rng.random((self.n_samples, self.n_turns, self.answer_len))
        cum_p = np.cumsum(Ap, 1)
        totals = []
        for c in range(self.n_samples):
            found = np.inf
            for Q in range(n_q, self.max_len):
                seg = [Q // n_q + (1 if i < Q % n_q else 0) for i in range(n_q)]
                lr, last = 0.0, -1
                for i, ell in enumerate(seg):
                    V = V0 if last < 0 else Vs[last]
                    jq = int(V[ell - 1].argmax())
                    lr += V[ell - 1, jq]
                    last = jq
                    if i < self.n_turns:  # the model's aligned answer a_i ~ P+(.|last)
                        for t in range(self.answer_len):
                            nxt = min(int(np.searchsorted(cum_p[last], U[c, i, t], "right")),
                                      model.n_sentences - 1)
                            lr += math.log(Am[last, nxt] / Ap[last, nxt])
                            last = nxt
                if self._ok(model, lr, last, dec.gamma):
                    found = Q
                    break
            totals.append(found)
        meas = float(np.quantile(totals, 1 - self.delta, method="higher"))
        bound = T.t3_length(model.alpha, dec.beta_worst, self.eps, dec.beta_prime,
                            dec.sigma_plus, [self.answer_len] * self.n_turns, self.delta)
        return dict(measured=meas, bound=bound)

    def _t4(self, model, dec, rng):
        # best-of-n needs a P- that never says an aligned sentence, else sup_s B_{P-,n}(s) -> 1
        # as n grows and the statement is vacuous: a persona pair with B = -1 (bad) / +1 (good),
        # at this model's alpha; gamma_n = -1 for every n.
        pers = persona_pair(rng, 4, 4, model.alpha, rho=0.3)
        model = FiniteStateMixture(pers.prior, pers.init, pers.trans, pers.emit,
                                   2 * pers.scores - 1, pers.neg)
        dec = decompose(model, rng, n_samples=300)
        im, Am, ip, Ap = _sides(model)
        V = K.markov_dp_values(im, Am, ip, Ap, self.max_len)
        j = V.argmax(1)
        lr = V[np.arange(self.max_len), j]
        w, p = markov_pair_next(model, lr, j)
        out = dict(alpha=model.alpha, gamma=dec.gamma, beta_def=dec.beta_def,
                   beta_worst=dec.beta_worst, beta_prime=np.nan, sigma_minus=np.nan,
                   sigma_plus=np.nan)
        ratios = []
        for nb in self.n_best:
            g = _gamma_best_of_n(model, nb)
            ok = K.best_of_n_expectation(p, model.scores, nb) < g + self.eps
            L = first_true(ok) + 1
            b = T.t4_length(model.alpha, dec.beta_def, self.eps, nb)
            out[f"measured_n{nb}"] = L if L > 0 else np.inf
            out[f"bound_n{nb}"] = b
            out[f"gamma_n{nb}"] = g
            ratios.append(out[f"measured_n{nb}"] / b)
        k = int(np.argmax(ratios))
        out["measured"] = out[f"measured_n{self.n_best[k]}"]
        out["bound"] = out[f"bound_n{self.n_best[k]}"]
        return out

    def _t5(self, model, dec, rng):
        seq = model.sample(rng, self.n_samples, self.max_len, True)
        lr = np.cumsum(_step_log_ratios(model, seq), 1)
        ok = self._ok(model, lr, seq, dec.gamma)  # (N, L): after each length
        frac = ok.mean(0)
        L = first_true(frac >= 1 - self.delta) + 1
        return dict(measured=L if L > 0 else np.inf,
                    bound=T.t5_length(model.alpha, dec.beta_def, self.eps, dec.sigma_minus,
                                      self.delta))


# ----------------------------------------------------------------------------- beta estimators


@dataclass(frozen=True)
class BetaBiasStudy(Study):
    r""":math:`\beta_{worst}` (any prefix), :math:`\beta_{def}` (definition), :math:`\beta_{paper}`
    (pooled sampled estimate from :math:`P_-` prefixes) on random mixtures; the T1 length each
    predicts, and the measured adversarial / sampled-prompt lengths."""

    name: ClassVar[str] = "beb-beta-bias"
    n_models: int = 60
    eps: float = 0.05
    n_samples: int = 2000
    max_len: int = 400
    seed: int = 0

    constraints: ClassVar = {
        "n_models": Int(1, 10_000),
        "eps": UNIT_OPEN,
        # next-sentence laws of n_samples / 4 prompts of every length: (n_samples / 4, max_len, S)
        # floats, 2500 x 2000 x 12 x 8 B = 480 MB at the bounds
        "n_samples": Int(10, 10_000),
        "max_len": Int(2, 2000),
        "seed": SEED,
    }

    def units(self):
        return [{"model": m} for m in range(self.n_models)]

    def quick(self):
        return self.replace(n_models=20, n_samples=600)

    def run_unit(self, unit, ctx=None):
        rng = rng_for(self.seed, "beta-bias", unit["model"])
        model = draw_pair(rng)
        dec = decompose(model, rng, n_samples=self.n_samples)
        seq = model.sample(rng, self.n_samples // 4, self.max_len, True)
        lr = np.cumsum(_step_log_ratios(model, seq), 1)
        w, p = markov_pair_next(model, lr, seq)
        frac = np.mean(p @ model.scores < dec.gamma + self.eps, 0)
        sampled_len = first_true(frac >= 0.5) + 1
        im, Am, ip, Ap = _sides(model)  # shortest Viterbi-optimal prompt that misaligns
        V = K.markov_dp_values(im, Am, ip, Ap, self.max_len)
        j = V.argmax(1)
        _, p_adv = markov_pair_next(model, V[np.arange(self.max_len), j], j)
        adv_len = first_true(p_adv @ model.scores < dec.gamma + self.eps) + 1
        return dict(alpha=model.alpha, gamma=dec.gamma, beta_worst=dec.beta_worst,
                    beta_def=dec.beta_def, beta_paper=dec.beta_paper,
                    beta_stat=beta_stationary(model),
                    t1_worst=T.t1_length(model.alpha, dec.beta_worst, self.eps),
                    t1_def=T.t1_length(model.alpha, dec.beta_def, self.eps),
                    t1_paper=T.t1_length(model.alpha, dec.beta_paper, self.eps),
                    sampled_median_len=sampled_len if sampled_len > 0 else np.inf,
                    adversarial_len=adv_len if adv_len > 0 else np.inf)


# ----------------------------------------------------------------------------- RLHF conjecture


def rlhf_tilt(model: FiniteStateMixture, beta_rl: float, horizon: int) -> FiniteStateMixture:
    r"""KL-regularised reward maximisation :math:`\pi \propto P\,e^{R/\beta_{RL}}` on a Markov pair.

    The reward is additive over sentences, :math:`R(s_{1..H}) = \sum_t B(s_t)`. Since
    :math:`P = \sum_m \pi_m P_m`, :math:`\pi = \sum_m \frac{\pi_m Z_m}{Z}\,\pi_m^{tilt}` with
    :math:`Z_m = E_{P_m} e^{R/\beta_{RL}}` over ``horizon`` sentences: the mixture weights move
    to :math:`\alpha' = \alpha Z_-/(\alpha Z_- + (1-\alpha) Z_+)`; each component becomes the
    Doob h-transform :math:`A'_m(i,j) = A_m(i,j) e^{B_j/\beta_{RL}} h_m(j)/(\lambda_m h_m(i))`
    (Perron root :math:`\lambda_m`, right vector :math:`h_m` of :math:`A_m\,\mathrm{diag}(e^{B/\beta_{RL}})`),
    the long-horizon limit of the exactly tilted chain.
    """
    check_real("rlhf_tilt", "beta_rl", beta_rl, lo=0, lo_open=True)
    check_int("rlhf_tilt", "horizon", horizon, lo=1)
    g = np.exp(model.scores / beta_rl)
    inits, transs, logZ = [], [], []
    for m in range(2):
        A, pi0 = model.trans[m], model.init[m]
        Mx = A * g[None, :]
        vals, vecs = np.linalg.eig(Mx)
        k = int(np.argmax(np.real(vals)))
        lam, h = float(np.real(vals[k])), np.abs(np.real(vecs[:, k]))
        transs.append(Mx * h[None, :] / (lam * h[:, None]))
        i0 = pi0 * g * h
        inits.append(i0 / i0.sum())
        v = pi0 * g  # Z_m(H) = pi0 diag(g) (A diag(g))^{H-1} 1, normalised as we go
        lz = math.log(v.sum())
        v = v / v.sum()
        for _ in range(horizon - 1):
            v = v @ Mx
            lz += math.log(v.sum())
            v = v / v.sum()
        logZ.append(lz)
    transs = [t / t.sum(1, keepdims=True) for t in transs]
    m_neg = int(np.flatnonzero(model.neg)[0])
    la = math.log(model.alpha) + logZ[m_neg]
    lb = math.log(1 - model.alpha) + logZ[1 - m_neg]
    alpha_new = 1.0 / (1.0 + math.exp(lb - la))
    prior = np.where(model.neg, alpha_new, 1 - alpha_new)
    return FiniteStateMixture.markov(prior, np.stack(inits), np.stack(transs), model.scores,
                                     model.neg)


@dataclass(frozen=True)
class RLHFStudy(Study):
    r"""RLHF conjecture: tilt a mixture by :math:`e^{B/\beta_{RL}}` and re-measure :math:`\alpha,
    \beta, \gamma` and the adversarial prompt length (``beta_rl = 0`` encodes "no RLHF")."""

    name: ClassVar[str] = "beb-rlhf"
    beta_rls: tuple = (0.0, 8.0, 4.0, 2.0, 1.0, 0.5)
    n_models: int = 12
    horizon: int = 20
    eps: float = 0.05
    max_len: int = 2000
    seed: int = 0

    constraints: ClassVar = {
        "beta_rls": Tuple(NONNEGATIVE, max_len=100),   # 0 encodes "no RLHF"
        "n_models": Int(1, 10_000),
        "horizon": Int(1, 10**6),            # time only (a loop of S-vector products)
        "eps": UNIT_OPEN,
        "max_len": Int(2, 100_000),          # (max_len, S) DP table
        "seed": SEED,
    }

    def units(self):
        return [{"beta_rl": float(b), "model": m} for b in self.beta_rls
                for m in range(self.n_models)]

    def quick(self):
        return self.replace(n_models=4)

    def run_unit(self, unit, ctx=None):
        rng = rng_for(self.seed, "rlhf-model", unit["model"])
        base = random_markov_pair(rng, n_sentences=8, alpha=0.05, tilt=1.5)
        model = base if unit["beta_rl"] == 0 else rlhf_tilt(base, unit["beta_rl"], self.horizon)
        dec = decompose(model, rng_for(self.seed, "rlhf", unit["model"]), n_samples=300)
        im, Am, ip, Ap = _sides(model)
        gamma = dec.gamma
        row = dict(alpha=model.alpha, log_inv_alpha=-math.log(model.alpha), gamma=gamma,
                   beta_def=dec.beta_def, beta_worst=dec.beta_worst,
                   beta_stat=beta_stationary(model), b_plus_stat=float(
                       _stationary(Ap) @ (Ap @ model.scores)))
        if gamma >= 0:  # no longer negatively distinguishable: T1 does not apply
            row.update(t1_bound=np.inf, measured=np.inf, misalignable=False)
            return row
        V = K.markov_dp_values(im, Am, ip, Ap, self.max_len)
        j = V.argmax(1)
        w, p = markov_pair_next(model, V[np.arange(self.max_len), j], j)
        L = first_true(p @ model.scores < gamma + self.eps) + 1
        row.update(t1_bound=T.t1_length(model.alpha, dec.beta_def, self.eps),
                   measured=L if L > 0 else np.inf, misalignable=True)
        return row

