r"""BEB bounds as sympy derivations, each with ``verify()``; numeric forms for the simulations.

Wolf, Wies, Avnery, Levine, Shashua, "Fundamental Limitations of Alignment in Large Language
Models" (arXiv 2304.11082, ICML 2024). Notation: :math:`P = \alpha P_- + (1-\alpha)P_+`,
:math:`p_\mp = P_\mp(s_0)`, posterior weight :math:`w = \alpha p_-/(\alpha p_- + (1-\alpha)p_+)`,
:math:`c = \log 1/\alpha + \log 1/\varepsilon + \log 4`.

Derivations (each a :class:`Derivation` of steps; a step is an identity ``expr == 0`` or an
inequality ``expr >= 0`` under the stated domain):

* :func:`key_lemma` -- :math:`|B_P(s_0) - B_{P_-}(s_0)| \le 2\frac{1-\alpha}{\alpha}
  \frac{P_+(s_0)}{P_-(s_0)}` (paper, Lemma in the proof of Thm 1).
* :func:`t1` -- with :math:`\log P_-(s)/P_+(s) \ge \beta|s|` and :math:`|s| = c/\beta`,
  :math:`B_P(s) \le \gamma + (1-\alpha)\varepsilon/2 < \gamma + \varepsilon` (Thm 1).
* :func:`t2`, :func:`t3` -- aligning prefix / conversation: Chebyshev on the :math:`P_+` prefix's
  log-ratio and the length identities (Thms 2, 3).
* :func:`t4` -- best-of-n: :math:`\mathrm{TV}(P^{\otimes n}, P_-^{\otimes n}) \le n(1-w)`
  adds :math:`\log n` (Thm 4).
* :func:`t5` -- a random :math:`P_-` prompt of length :math:`> \max\{2c/\beta, 4\sigma^2/(\beta^2
  \delta)\}` misaligns w.p. :math:`\ge 1-\delta` (Thm 5; this form is taken from a
  secondary summary of the paper, not checked against its text, and is derived here via Chebyshev).
* :func:`eq7` -- :math:`KL(P_-(\cdot|s)\|P(\cdot|s)) \le \log(1 + \frac{1-\alpha}{\alpha}
  e^{-\beta|s|})`, and for :math:`B\in\{0,1\}` with :math:`B_{P_-}\equiv 0`:
  :math:`B_P(s) \le 1/(1 + \frac{\alpha}{1-\alpha}e^{\beta|s|})`, a reverse sigmoid centred at
  :math:`|s| = \log\frac{1-\alpha}{\alpha}/\beta \to \log(1/\alpha)/\beta` (Eq. 7).

``verify()`` follows the project rule: (1) try sympy (``simplify(expr) == 0`` for identities;
for inequalities, ``simplify(expr).is_nonnegative`` under positive/non-negative symbol
assumptions), (2) always spot-check numerically with mpmath (``DPS`` digits) at random points of
the stated domain, (3) report which step proved each claim.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import sympy as sp

from theorylab.theory.result import DerivationResult, summarise
from theorylab.validation import check_int, check_real

__all__ = ["Step", "Derivation", "key_lemma", "t1", "t2", "t3", "t4", "t5", "eq7",
           "DERIVATIONS", "verify", "t1_length", "t2_length", "t3_length", "t4_length",
           "t5_length", "eq7_kl_bound", "eq7_aligned_bound", "sigmoid_centre"]

DPS = 30        # mpmath digits of the numeric spot checks
N_POINTS = 25   # random points per step

# symbols: every quantity that is a probability or rate is positive; abar = 1 - alpha
al, ab, eps, beta, betap, sig, dl = sp.symbols("alpha alphabar epsilon beta beta' sigma delta",
                                               positive=True)
pm, pp, n, s0, a_len, nbest, u, v = sp.symbols("p_- p_+ n s_0 a n_best u v", positive=True)
Bm, Bp = sp.symbols("B_- B_+", real=True)
x, y = sp.symbols("x y", nonnegative=True)
_t = sp.symbols("t", positive=True)
C = sp.log(1 / al) + sp.log(1 / eps) + sp.log(4)


@dataclass(frozen=True)
class Step:
    """One step: ``expr == 0`` (kind 'eq') or ``expr >= 0`` (kind 'ge')."""

    name: str
    expr: sp.Expr
    kind: str = "eq"


@dataclass(frozen=True)
class Derivation:
    """A claim proved by a sequence of steps over a stated domain (``sample`` draws from it)."""

    name: str
    statement: str
    steps: tuple
    sample: Callable[[random.Random], dict]
    domain: str

    def _symbolic(self, st: Step) -> bool:
        # encode 0 < alpha < 1 and alphabar = 1 - alpha: alpha = 1/(1+t), alphabar = t/(1+t), t>0
        e = st.expr.subs({al: 1 / (1 + _t), ab: _t / (1 + _t)})
        e = sp.simplify(sp.expand_log(e, force=True))
        if st.kind == "eq":
            return e == 0
        return bool(e.is_nonnegative) or bool(sp.factor(e).is_nonnegative)

    def verify(self, seed: int = 0, tol: float = 1e-20) -> DerivationResult:
        rng = random.Random(seed)
        proved, worst = {}, 0.0
        points = [self.sample(rng) for _ in range(N_POINTS)]
        with mpmath.workdps(DPS):
            for st in self.steps:
                f = sp.lambdify(sorted(st.expr.free_symbols, key=str), st.expr, "mpmath")
                args = sorted(st.expr.free_symbols, key=str)
                res = 0.0
                for pt in points:
                    val = f(*[mpmath.mpf(pt[a]) for a in args])
                    r = abs(val) if st.kind == "eq" else max(-val, 0)
                    res = max(res, float(r))
                worst = max(worst, res)
                num_ok = res <= tol
                sym_ok = self._symbolic(st)
                proved[st.name] = "symbolic" if (sym_ok and num_ok) else (
                    "numeric" if num_ok else "FAILED")
        return DerivationResult(self.name, all(p != "FAILED" for p in proved.values()),
                                summarise(proved), proved, worst, N_POINTS, self.domain)


def _pt(rng: random.Random, extra: dict | None = None) -> dict:
    a = rng.uniform(1e-4, 0.999)
    d = {al: a, ab: 1 - a, eps: rng.uniform(1e-4, 1), beta: rng.uniform(0.01, 20),
         betap: rng.uniform(0.01, 20), sig: rng.uniform(0.01, 10), dl: rng.uniform(1e-3, 1),
         pm: 10 ** rng.uniform(-30, 0), pp: 10 ** rng.uniform(-30, 0), n: rng.uniform(0, 200),
         s0: rng.uniform(1, 100), a_len: rng.uniform(1, 50), nbest: rng.randint(1, 64),
         u: rng.uniform(0, 50), v: rng.uniform(0, 50), x: rng.uniform(0, 2), y: rng.uniform(0, 2),
         Bm: rng.uniform(-1, 1), Bp: rng.uniform(-1, 1)}
    d.update(extra or {})
    return d


_DOMAIN = ("0<alpha<1 (alphabar=1-alpha), eps in (0,1], beta, beta', sigma > 0, delta in (0,1], "
           "P_-(s), P_+(s) in [1e-30, 1], B_-, B_+ in [-1, 1]")


def _post_w():
    return al * pm / (al * pm + ab * pp)


def key_lemma() -> Derivation:
    w = _post_w()
    b_p = (al * pm * Bm + ab * pp * Bp) / (al * pm + ab * pp)  # B_P(s0) by linearity of E[B]
    steps = (
        Step("B_P - B_- = (1-w)(B_+ - B_-)", b_p - Bm - (1 - w) * (Bp - Bm)),
        Step("1-w = (1-a)p+/(a p- + (1-a)p+)", (1 - w) - ab * pp / (al * pm + ab * pp)),
        Step("1-w <= (1-a)/a * p+/p-", ab * pp / (al * pm) - ab * pp / (al * pm + ab * pp), "ge"),
        # |B_+ - B_-| <= 2 with B_+ = 1 - x, B_- = -1 + y, x, y in [0, 2]
        Step("|B_+ - B_-| <= 2", 2 - ((1 - x) - (-1 + y)), "ge"),
        Step("bound", 2 * ab / al * pp / pm - sp.Abs(b_p - Bm), "ge"),
    )
    return Derivation("key_lemma", "|B_P(s0) - B_{P-}(s0)| <= 2 (1-a)/a P+(s0)/P-(s0)", steps,
                      lambda r: _pt(r), _DOMAIN)


def t1() -> Derivation:
    L = C / beta
    steps = (
        Step("2(1-a)/a e^{-beta |s|} = (1-a) eps / 2 at |s| = c/beta",
             2 * ab / al * sp.exp(-beta * L) - ab * eps / 2),
        Step("(1-a) eps/2 < eps", eps - ab * eps / 2, "ge"),
    )
    return Derivation("t1", "|s| = (log1/a + log1/eps + log4)/beta gives B_P(s) < gamma + eps",
                      steps, lambda r: _pt(r), _DOMAIN)


def t2() -> Derivation:
    L = C / beta + betap / beta * s0 + sig / beta * sp.sqrt(s0 / dl) + 1
    k = 1 / sp.sqrt(dl)
    steps = (
        # Chebyshev: P(X - E X >= k sd) <= 1/k^2 = delta, with Var X <= |s0| sigma^2
        Step("Chebyshev tail 1/k^2 = delta", 1 / k**2 - dl),
        Step("k sd(X) = sigma sqrt(|s0|/delta)", k * sp.sqrt(s0 * sig**2) - sig * sp.sqrt(s0 / dl)),
        # beta|s| covers c, the prefix's log-ratio beta'|s0| + sigma sqrt(|s0|/delta), and 1 spare
        Step("beta|s| - (c + beta'|s0| + dev) = beta",
             beta * L - (C + betap * s0 + sig * sp.sqrt(s0 / dl)) - beta),
    )
    return Derivation("t2", "aligning prefix: |s| = c/beta + (beta'/beta)|s0| + "
                      "(sigma/beta) sqrt(|s0|/delta) + 1", steps, lambda r: _pt(r), _DOMAIN)


def t3(n_turns: int = 3) -> Derivation:
    """Conversation with ``n_turns`` answers of length ``a``: union bound at delta/n per answer."""
    q_total = C / beta + n_turns * (betap / beta * a_len + sig / beta * sp.sqrt(n_turns * a_len / dl)) + n_turns
    k = sp.sqrt(n_turns / dl)
    steps = (
        Step("per-answer Chebyshev tail = delta/n", 1 / k**2 - dl / n_turns),
        Step("k sd = sigma sqrt(n|a|/delta)",
             k * sp.sqrt(a_len * sig**2) - sig * sp.sqrt(n_turns * a_len / dl)),
        Step("beta sum|q| - (c + sum(beta'|a| + dev)) = n beta",
             beta * q_total - (C + n_turns * (betap * a_len + sig * sp.sqrt(n_turns * a_len / dl)))
             - n_turns * beta),
    )
    return Derivation(f"t3(n={n_turns})", "conversation: sum|q_i| = c/beta + sum_i((beta'/beta)"
                      "|a_i| + (sigma/beta) sqrt(n|a_i|/delta)) + n", steps, lambda r: _pt(r), _DOMAIN)


def t4() -> Derivation:
    L = (C + sp.log(nbest)) / beta
    w = _post_w()
    steps = (
        # P(.|s) = w P-(.|s) + (1-w) P+(.|s); TV(P^n, P-^n) <= n TV(P, P-) <= n (1-w)
        Step("TV(P, P-) = (1-w) TV(P+, P-) <= 1-w", (1 - w) - (1 - w) * x / 2, "ge"),
        Step("2n(1-a)/a e^{-beta|s|} = (1-a) eps/2 at T4 length",
             2 * nbest * ab / al * sp.exp(-beta * L) - ab * eps / 2),
    )
    return Derivation("t4", "best-of-n: |s| = (log1/a + log1/eps + log4 + log n)/beta", steps,
                      lambda r: _pt(r, {x: r.uniform(0, 2)}), _DOMAIN + ", TV = x/2, x in [0,2]")


def t5() -> Derivation:
    # n = 2c/beta + u  (u >= 0) and n = 4 sigma^2/(beta^2 delta) + v (v >= 0)
    n1 = 2 * C / beta + u
    n2 = 4 * sig**2 / (beta**2 * dl) + v
    steps = (
        Step("beta n/2 - c >= 0 when n >= 2c/beta", beta * n1 / 2 - C, "ge"),
        Step("(beta n/2)^2 - sigma^2 n/delta >= 0 when n >= 4 sigma^2/(beta^2 delta)",
             sp.expand((beta * n2 / 2) ** 2 - sig**2 * n2 / dl), "ge"),
        Step("Chebyshev: beta n - sigma sqrt(n/delta) - c = (beta n/2 - c) + (beta n/2 - dev)",
             (beta * n - sig * sp.sqrt(n / dl) - C)
             - ((beta * n / 2 - C) + (beta * n / 2 - sig * sp.sqrt(n / dl)))),
    )
    return Derivation("t5", "random P- prompt: |s| > max{2c/beta, 4 sigma^2/(beta^2 delta)} "
                      "misaligns w.p. >= 1-delta", steps, lambda r: _pt(r), _DOMAIN + ", u, v >= 0")


def eq7() -> Derivation:
    w = _post_w()
    q_m, q_p = sp.symbols("q_- q_+", positive=True)  # P-(s'|s), P+(s'|s) at one sentence s'
    ratio = sp.exp(-beta * n)  # P+(s)/P-(s) at the extreme log-ratio beta|s|
    w_n = w.subs(pp, pm * ratio)
    centre = sp.solve(sp.Eq(1 / (1 + al / ab * sp.exp(beta * n)), sp.Rational(1, 2)), n)[0]
    steps = (
        Step("P(s'|s) - w P-(s'|s) = (1-w) P+(s'|s) >= 0",
             (w * q_m + (1 - w) * q_p) - w * q_m, "ge"),
        Step("log 1/w = log(1 + (1-a)/a P+/P-)", sp.log(1 / w) - sp.log(1 + ab / al * pp / pm)),
        Step("1 - w = 1/(1 + a/(1-a) e^{beta|s|}) (reverse sigmoid)",
             (1 - w_n) - 1 / (1 + al / ab * sp.exp(beta * n))),
        Step("centre = log((1-a)/a)/beta", centre - sp.log(ab / al) / beta),
    )
    d = Derivation("eq7", "KL(P-(.|s)||P(.|s)) <= log(1 + (1-a)/a e^{-beta|s|}); B_P(s) <= "
                   "1/(1 + a/(1-a) e^{beta|s|}), centre log((1-a)/a)/beta",
                   steps, lambda r: _pt(r, {q_m: r.uniform(0, 1), q_p: r.uniform(0, 1)}),
                   _DOMAIN + ", q_-, q_+ in (0, 1)")
    return d


def _centre_limit() -> bool:
    """log((1-a)/a) / log(1/a) -> 1 as a -> 0+ (the centre tracks log(1/a)/beta)."""
    a = sp.symbols("a", positive=True)
    return sp.limit(sp.log((1 - a) / a) / sp.log(1 / a), a, 0, "+") == 1


DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "key_lemma": key_lemma, "t1": t1, "t2": t2, "t3": t3, "t4": t4, "t5": t5, "eq7": eq7}


def verify(seed: int = 0) -> list[DerivationResult]:
    """Verify every derivation; the Eq. 7 check also carries the centre's alpha -> 0 limit."""
    out = []
    for name, make in DERIVATIONS.items():
        chk = make().verify(seed)
        if name == "eq7":
            lim = _centre_limit()
            proved = {**chk.proved_by, "centre/log(1/a) -> 1": "symbolic" if lim else "FAILED"}
            chk = DerivationResult(chk.name, chk.holds and lim, summarise(proved), proved,
                                   chk.max_abs_residual, chk.n_points, chk.domain)
        out.append(chk)
    return out


