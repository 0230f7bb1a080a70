r"""EXO vs DPO derivations (sympy), each checked by :meth:`Derivation.verify`.

Ji et al., "Towards Efficient Exact Optimization of Language Model Alignment" (EXO, arXiv
2402.00856, ICML 2024). Notation: :math:`\pi_\theta = \mathrm{softmax}(\theta)` over :math:`N`
actions, :math:`f_\theta(y) = \beta_\pi\log\pi_\theta(y)/\pi_{sft}(y)`,
:math:`p_f = \mathrm{softmax}_i f_\theta(y_i)`, :math:`p_r = \mathrm{softmax}_i r(y_i)/\beta_r`,
:math:`\pi^{\beta_\pi}_\theta\propto\pi_\theta^{\beta_\pi}\pi_{sft}^{1-\beta_\pi}`,
:math:`\pi^*_\beta\propto\pi_{sft}e^{r/\beta}`, :math:`J_\beta(\pi)=\mathbb{E}_\pi r-\beta\,\mathrm{KL}(\pi\|\pi_{sft})`.

Derivations (each returns a :class:`Derivation`; :func:`verify` runs them all):

* :func:`softmax_policy_gradient` — :math:`\nabla_\theta J_\beta = \pi\odot(A - \mathbb{E}_\pi A)`,
  :math:`A = r - \beta\log(\pi/\pi_{sft})`.
* :func:`exo_limit_identity` — :math:`\mathrm{KL}(\pi^{\beta_\pi}_\theta\|\pi^*_{\beta_r}) =
  -J_{\beta_r}(\pi^{\beta_\pi}_\theta)/\beta_r + \log Z_{\beta_r}` (so the K → ∞ EXO gradient is
  :math:`-\nabla J/\beta_r`: the paper's gradient equivalence).
* :func:`exo_optimum_stationary` — at :math:`\pi_\theta\propto\pi_{sft}e^{r/(\beta_r\beta_\pi)}`,
  :math:`L_{exo} = 0` and :math:`\nabla_\theta L_{exo} = 0` for every K and every draw.
* :func:`pref_loss_is_kl` — the K = 2 preference loss (Eq. 16) equals
  :math:`\mathrm{KL}([q, 1-q]\|[1-\varepsilon,\varepsilon])`, :math:`q = \sigma(\beta_\pi\Delta)`.
* :func:`dpo_stationary_point_differs` — in a policy class that cannot represent :math:`\pi^*`,
  the forward-KL (DPO, K → ∞) stationary point moment-matches and differs from the reverse-KL
  (EXO) one; when the class can represent :math:`\pi^*` they coincide.

``verify()`` follows the project rule: try ``simplify(lhs - rhs) == 0``, then always spot-check
numerically (mpmath, ``dps`` recorded) at random points of a stated domain, and report which step
proved it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import sympy as sp

from theorylab.theory.result import DerivationResult

__all__ = ["Derivation", "softmax_policy_gradient", "exo_limit_identity",
           "exo_optimum_stationary", "pref_loss_is_kl", "dpo_stationary_point_differs",
           "DERIVATIONS", "verify"]

DPS = 30            # mpmath digits for the numeric spot checks
N_POINTS = 12       # random points per identity


@dataclass(frozen=True)
class Derivation:
    r"""An identity ``lhs_i == rhs_i`` (a list of them) in ``symbols`` over a stated domain.

    ``sample(rng)`` returns a substitution dict drawn from the domain; ``extra`` is an optional
    callable returning (holds, details) for checks that are not identities (e.g. root finding).
    """

    name: str
    statement: str
    lhs: list
    rhs: list
    sample: Callable[[random.Random], dict]
    domain: str
    simplify_symbolic: bool = True
    extra: Callable[[], tuple[bool, dict]] | None = None

    def verify(self, seed: int = 0, tol: float = 1e-20) -> DerivationResult:
        sym_ok = False
        if self.simplify_symbolic and self.lhs:
            sym_ok = all(sp.simplify(sp.expand_log(a - b, force=True)) == 0
                         for a, b in zip(self.lhs, self.rhs, strict=True))
        rng = random.Random(seed)
        worst = 0.0
        with mpmath.workdps(DPS):
            fns = None
            for _ in range(N_POINTS if self.lhs else 0):
                subs = self.sample(rng)
                if fns is None:                      # lambdify once: mpmath at DPS digits
                    keys = list(subs)
                    fns = [sp.lambdify(keys, a - b, "mpmath") for a, b in
                           zip(self.lhs, self.rhs, strict=True)]
                vals = [mpmath.mpf(str(subs[k])) for k in keys]
                worst = max([worst, *(abs(float(fn(*vals))) for fn in fns)])
        num_ok = worst <= tol
        details: dict = {"dps": DPS}
        extra_ok = True
        if self.extra is not None:
            extra_ok, more = self.extra()
            details.update(more)
        holds = (sym_ok or num_ok) and num_ok and extra_ok
        proved = "symbolic" if sym_ok and holds else ("numeric" if holds else "FAILED")
        return DerivationResult(self.name, bool(holds), proved, {self.name: proved}, worst,
                                N_POINTS if self.lhs else 0, self.domain, details)


# ----------------------------------------------------------------------------- helpers

def _log_softmax(v):
    z = sp.log(sum(sp.exp(x) for x in v))
    return [x - z for x in v]


def _kl(lp, lq):
    return sum(sp.exp(a) * (a - b) for a, b in zip(lp, lq, strict=True))


def _syms(n):
    th = sp.symbols(f"theta0:{n}", real=True)
    s = sp.symbols(f"s0:{n}", real=True)          # π_sft = softmax(s)
    r = sp.symbols(f"r0:{n}", real=True)
    bp, br = sp.symbols("beta_pi beta_r", positive=True)
    return th, s, r, bp, br


def _sampler(th, s, r, bp, br):
    def sample(rng: random.Random) -> dict:
        d = {x: sp.Float(rng.uniform(-2, 2), DPS) for x in (*th, *s, *r)}
        d[bp] = sp.Float(rng.uniform(0.1, 2.0), DPS)
        d[br] = sp.Float(rng.uniform(0.1, 2.0), DPS)
        return d
    return sample


_DOMAIN = "theta, s, r in U(-2, 2); beta_pi, beta_r in U(0.1, 2)"


# ----------------------------------------------------------------------------- derivations

def softmax_policy_gradient(n: int = 3) -> Derivation:
    r""":math:`\partial J_\beta(\mathrm{softmax}\,\theta)/\partial\theta_j = \pi_j(A_j - \sum_k\pi_k A_k)`."""
    th, s, r, _, br = _syms(n)
    lpi, lsft = _log_softmax(th), _log_softmax(s)
    J = sum(sp.exp(a) * ri for a, ri in zip(lpi, r, strict=True)) - br * _kl(lpi, lsft)
    A = [ri - br * (a - b) for ri, a, b in zip(r, lpi, lsft, strict=True)]
    EA = sum(sp.exp(a) * x for a, x in zip(lpi, A, strict=True))
    lhs = [sp.diff(J, th[j]) for j in range(n)]
    rhs = [sp.exp(lpi[j]) * (A[j] - EA) for j in range(n)]
    return Derivation("softmax_policy_gradient", "grad_theta J_beta = pi * (A - E_pi A)",
                      lhs, rhs, _sampler(th, s, r, sp.Symbol("unused"), br), _DOMAIN)


def exo_limit_identity(n: int = 3) -> Derivation:
    r""":math:`\mathrm{KL}(\pi^{\beta_\pi}_\theta\|\pi^*_{\beta_r}) + J_{\beta_r}(\pi^{\beta_\pi}_\theta)/\beta_r
    = \log Z_{\beta_r}` (independent of θ), and the same holds for the θ-gradients."""
    th, s, r, bp, br = _syms(n)
    lpi, lsft = _log_softmax(th), _log_softmax(s)
    lt = _log_softmax([bp * a + (1 - bp) * b for a, b in zip(lpi, lsft, strict=True)])
    lstar = _log_softmax([b + ri / br for b, ri in zip(lsft, r, strict=True)])
    J = sum(sp.exp(a) * ri for a, ri in zip(lt, r, strict=True)) - br * _kl(lt, lsft)
    logZ = sp.log(sum(sp.exp(b + ri / br) for b, ri in zip(lsft, r, strict=True)))
    lhs = [_kl(lt, lstar)] + [sp.diff(_kl(lt, lstar), th[j]) for j in range(n)]
    rhs = [-J / br + logZ] + [-sp.diff(J, th[j]) / br for j in range(n)]
    return Derivation("exo_limit_identity",
                      "KL(pi_theta^beta_pi || pi*_beta_r) = -J_beta_r(pi_theta^beta_pi)/beta_r + log Z; "
                      "same for grad_theta", lhs, rhs, _sampler(th, s, r, bp, br), _DOMAIN,
                      simplify_symbolic=False)


def exo_optimum_stationary(ks: tuple[int, ...] = (2, 3), n: int = 2) -> Derivation:
    r"""For K samples (indices drawn with repetition from N actions) the K-sample EXO loss and its
    θ-gradient vanish at :math:`\theta = s + r/(\beta_r\beta_\pi)` (π ∝ π_sft e^{r/(β_rβ_π)}).

    There :math:`f_i = r_i/\beta_r - \beta_\pi\log Z`, a constant shift of :math:`r/\beta_r`, so
    :math:`p_f = p_r` for every K and every draw. Checked symbolically for ``ks`` with draws that
    repeat an action (K = 3 over N = 2), and numerically (kernels, float64) for K up to 4096 in ``extra``.
    """
    th, s, r, bp, br = _syms(n)
    lpi, lsft = _log_softmax(th), _log_softmax(s)
    opt = {th[j]: s[j] + r[j] / (br * bp) for j in range(n)}
    lhs, rhs = [], []
    for k in ks:
        draw = [j % n for j in range(k)] if k == 2 else [j % n for j in range(k - 1)] + [0]
        f = [bp * (lpi[i] - lsft[i]) for i in draw]
        lq = _log_softmax([r[i] / br for i in draw])
        L = _kl(_log_softmax(f), lq)
        lhs.append(L.subs(opt))
        rhs.append(sp.Integer(0))
        for j in range(n):
            lhs.append(sp.diff(L, th[j]).subs(opt))
            rhs.append(sp.Integer(0))

    def extra() -> tuple[bool, dict]:
        import torch

        from theorylab.kernels import exo as kx
        g = torch.Generator().manual_seed(0)
        worst_l, worst_g = 0.0, 0.0
        for big_n, k in [(50, 2), (50, 64), (1000, 4096)]:
            lps = torch.log_softmax(torch.randn(big_n, generator=g, dtype=torch.float64), -1)
            rr = torch.randn(big_n, generator=g, dtype=torch.float64)
            theta = kx.analytic_optimum(lps, rr, 0.5, 0.7)
            idx = torch.multinomial(lps.exp(), 8 * k, replacement=True, generator=g).view(8, k)
            lr = (torch.log_softmax(theta, -1) - lps)[idx]
            worst_l = max(worst_l, kx.exo_loss(lr, rr[idx], 0.7, 0.5).abs().max().item())
            worst_g = max(worst_g, kx.ksample_grad_tabular(theta, lps, rr, idx, 0.7, 0.5)
                          .abs().max().item())
        ok = worst_l < 1e-12 and worst_g < 1e-12
        return ok, {"kernel_max_loss_K_to_4096": worst_l, "kernel_max_grad_K_to_4096": worst_g}

    return Derivation("exo_optimum_stationary",
                      f"L_exo = 0 and grad L_exo = 0 at pi ∝ pi_sft e^(r/(beta_r beta_pi)) for K in {ks} "
                      "(symbolic) and K up to 4096 (kernel, float64)",
                      lhs, rhs, _sampler(th, s, r, bp, br), _DOMAIN, extra=extra)


def pref_loss_is_kl() -> Derivation:
    r"""K = 2 EXO with targets :math:`[1-\varepsilon,\varepsilon]` on :math:`(y_w, y_l)`:
    :math:`\mathrm{KL}(p_f\|[1-\varepsilon,\varepsilon]) = q\log\frac{q}{1-\varepsilon} + (1-q)
    \log\frac{1-q}{\varepsilon}` with :math:`q = \sigma(\beta_\pi\Delta)`; its Δ-derivative
    :math:`\beta_\pi q(1-q)[\log\frac{q}{1-q} - \log\frac{1-\varepsilon}{\varepsilon}]` vanishes
    only at :math:`q = 1 - \varepsilon`."""
    a, b, beta = sp.symbols("lr_w lr_l beta_pi", real=True)
    eps = sp.Symbol("epsilon", positive=True)
    lp = _log_softmax([beta * a, beta * b])
    kl_form = _kl(lp, [sp.log(1 - eps), sp.log(eps)])
    q = 1 / (1 + sp.exp(-beta * (a - b)))
    eq16 = q * sp.log(q / (1 - eps)) + (1 - q) * sp.log((1 - q) / eps)
    deriv = beta * q * (1 - q) * (sp.log(q / (1 - q)) - sp.log((1 - eps) / eps))

    def sample(rng: random.Random) -> dict:
        return {a: sp.Float(rng.uniform(-5, 5), DPS), b: sp.Float(rng.uniform(-5, 5), DPS),
                beta: sp.Float(rng.uniform(0.05, 3), DPS), eps: sp.Float(rng.uniform(1e-4, 0.49), DPS)}

    return Derivation("pref_loss_is_kl",
                      "EXO-pref (Eq. 16) = KL([q, 1-q] || [1-eps, eps]), q = sigmoid(beta_pi * Delta)",
                      [kl_form, sp.diff(eq16, a)], [eq16, deriv], sample,
                      "lr_w, lr_l in U(-5, 5); beta_pi in U(0.05, 3); eps in U(1e-4, 0.49)",
                      simplify_symbolic=False)


def dpo_stationary_point_differs(r_vals=(2.0, 0.0, 0.0, 0.0, 1.5), beta_r: float = 0.5) -> Derivation:
    r"""Restricted class :math:`\pi_t = \mathrm{softmax}(t\,\phi)`, :math:`\phi = (-2,-1,0,1,2)`
    over 5 actions, :math:`\pi_{sft}` uniform, :math:`\beta_\pi = 1`.

    Stationary conditions: forward KL (DPO, K → ∞) :math:`\mathbb{E}_{\pi_t}\phi =
    \mathbb{E}_{\pi^*}\phi` (moment matching); reverse KL (EXO) :math:`\mathrm{Cov}_{\pi_t}(\phi,
    \log\pi_t - \log\pi^*) = 0`. Checked: both symbolic gradients equal these forms; with a
    bimodal ``r`` (not in span(φ, 1)) the two roots differ (mpmath ``findroot`` at ``DPS``) and
    the EXO root has the higher :math:`J_{\beta_r}`; with :math:`r = c\,\phi` both roots equal
    :math:`c/\beta_r` (π* representable).
    """
    t = sp.Symbol("t", real=True)
    phi = [-2, -1, 0, 1, 2]
    n = len(phi)

    def parts(rv):
        lpi = _log_softmax([t * p for p in phi])
        lsft = [sp.log(sp.Rational(1, n))] * n
        lstar = _log_softmax([b + sp.nsimplify(x) / sp.nsimplify(beta_r) for b, x in zip(lsft, rv, strict=True)])
        return lpi, lsft, lstar

    lpi, lsft, lstar = parts(r_vals)
    pi = [sp.exp(a) for a in lpi]
    Epi = lambda v: sum(p * x for p, x in zip(pi, v, strict=True))       # noqa: E731
    fwd, rev = _kl(lstar, lpi), _kl(lpi, lstar)
    Estar_phi = sum(sp.exp(a) * x for a, x in zip(lstar, phi, strict=True))
    d = [a - b for a, b in zip(lpi, lstar, strict=True)]
    cov = Epi([x * y for x, y in zip(phi, d, strict=True)]) - Epi(phi) * Epi(d)
    lhs = [sp.diff(fwd, t), sp.diff(rev, t)]
    rhs = [Epi(phi) - Estar_phi, cov]

    def sample(rng: random.Random) -> dict:
        return {t: sp.Float(rng.uniform(-3, 3), DPS)}

    def extra() -> tuple[bool, dict]:
        with mpmath.workdps(DPS):
            def root(expr, x0):
                f = sp.lambdify(t, expr, "mpmath")
                return mpmath.findroot(f, mpmath.mpf(x0))

            def J(expr_t):
                lp, ls, _ = parts(r_vals)
                Jx = sum(sp.exp(a) * x for a, x in zip(lp, r_vals, strict=True)) - beta_r * _kl(lp, ls)
                return float(sp.N(Jx.subs(t, expr_t), DPS))

            t_dpo = root(lhs[0], 0.0)
            # the reverse KL may have several stationary points: take the best over a grid of starts
            cands = []
            for x0 in (-1.0, -0.3, 0.0, 0.3, 1.0):
                try:
                    cands.append(root(lhs[1], x0))
                except (ValueError, ZeroDivisionError):
                    pass
            t_exo = max(cands, key=lambda x: J(x))
            j_dpo, j_exo = J(t_dpo), J(t_exo)
            # representable case r = c φ: both roots at c/β_r
            c = 0.3
            lp2, _, ls2 = parts([c * p for p in phi])
            f2 = sp.diff(_kl(ls2, lp2), t)
            r2 = sp.diff(_kl(lp2, ls2), t)
            t2_dpo, t2_exo = root(f2, 0.0), root(r2, 0.0)
        differ = abs(float(t_exo - t_dpo)) > 1e-3 and j_exo > j_dpo
        same = abs(float(t2_dpo) - c / beta_r) < 1e-20 and abs(float(t2_exo) - c / beta_r) < 1e-20
        return differ and same, {"t_dpo": float(t_dpo), "t_exo": float(t_exo), "J_dpo": j_dpo,
                                 "J_exo": j_exo, "t_representable": [float(t2_dpo), float(t2_exo)]}

    return Derivation("dpo_stationary_point_differs",
                      "forward-KL (DPO) and reverse-KL (EXO) stationary points differ in a class that "
                      "cannot represent pi*, and coincide when it can",
                      lhs, rhs, sample, "t in U(-3, 3); r, phi fixed (see docstring)",
                      simplify_symbolic=False, extra=extra)


DERIVATIONS: dict[str, Callable[[], Derivation]] = {
    "softmax_policy_gradient": softmax_policy_gradient,
    "exo_limit_identity": exo_limit_identity,
    "exo_optimum_stationary": exo_optimum_stationary,
    "pref_loss_is_kl": pref_loss_is_kl,
    "dpo_stationary_point_differs": dpo_stationary_point_differs,
}


def verify(names=None, seed: int = 0) -> list[DerivationResult]:
    """Verify the named derivations (all by default); one result each."""
    names = list(DERIVATIONS) if names is None else list(names)
    return [DERIVATIONS[n]().verify(seed=seed) for n in names]
