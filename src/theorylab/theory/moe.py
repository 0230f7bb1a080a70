r"""Strong identifiability of MoE experts, decided exactly (sympy) and spot-checked (mpmath).

Nguyen, Ho, Rinaldo, "On Least Squares Estimation in Softmax Gating Mixture of Experts"
(arXiv 2402.02952, ICML 2024). An expert :math:`x \mapsto h(x, \eta)` is *strongly identifiable*
when, for pairwise distinct :math:`\eta_1, \dots, \eta_\ell`, the functions of x

.. math::

    \Big\{\frac{\partial h}{\partial\eta^{(u)}}(x, \eta_j),\
    \frac{\partial^2 h}{\partial\eta^{(u)}\partial\eta^{(v)}}(x, \eta_j),\
    x^{(u)}\frac{\partial h}{\partial\eta^{(v)}}(x, \eta_j)\Big\}_{j, u, v}      \tag{expert set}

are linearly independent. Then :math:`D_1(\hat G_n, G_*) = O_P(\sqrt{\log n/n})`; linear and
polynomial experts violate it and their parameter rates are slower than any polynomial.
The Taylor expansion of :math:`f_G - f_{G_*}` actually produces the terms of the softmax
numerator :math:`F(x) = e^{\beta_1^\top x} h(x, \eta)`, so :data:`KINDS` also offers

.. math::

    \Big\{\frac{\partial^{|\alpha|} F}{\partial(\beta_1, \eta)^\alpha}(x; \beta_{1j}, \eta_j) :
    0 \le |\alpha| \le 2\Big\}_j                                            \tag{gated set}

with its gate–expert interaction: :math:`\partial^2 F/\partial\beta_1\partial b = \partial F/\partial a`
for every :math:`h = \varphi(ax + b)`.

Conventions (stated, not hidden)
--------------------------------
* x is scalar (d = 1); :math:`\eta = (a, b)`, or :math:`(a_1, \dots, a_p, b)` for polynomial
  experts :math:`h = b + \sum_j a_j x^j`; sigmoid/tanh/linear experts are :math:`\varphi(ax + b)`.
* A member that equals an earlier member **of the same atom for every parameter value** (compared
  with symbolic :math:`\beta_1, \eta` and :math:`\varphi`) is merged: it is the same coefficient of
  the Taylor expansion. This is how :math:`x\,\partial h/\partial b = \partial h/\partial a` (and
  :math:`\partial^2 F/\partial\beta_1\partial b = \partial F/\partial a`) is treated: it holds for
  every :math:`\varphi(ax+b)`, sigmoid and tanh included, so it is not what separates the
  families. Merges are reported (``details["merged_latex"]``); a coincidence that holds only at
  the chosen atoms is never merged, it is a dependence.
* Members that vanish identically (e.g. :math:`\partial^2 h/\partial a^2` of a linear expert)
  make the set dependent.
* The check uses ℓ = 2 atoms at fixed rational parameters (:data:`ATOMS`); a dependence found is a
  complete counter-example, while independence is proved for those atoms only (a witness for the
  condition, not a proof for every ℓ and η).

What it finds (``details["relations"]``, a basis of every vanishing combination)
--------------------------------------------------------------------------------
* sigmoid, tanh: none, in either set.
* linear and polynomial experts, expert set: every second derivative vanishes, and the first
  derivatives (:math:`\partial h/\partial a = x`, :math:`\partial h/\partial b = 1`, ...) do not
  depend on η, so each member of atom 2 equals the same member of atom 1:
  :math:`\partial_a h(x, \eta_1) - \partial_a h(x, \eta_2) = 0`, etc.
* linear and polynomial experts, gated set: the same vanishing second derivatives, and at each
  atom the Euler relation of a 1-homogeneous h, :math:`F = \sum_u \eta^{(u)}\partial F/\partial
  \eta^{(u)}`, and its :math:`\beta_1`-derivative.

Decision (STYLE.md §5: symbolic first, always a numeric spot-check)
------------------------------------------------------------------
1. identity-activation families: every member is a polynomial in x (times :math:`e^{\beta_1 x}`,
   whose distinct exponents separate atoms); the exact coefficient matrix gives the rank and
   every vanishing combination (a basis of its nullspace), each re-checked by sympy;
2. sigmoid/tanh: members are polynomials in :math:`x, s_j = \varphi(u_j), e_j = e^{\beta_{1j}x}`
   (closed under :math:`d/dx`, since :math:`\sigma' = s - s^2`, :math:`\tanh' = 1 - s^2`). The
   Wronskian at x = 0, with :math:`s_1 = \varphi(0)` rational and :math:`s_2 = \varphi(1)` kept as a
   symbol S, is a polynomial in S; if it is not the zero polynomial the Wronskian is non-zero
   (:math:`\varphi(1)` is transcendental by Lindemann–Weierstrass), which proves independence. If it
   vanishes, the Wronskian's nullspace proposes combinations that are verified symbolically;
3. numeric spot-check, always: the smallest/largest singular value of the column-normalised
   matrix of the members at 64 points of [-3, 3], in mpmath with :data:`DPS` digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import sympy as sp

from theorylab.errors import ConfigError
from theorylab.theory.result import DerivationResult

__all__ = ["FAMILIES", "KINDS", "ATOMS", "DPS", "Member", "atom_parameters", "function_set",
           "function_set_latex", "explicit", "verify", "identifiability_report"]

FAMILIES = ("sigmoid", "tanh", "linear", "polynomial")
KINDS = ("expert", "gated")
DPS = 40                     # mpmath digits of the numeric spot check
N_NUMERIC_POINTS = 64        # Chebyshev points of the numeric check
DOMAIN = f"x in [-3, 3] ({N_NUMERIC_POINTS} Chebyshev points)"
NUMERIC_INDEPENDENT = 1e-15  # singular-value ratio above: independent; below 1e-25: dependent
NUMERIC_DEPENDENT = 1e-25

x = sp.Symbol("x")

# two distinct atoms (beta1, a, b); polynomial experts use a = (a1, a1/2, ...) and degree 2.
# b = 0 and b = log 3 make phi(b) rational (sigmoid 1/2, 3/4; tanh 0, 4/5), so the Wronskian at
# x = 0 is an exact rational number.
ATOMS = ((sp.Integer(0), sp.Integer(1), sp.Integer(0)), (sp.Integer(1), sp.Integer(2), sp.log(3)))


@dataclass(frozen=True)
class Member:
    """One member of a function set: ``expr`` in x (with s_j = phi(u_j), e_j = exp(beta1_j x)).

    ``tex`` names it in the book's notation (:math:`\\partial_a h_1` for
    :math:`\\partial h/\\partial a\\,(x, \\eta_1)`, :math:`F_j = e^{\\beta_{1j}x}h(x, \\eta_j)`).
    """

    atom: int
    label: str
    expr: sp.Expr
    tex: str = ""


# ---- the sets ----------------------------------------------------------------------------------

def _phi_derivs(family, s):
    """phi, phi', phi'' as polynomials in s = phi(u) (sigmoid, tanh)."""
    if family == "sigmoid":
        d1 = s - s ** 2
        return s, d1, sp.expand(d1 * (1 - 2 * s))
    d1 = 1 - s ** 2
    return s, d1, sp.expand(-2 * s * d1)