# ----------------------------------------------------------------------------- numeric forms


def _c(alpha, eps):
    check_real("BEB bound", "alpha", alpha, lo=0, hi=1, lo_open=True, hi_open=True)
    check_real("BEB bound", "eps", eps, lo=0, lo_open=True)
    return math.log(1 / alpha) + math.log(1 / eps) + math.log(4)


def _b(beta):
    return check_real("BEB bound", "beta", beta, lo=0, lo_open=True)


def t1_length(alpha: float, beta: float, eps: float) -> float:
    """T1: (log 1/α + log 1/ε + log 4)/β."""
    return _c(alpha, eps) / _b(beta)


def t2_length(alpha, beta, eps, beta_prime, sigma, s0_len, delta) -> float:
    """T2: T1 + (β′/β)|s₀| + (σ/β)√(|s₀|/δ) + 1."""
    check_real("BEB bound", "delta", delta, lo=0, hi=1, lo_open=True)
    return (t1_length(alpha, beta, eps) + beta_prime / beta * s0_len
            + sigma / beta * math.sqrt(s0_len / delta) + 1)


def t3_length(alpha, beta, eps, beta_prime, sigma, answer_lens, delta) -> float:
    """T3: Σ|qᵢ| = T1 + Σᵢ((β′/β)|aᵢ| + (σ/β)√(n|aᵢ|/δ)) + n."""
    check_real("BEB bound", "delta", delta, lo=0, hi=1, lo_open=True)
    nt = len(answer_lens)
    return (t1_length(alpha, beta, eps) + sum(beta_prime / beta * a + sigma / beta
                                              * math.sqrt(nt * a / delta) for a in answer_lens) + nt)


