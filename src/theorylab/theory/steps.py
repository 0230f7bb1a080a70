r"""Derivations as chains of steps that decide: each step proven by sympy, or a cited premise.

A :class:`Chain` proves a claim ``lhs REL rhs`` (REL one of ``==, <=, <, >=, >``) by steps
``e_0 rel_1 e_1 rel_2 ... e_k``; it is *complete* when ``e_0`` is the claim's left side,
each step's right side is the next step's left side and ``e_k`` is the claim's right side (each
match: ``simplify(a - b) == 0``), every relation points the same way, and their composition
implies REL (``<`` needs at least one strict step; ``==`` needs only equalities).

Each step gets a status:

* ``proven`` -- sympy proves it over the stated domain: an identity by ``simplify(lhs - rhs) ==
  0`` (after the domain substitution, and where the two sides hold logarithms, by showing every
  coefficient of the distinct ``log`` atoms is zero), an inequality by reducing ``rhs - lhs`` to
  an expression sympy's assumptions show non-negative (positive when strict), splitting a single
  ``Abs`` into its two cases;
* ``numeric`` -- sympy could not prove it, but the spot checks (mpmath) pass;
* ``premise`` -- assumed, with its citation (paper + theorem/definition/equation); not checked;
* ``FAILED`` -- a spot check found a counterexample.

A derivation holds only when every chain is complete and every step is ``proven`` or
``premise``; a failing numeric spot check (run on every non-premise step) also fails it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import mpmath
import sympy as sp

from theorylab.theory.result import DerivationResult

__all__ = ["Step", "Chain", "StepDerivation", "prove_zero", "prove_nonneg", "chain_complete", "step_counts",
           "STATUSES"]

STATUSES = ("proven", "numeric", "premise", "FAILED")
_LE, _GE = {"==", "<=", "<"}, {"==", ">=", ">"}


@dataclass(frozen=True)
class Step:
    """``lhs rel rhs``; ``premise``: the citation when the step is assumed, not proven."""

    name: str
    lhs: sp.Expr
    rel: str
    rhs: sp.Expr
    premise: str | None = None

    def __post_init__(self) -> None:
        if self.rel not in _LE | _GE:
            raise ValueError(f"'rel' of Step must be one of ==, <=, <, >=, >. Got {self.rel!r}.")


@dataclass(frozen=True)
class Chain:
    """The claim ``lhs rel rhs`` and the steps that lead from ``lhs`` to ``rhs``."""

    lhs: sp.Expr
    rel: str
    rhs: sp.Expr
    steps: tuple


def _to_atoms(e: sp.Expr) -> sp.Expr:
    """Replace every ``log`` atom by a fresh symbol (a sufficient test: coefficients vanish)."""
    logs = sorted(e.atoms(sp.log), key=sp.default_sort_key)
    return e.xreplace({lg: sp.Dummy(f"L{i}") for i, lg in enumerate(logs)})


def _summand(e: sp.Expr):
    """``(q, f)`` when ``e = q * Sum(f, ...)`` (one Sum, after combining), else None."""
    sums = list(e.atoms(sp.Sum))
    if len(sums) != 1:
        return None
    z = sp.Dummy("z")
    lin = sp.expand(e.xreplace({sums[0]: z}))
    if lin.coeff(z, 0) != 0 or sp.simplify(lin - lin.coeff(z, 1) * z) != 0:
        return None
    return lin.coeff(z, 1), sums[0].function


def prove_zero(e: sp.Expr, subs: dict | None = None) -> bool:
    """True when sympy shows ``e == 0`` identically over the domain encoded by ``subs``.

    A difference of sums over the same range is proven term by term."""
    e = e.subs(subs or {})
    if e.has(sp.Sum):
        se = sp.simplify(e)
        qf = None if se == 0 else _summand(se)
        return se == 0 or (qf is not None and prove_zero(qf[1]))
    # cheap first: logs expanded (force: every log argument of our domains is positive), then
    # each log atom a symbol, then the numerator of the rational function; simplify() last
    for force in (False, True):
        f = sp.expand(sp.expand_log(e, force=force))
        if f == 0:
            return True
        num = sp.numer(sp.together(_to_atoms(f)))
        if sp.expand(num) == 0:
            return True
    return sp.simplify(e) == 0


def _log_ok(e: sp.Expr, strict: bool) -> bool:
    """``q * log(x)`` with ``q >= 0`` and ``x >= 1`` (``> 0``, ``> 1`` if strict)."""
    logs = list(e.atoms(sp.log))
    if len(logs) != 1:
        return False
    q, x = sp.simplify(e / logs[0]), logs[0].args[0]
    while isinstance(x, sp.Pow) and x.exp.is_positive:  # log(x^k) = k log x, k > 0
        x = x.base
    if q.has(sp.log) or not (q.is_positive if strict else q.is_nonnegative):
        return False
    return _sign_ok(sp.together(x - 1), strict)


def _sign_ok(e: sp.Expr, strict: bool) -> bool:
    for c in (e, sp.factor(e), sp.simplify(e)):
        if (c.is_positive if strict else c.is_nonnegative):
            return True
    if e.has(sp.log):
        for f in (e, sp.logcombine(e, force=True), sp.logcombine(sp.simplify(e), force=True)):
            if _log_ok(f, strict) or _log_ok(sp.factor(f), strict):
                return True
    num, den = sp.fraction(sp.together(e))
    num = sp.factor(sp.expand(num))
    return bool(den.is_positive and (num.is_positive if strict else num.is_nonnegative))


def prove_nonneg(e: sp.Expr, subs: dict | None = None, strict: bool = False) -> bool:
    """True when sympy shows ``e >= 0`` (``> 0`` if ``strict``) over the domain of ``subs``.

    One ``Abs(a)`` with a coefficient ``q`` of known sign is split: ``e = p + q|a|`` with ``q <= 0``
    needs ``p + qa >= 0`` and ``p - qa >= 0``; with ``q >= 0`` one of them suffices.
    """
    e = e.subs(subs or {})
    if not e.free_symbols:  # an exact constant: sympy decides its sign (evalf with error bounds)
        return bool(e.is_positive if strict else e.is_nonnegative)
    e = sp.simplify(e)
    if _sign_ok(e, strict):
        return True
    if e.has(sp.Sum):
        qf = _summand(e)
        return qf is not None and _sign_ok(qf[0], strict) and _sign_ok(qf[1], strict)
    absv = list(e.atoms(sp.Abs))
    if len(absv) != 1:
        return False
    a = absv[0]
    z = sp.Dummy("z")
    lin = sp.expand(e.xreplace({a: z}))
    q = sp.simplify(lin.coeff(z, 1))
    p = sp.simplify(lin.coeff(z, 0))
    if sp.simplify(lin - p - q * z) != 0:
        return False
    cases = [_sign_ok(p + q * a.args[0], strict), _sign_ok(p - q * a.args[0], strict)]
    if _sign_ok(-q, False):
        return all(cases)
    if _sign_ok(q, False):
        return any(cases)
    return False


def _same(a: sp.Expr, b: sp.Expr, subs: dict) -> bool:
    return a == b or prove_zero(a - b, subs)


def chain_complete(chain: Chain, subs: dict | None = None) -> tuple[bool, str]:
    """(complete, why-not): the steps lead from the claim's lhs to its rhs with relations that
    compose to the claim's."""
    subs = subs or {}
    st = chain.steps
    if not st:
        return False, "no steps"
    if not _same(st[0].lhs, chain.lhs, subs):
        return False, f"first step '{st[0].name}' does not start at the claim's lhs"
    for a, b in zip(st[:-1], st[1:], strict=True):
        if not _same(a.rhs, b.lhs, subs):
            return False, f"step '{b.name}' does not start where '{a.name}' ends"
    if not _same(st[-1].rhs, chain.rhs, subs):
        return False, f"last step '{st[-1].name}' does not end at the claim's rhs"
    rels = {s.rel for s in st}
    if chain.rel == "==":
        return (rels == {"=="}, "" if rels == {"=="} else "an inequality step in an identity")
    fam = _LE if chain.rel in _LE else _GE
    if not rels <= fam:
        return False, "steps point in different directions"
    if chain.rel in {"<", ">"} and not rels & {"<", ">"}:
        return False, "a strict claim without a strict step"
    return True, ""