def _names(family, degree):
    return [f"a_{i + 1}" for i in range(degree)] + ["b"] if family == "polynomial" else ["a", "b"]


def atom_parameters(family: str, j: int, degree: int = 2) -> tuple:
    """(beta1, eta) of atom ``j`` of :data:`ATOMS`; polynomial experts use a = (a, a/2, ...)."""
    beta1, a, b = ATOMS[j]
    if family == "polynomial":
        return beta1, tuple(a / (i + 1) for i in range(degree)) + (b,)
    return beta1, (a, b)


def _raw_set(family, kind, degree, beta1, eta, s, e, j):
    """(label, tex, expr) of one atom's set before merging, at parameters (beta1, eta).

    h = phi(u), u = sum_u eta_u z_u with z = (x, 1) or (x, ..., x^p, 1); s stands for phi(u) and
    e for exp(beta1 x). ``j`` (None: generic) only enters the labels' subscripts.
    """
    names = _names(family, degree)
    z = [x ** (i + 1) for i in range(degree)] + [sp.Integer(1)] if family == "polynomial" \
        else [x, sp.Integer(1)]
    u = sum(c * zi for c, zi in zip(eta, z, strict=True))
    p0, p1, p2 = ((u, sp.Integer(1), sp.Integer(0)) if family in ("linear", "polynomial")
                  else _phi_derivs(family, s))
    q, sub = len(names), "" if j is None else f"_{j + 1}"

    def d(i, k=None):  # subscripted partial derivatives
        if k is None:
            return rf"\partial_{{{names[i]}}}"
        return rf"\partial_{{{names[i]}}}^2" if i == k else rf"\partial_{{{names[i]}}}\partial_{{{names[k]}}}"

    pairs = [(u_, v) for u_ in range(q) for v in range(u_, q)]
    if kind == "expert":
        h = f"h{sub}"
        raw = [(f"dh/d{names[i]}", rf"{d(i)} {h}", z[i] * p1) for i in range(q)]
        raw += [(f"d2h/d{names[i]}d{names[k]}", rf"{d(i, k)} {h}", z[i] * z[k] * p2)
                for i, k in pairs]
        raw += [(f"x dh/d{names[v]}", rf"x\,{d(v)} {h}", x * z[v] * p1) for v in range(q)]
        return raw
    F, b1 = f"F{sub}", r"\partial_{\beta_1}"
    raw = [("F", F, e * p0), ("dF/dbeta1", f"{b1} {F}", e * x * p0),
           ("d2F/dbeta1^2", rf"{b1}^2 {F}", e * x ** 2 * p0)]
    raw += [(f"dF/d{names[i]}", rf"{d(i)} {F}", e * z[i] * p1) for i in range(q)]
    raw += [(f"d2F/dbeta1d{names[i]}", rf"{b1}{d(i)} {F}", e * x * z[i] * p1) for i in range(q)]
    raw += [(f"d2F/d{names[i]}d{names[k]}", rf"{d(i, k)} {F}", e * z[i] * z[k] * p2)
            for i, k in pairs]
    return raw