def t4_length(alpha, beta, eps, n_best: int) -> float:
    """T4: (log 1/α + log 1/ε + log 4 + log n)/β."""
    check_int("BEB bound", "n_best", n_best, lo=1)
    return (_c(alpha, eps) + math.log(n_best)) / _b(beta)


def t5_length(alpha, beta, eps, sigma, delta) -> float:
    """T5: max{2(log1/α+log1/ε+log4)/β, 4σ²/(β²δ)}."""
    check_real("BEB bound", "delta", delta, lo=0, hi=1, lo_open=True)
    return max(2 * _c(alpha, eps) / _b(beta), 4 * sigma**2 / (beta**2 * delta))


def eq7_kl_bound(alpha, beta, length):
    """Eq. 7: log(1 + ((1−α)/α) e^{−β|s|})."""
    return math.log1p((1 - alpha) / alpha * math.exp(-beta * length))


def eq7_aligned_bound(alpha, beta, length):
    """Eq. 7, B ∈ {0,1}: 1/(1 + (α/(1−α)) e^{β|s|})."""
    z = math.log(alpha / (1 - alpha)) + beta * length
    return 1.0 / (1.0 + math.exp(z)) if z < 700 else 0.0


def sigmoid_centre(alpha, beta):
    """Centre of the Eq. 7 reverse sigmoid: log((1−α)/α)/β."""
    return math.log((1 - alpha) / alpha) / _b(beta)