@functools.lru_cache(maxsize=1024)
def _prove_step(lhs: sp.Expr, rel: str, rhs: sp.Expr, subs: tuple) -> bool:
    """sympy's verdict on one step (cached: derivations share steps, e.g. the key lemma's)."""
    if rel == "==":
        return prove_zero(lhs - rhs, dict(subs))
    d = rhs - lhs if rel in {"<=", "<"} else lhs - rhs
    return prove_nonneg(d, dict(subs), strict=rel in {"<", ">"})


@dataclass(frozen=True)
class StepDerivation:
    """A claim proved by chains of steps over a stated domain.

    ``sample(rng)`` draws a point of the domain (symbol -> number) for the spot checks;
    ``subs`` encodes the domain for sympy (e.g. ``alpha -> 1/(1+t)``, ``t > 0``); ``second_line``
    optionally returns ``(ok, details)`` for numeric checks beyond the steps (reported; a failure
    fails the derivation, a pass proves nothing).
    """

    name: str
    statement: str
    chains: tuple
    sample: Callable[[random.Random], dict]
    domain: str
    subs: dict = field(default_factory=dict)
    second_line: Callable[[], tuple[bool, dict]] | None = None
    n_points: int = 25
    dps: int = 30
    tol: float = 1e-20

    def steps(self) -> list[Step]:
        return [s for c in self.chains for s in c.steps]

    def _numeric(self, st: Step, points: list[dict]) -> float:
        """Worst residual at the points: |lhs - rhs| (==) or how far the inequality is violated."""
        diff = st.lhs - st.rhs
        concrete = diff.has(sp.Sum) or diff.has(sp.Indexed)
        if not concrete:
            args = sorted(diff.free_symbols, key=str)
            f = sp.lambdify(args, diff, "mpmath")
        worst = 0.0
        for pt in points:
            if concrete:  # sums over a sampled number of terms: expand, substitute, evaluate
                num = {k: sp.Integer(v) if isinstance(v, int) else sp.Float(str(v), self.dps)
                       for k, v in pt.items()}
                e = diff.xreplace({k: v for k, v in num.items() if not isinstance(k, sp.Indexed)})
                e = e.doit().xreplace(num)
                v = mpmath.mpf(str(sp.re(e.evalf(self.dps))))
            else:
                v = mpmath.re(f(*[mpmath.mpf(str(pt[a])) for a in args]))
            r = {"==": abs(v), "<=": max(v, 0), "<": max(v, 0) if v != 0 else 1,
                 ">=": max(-v, 0), ">": max(-v, 0) if v != 0 else 1}[st.rel]
            worst = max(worst, float(r))
        return worst

    def _symbolic(self, st: Step) -> bool:
        return _prove_step(st.lhs, st.rel, st.rhs, tuple(sorted(self.subs.items(), key=str)))

    def verify(self, seed: int = 0) -> DerivationResult:
        rng = random.Random(seed)
        points = [self.sample(rng) for _ in range(self.n_points)]
        status, worst = {}, 0.0
        with mpmath.workdps(self.dps):
            for st in self.steps():
                if st.premise is not None:
                    status[st.name] = "premise"
                    continue
                res = self._numeric(st, points)
                worst = max(worst, res)
                if res > self.tol:
                    status[st.name] = "FAILED"
                else:
                    status[st.name] = "proven" if self._symbolic(st) else "numeric"
        chains = [chain_complete(c, self.subs) for c in self.chains]
        chain_ok = all(ok for ok, _ in chains)
        counts = {k: sum(v == k for v in status.values()) for k in STATUSES}
        details = {"counts": counts, "chain_complete": chain_ok,
                   "chain_problems": [why for ok, why in chains if not ok],
                   "premises": {s.name: s.premise for s in self.steps() if s.premise}, "dps": self.dps}
        second_ok = True
        if self.second_line is not None:
            second_ok, more = self.second_line()
            details["second_line"] = {"holds": bool(second_ok), **more}
        holds = (chain_ok and second_ok and counts["numeric"] == 0 and counts["FAILED"] == 0)
        method = "FAILED" if not holds else " + ".join(
            k for k in ("proven", "premise") if counts[k])
        return DerivationResult(self.name, bool(holds), method, status, worst, self.n_points,
                                self.domain, details)


def step_counts(results: list[DerivationResult]) -> dict:
    """Per derivation and in total: how many steps are proven, numeric-only, premise, FAILED;
    and the premises' citations (for a claim's details)."""
    per = {r.name: dict(r.details.get("counts", {})) for r in results}
    total = {k: sum(c.get(k, 0) for c in per.values()) for k in STATUSES}
    return {"steps_by_derivation": per, "steps_total": total,
            "chains_complete": {r.name: r.details.get("chain_complete") for r in results},
            "premises": {r.name: r.details.get("premises", {}) for r in results if r.details.get("premises")}}