def _function_set(family, kind, degree):
    if family not in FAMILIES:
        raise ConfigError(f"'family' must be one of {', '.join(map(repr, FAMILIES))}. Got {family!r}.")
    if kind not in KINDS:
        raise ConfigError(f"'kind' must be one of {', '.join(map(repr, KINDS))}. Got {kind!r}.")
    generic = _raw_set(family, kind, degree, sp.Symbol("beta_1"),
                       sp.symbols(" ".join(_names(family, degree)), seq=True),
                       sp.Symbol("s"), sp.Symbol("e"), None)
    members, merged, tex = [], [], {}
    for j in range(len(ATOMS)):
        beta1, eta = atom_parameters(family, j, degree)
        at_atom = _raw_set(family, kind, degree, beta1, eta, sp.Symbol(f"s_{j + 1}"),
                           sp.Symbol(f"e_{j + 1}"), j)
        seen = {}
        for (label, tx, expr), (_, _, gexpr) in zip(at_atom, generic, strict=True):
            label, gexpr = f"{label}@{j + 1}", sp.expand(gexpr)
            tex[label] = tx
            key = sp.srepr(gexpr)  # equal for every (beta1, eta): the same Taylor coefficient
            if key in seen and gexpr != 0:
                merged.append((label, seen[key]))
                continue
            seen.setdefault(key, label)
            members.append(Member(j, label, sp.expand(expr), tx))
    return members, merged, tex


def function_set(family: str, kind: str = "expert", degree: int = 2) -> tuple[list[Member], list]:
    """Members of the ``kind`` set for the two atoms of :data:`ATOMS` and the merges made.

    Returns (members, merged) with ``merged`` a list of (label, label it duplicates). A member
    is merged only when it equals an earlier member of its atom for *every* parameter value
    (compared with symbolic beta1, eta and phi), never because of the particular atom.
    """
    members, merged, _ = _function_set(family, kind, degree)
    return members, merged


def explicit(expr: sp.Expr, family: str, degree: int = 2) -> sp.Expr:
    """``expr`` as a function of x alone: s_j -> phi(u_j(x)), e_j -> exp(beta1_j x) at ATOMS."""
    subs = {}
    for j in range(len(ATOMS)):
        beta1, eta = atom_parameters(family, j, degree)
        z = [x ** (i + 1) for i in range(len(eta) - 1)] + [sp.Integer(1)]
        u = sum(c * zi for c, zi in zip(eta, z, strict=True))
        if family in ("sigmoid", "tanh"):
            subs[sp.Symbol(f"s_{j + 1}")] = _phi_value(family, u)
        subs[sp.Symbol(f"e_{j + 1}")] = sp.exp(beta1 * x)
    return expr.xreplace(subs)


def function_set_latex(family: str, kind: str = "expert", degree: int = 2) -> str:
    """LaTeX of one atom's set (before merging), with :math:`\\varphi` the activation, for the book."""
    phi = {"sigmoid": r"\sigma", "tanh": r"\tanh"}.get(family)
    a, b = sp.symbols("a b")
    if family == "polynomial":
        avec = sp.symbols(f"a_1:{degree + 1}")
        eta = list(avec) + [b]
        h = b + sum(ai * x ** (i + 1) for i, ai in enumerate(avec))
    else:
        eta = [a, b]
        h = sp.Function("varphi")(a * x + b) if phi else a * x + b
    if kind == "gated":
        beta1 = sp.Symbol("beta_1")
        F = sp.exp(beta1 * x) * h
        var = [beta1] + eta
        items = [F] + [sp.diff(F, v) for v in var]
        items += [sp.diff(F, v, w) for i, v in enumerate(var) for w in var[i:]]
    else:
        items = [sp.diff(h, v) for v in eta]
        items += [sp.diff(h, v, w) for i, v in enumerate(eta) for w in eta[i:]]
        items += [x * sp.diff(h, v) for v in eta]
    def tidy(e):  # phi^{(r)} evaluated at ax+b instead of sympy's Subs(Derivative(...))
        e = e.replace(lambda t: isinstance(t, sp.Subs),
                      lambda t: sp.Symbol(r"\varphi" + "'" * t.expr.derivative_count))
        return e.replace(lambda t: isinstance(t, sp.Function) and t.func.__name__ == "varphi",
                         lambda t: sp.Symbol(r"\varphi"))
    body = ",\\ ".join(sp.latex(tidy(sp.simplify(it))) for it in items)
    tex = r"\left\{" + body + r"\right\}"
    if phi:
        tex = tex.replace(r"\varphi", phi) + r"\quad(" + phi + r"^{(r)} \text{ at } a x + b)"
    return tex


# ---- decision ----------------------------------------------------------------------------------

def _is_identity(family):
    return family in ("linear", "polynomial")


def _numeric_ratio(members, family):
    """min/max singular value of the column-normalised matrix of the members on [-3, 3]."""
    syms = [x] + [sp.Symbol(f"{c}_{j + 1}") for j in range(len(ATOMS)) for c in "se"]
    fns = [sp.lambdify(syms, m.expr, "mpmath") for m in members]
    with mpmath.workdps(DPS):
        rows = []
        for i in range(N_NUMERIC_POINTS):
            xv = 3 * mpmath.cos(mpmath.pi * (2 * i + 1) / (2 * N_NUMERIC_POINTS))
            args = [xv]
            for beta1, a, b in ATOMS:
                u = a * xv + mpmath.mpf(sp.N(b, DPS + 10))
                s_val = (1 / (1 + mpmath.exp(-u)) if family == "sigmoid" else mpmath.tanh(u))
                args += [s_val, mpmath.exp(int(beta1) * xv)]
            rows.append([mpmath.mpf(f(*args)) for f in fns])
        M = mpmath.matrix(rows)
        for c in range(M.cols):
            norm = mpmath.sqrt(sum(M[r, c] ** 2 for r in range(M.rows)))
            for r in range(M.rows):
                M[r, c] /= norm
        svs = sorted(mpmath.svd_r(M, compute_uv=False))
        return float(svs[0] / svs[-1])


def _relation(members, vec):
    """A nullspace vector as ((label, coefficient), ...), first coefficient 1, zeros dropped."""
    first = next(c for c in vec if c != 0)
    return tuple((m.label, sp.nsimplify(sp.simplify(c / first)))
                 for c, m in zip(vec, members, strict=True) if c != 0)


def _relation_tex(relation, tex):
    """LaTeX of sum_i c_i f_i = 0 in the members' notation."""
    out = ""
    for label, c in relation:
        neg = c.could_extract_minus_sign()
        mag = -c if neg else c
        coef = "" if mag == 1 else (rf"\left({sp.latex(mag)}\right)" if mag.is_Add
                                    else sp.latex(mag)) + r"\,"
        out += (" - " if neg else (" + " if out else "")) + coef + tex[label]
    return out.lstrip(" +") + " = 0"


def _relation_text(relation):
    """'dh/da@1 - dh/da@2 = 0': sum_i c_i f_i = 0 with the members' labels."""
    terms = []
    for label, c in relation:
        neg = c.could_extract_minus_sign()
        mag = -c if neg else c
        terms.append(("- " if neg else "+ ") + ("" if mag == 1 else f"{mag}*") + label)
    return " ".join(terms).removeprefix("+ ") + " = 0"


def _vanishes(relation, members, family, degree):
    """sum c_i f_i is identically 0 in x: as a polynomial in (x, s_j, e_j), else after putting
    the explicit functions in and simplifying."""
    exprs = {m.label: m.expr for m in members}
    combo = sp.expand(sum(c * exprs[label] for label, c in relation))
    return combo == 0 or sp.simplify(explicit(combo, family, degree)) == 0


def _polynomial_decision(members):
    """Exact coefficient matrix over the monomials e_j^k x^m (exact because distinct e^{beta1 x}
    and distinct powers of x are independent); returns (rank, nullspace basis)."""
    polys = [sp.Poly(m.expr, x, *sorted(m.expr.free_symbols - {x}, key=str)) for m in members]
    keys = sorted({(str(p.gens[1:]), mon) for p in polys for mon in p.monoms()})
    index = {k: i for i, k in enumerate(keys)}
    A = sp.zeros(len(keys), len(members))
    for c, p in enumerate(polys):
        for mon, coef in zip(p.monoms(), p.coeffs(), strict=True):
            A[index[(str(p.gens[1:]), mon)], c] = coef
    return A.rank(), A.nullspace()


def _wronskian_decision(members, family):
    """Exact Wronskian at x = 0 (s_j = phi(b_j) rational, e_j = 1), computed on sympy Polys.

    d/dx acts on polynomials in (x, s_j, e_j) as
    d/dx + sum_j a_j phi'(s_j) d/ds_j + beta1_j e_j d/de_j.
    Returns (deficient, verified nullspace vectors, det, nullity of W): deficient False when
    det != 0 (independence proved), None when no vector of W's nullspace is a true relation.
    """
    s_syms = [sp.Symbol(f"s_{j + 1}") for j in range(len(ATOMS))]
    e_syms = [sp.Symbol(f"e_{j + 1}") for j in range(len(ATOMS))]
    gens = (x, *s_syms, *e_syms)
    polys = [sp.Poly(m.expr, *gens, domain="QQ") for m in members]
    chain = [(sp.Poly(a * _phi_derivs(family, s)[1], *gens, domain="QQ"), s,
              sp.Poly(beta1 * e, *gens, domain="QQ"), e)
             for (beta1, a, _), s, e in zip(ATOMS, s_syms, e_syms, strict=True)]

    def D(p):
        out = p.diff(x)
        for slope, s, grow, e in chain:
            out += p.diff(s) * slope + p.diff(e) * grow
        return out

    at0 = ([sp.Integer(0)] + [sp.simplify(_phi_value(family, b)) for _, _, b in ATOMS]
           + [sp.Integer(1)] * len(ATOMS))
    if not all(v.is_Rational for v in at0):
        raise RuntimeError(f"ATOMS must make phi(b_j) rational for an exact Wronskian. Got {at0}.")
    N = len(polys)
    W = sp.zeros(N, N)
    for c, p in enumerate(polys):
        for r in range(N):
            W[r, c] = p(*at0)
            if r < N - 1:
                p = D(p)
    det = W.det(method="bareiss")
    if det != 0:
        return False, [], det, 0
    candidates = W.nullspace()
    found = []
    for vec in candidates:
        den = sp.ilcm(*[sp.fraction(sp.nsimplify(v))[1] for v in vec])
        vec = [sp.nsimplify(v) * den for v in vec]
        if sp.expand(sum(c * m.expr for c, m in zip(vec, members, strict=True))) == 0:
            found.append(vec)
    return (True if found else None), found, det, len(candidates)


def _phi_value(family, u):
    return 1 / (1 + sp.exp(-u)) if family == "sigmoid" else sp.tanh(u).rewrite(sp.exp)


def verify(family: str, kind: str = "expert", degree: int = 2,
           extra: tuple = ()) -> DerivationResult:
    """Decide strong identifiability of ``family`` (module docstring), symbolic then numeric.

    ``holds`` is True when the set is linearly independent; ``method`` says which step decided
    it. ``details``:

    * ``relations``: a basis of the vanishing combinations of the nonzero members, each
      ((label, sympy coefficient), ...) with first coefficient 1 (the exact nullspace of the
      coefficient matrix; for sigmoid/tanh the verified part of the Wronskian's nullspace);
      empty when independent. ``relations_complete``: the basis spans every dependence.
      ``relations_vanish``: each relation is identically 0 in x (checked by sympy).
    * ``dependence`` / ``dependence_latex``: the relations as text "f - g = 0" / LaTeX in the
      book's notation (None / () when independent); ``vanishing``: identically-zero members
      (each one a dependence by itself) and ``vanishing_latex``.
    * ``merged``: (label, kept label) pairs, members equal to an earlier one of the same atom
      for every parameter value (one Taylor coefficient; :func:`function_set`), and
      ``merged_latex`` those identities in LaTeX; these are not dependences.
    * ``n_functions``, ``rank`` (of the nonzero members), ``numeric_ratio`` (smallest/largest
      singular value of the sampled set), ``numeric_agrees`` (the numeric check gives the same
      verdict), ``kind``, ``dps`` and the deciding step's numbers (``wronskian_at_0``).

    ``extra`` appends members (``Member`` objects) to the set, e.g. to inject a dependence and
    see the check fail.
    """
    members, merged, tex = _function_set(family, kind, degree)
    members = members + list(extra)
    tex.update({m.label: m.tex or rf"\mathrm{{{m.label}}}" for m in extra})
    vanishing = tuple(m.label for m in members if m.expr == 0)
    nonzero = [m for m in members if m.expr != 0]
    details = {}
    if _is_identity(family) or all(not (m.expr.free_symbols & {sp.Symbol("s_1"), sp.Symbol("s_2")})
                                   for m in nonzero):
        rank, null = _polynomial_decision(nonzero)
        deficient, complete = bool(null), True
        details["rank"] = int(rank)
        method = "symbolic: exact nullspace of the polynomial coefficient matrix"
    else:
        deficient, null, det, nullity = _wronskian_decision(nonzero, family)
        complete = len(null) == nullity
        details["wronskian_at_0"] = str(sp.factor(det)) if det != 0 else "0"
        details["rank"] = len(nonzero) - nullity  # rank of W(0), a lower bound when det == 0
        method = "symbolic: exact Wronskian at x=0 is nonzero"
        if deficient:
            method = "symbolic: Wronskian nullspace combination verified by expand(...) == 0"
        elif deficient is None:
            method = "numeric only: Wronskian vanishes at x=0, no exact combination found"
    relations = tuple(_relation(nonzero, vec) for vec in null)
    details.update(
        relations=relations, relations_complete=complete,
        relations_vanish=all(_vanishes(r, nonzero, family, degree) for r in relations),
        dependence=tuple(_relation_text(r) for r in relations) or None,
        dependence_latex=tuple(_relation_tex(r, tex) for r in relations),
        vanishing_latex=tuple(tex[label] + " = 0" for label in vanishing),
        merged_latex=tuple(f"{tex[a]} = {tex[b]}" for a, b in merged))
    if vanishing:
        method += f"; {len(vanishing)} member(s) vanish identically"
    ratio = _numeric_ratio(nonzero, family)
    numeric_dep = ratio < NUMERIC_DEPENDENT
    numeric_ind = ratio > NUMERIC_INDEPENDENT
    if deficient is None:
        holds = numeric_ind and not vanishing
    else:
        holds = not deficient and not vanishing
    agrees = (numeric_ind and not deficient) or (numeric_dep and bool(deficient)) or (
        deficient is None and (numeric_ind or numeric_dep))
    if vanishing and not deficient:
        agrees = numeric_ind  # the nonzero members are independent; the zeros decide
    how = "FAILED" if deficient is None and not (numeric_ind or numeric_dep) else (
        "numeric" if deficient is None else "symbolic")
    return DerivationResult(
        family, bool(holds), method, {"linear independence": how},
        float("nan"),  # a decision, not an identity: its numeric side is numeric_ratio
        N_NUMERIC_POINTS, DOMAIN,
        {"kind": kind, "vanishing": vanishing, "merged": tuple(merged),
         "n_functions": len(members), "numeric_ratio": float(ratio),
         "numeric_agrees": bool(agrees), "dps": DPS, **details})


def identifiability_report(kind: str = "expert",
                           degree: int = 2) -> dict[str, DerivationResult]:
    """:func:`verify` for every family of :data:`FAMILIES`."""
    return {family: verify(family, kind, degree) for family in FAMILIES}
