r"""Least-squares fit of the softmax-gated MoE: projected Levenberg–Marquardt with multi-start (numba).

Nguyen, Ho, Rinaldo (arXiv 2402.02952, ICML 2024): the LSE
:math:`\hat G_n \in \arg\min_G \sum_{i=1}^n (Y_i - f_G(X_i))^2` over a compact box of parameters.
The model, its analytic Jacobian and the packing of :math:`\theta` live in
:mod:`theorylab.kernels.moe.model`; the package :mod:`theorylab.kernels.moe` re-exports both.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from theorylab.errors import ConfigError, InputError
from theorylab.kernels.fastexp import _exp
from theorylab.kernels.moe.model import (
    MoEParams,
    _check_family,
    _check_X,
    _deg,
    n_free,
    pack,
    unpack,
)
from theorylab.validation import check_finite, check_int, check_real, check_shape

__all__ = ["FitResult", "random_start", "split_start", "relocate_start", "fit_lse", "lm_fit"]


class FitResult(NamedTuple):
    """Outcome of :func:`fit_lse`: best parameters, their packed form and diagnostics.

    objective is :math:`\\sum_i (Y_i - f_{\\hat G}(X_i))^2` on the full data; n_iter the LM
    iterations of the returned polish; converged whether its stopping rule fired before max_iter;
    n_starts the number of starts screened (random and split); n_moves the split–merge moves
    tried (LM runs after the polish).
    """

    params: MoEParams
    theta: np.ndarray
    objective: float
    n_iter: int
    converged: bool
    n_starts: int
    n_moves: int = 0


# ----------------------------------------------------------------------------------------------
# the Levenberg–Marquardt core
# ----------------------------------------------------------------------------------------------

_BLOCK = 128  # points per block of the LM pass: its columns stay in L1


@njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _normal_core(X, y, theta, k, act, deg, A, g):
    r"""One pass over the data: A = JᵀJ, g = Jᵀr (J never stored); returns S = rᵀr.

    Vectorised across points: per block of ``_BLOCK`` points every quantity is a column —
    features z (x, its powers up to ``deg``, 1), logits :math:`\beta_{1i}^\top x + \beta_{0i}`
    and their max, gates :math:`\pi_i` (softmax through the branch-free
    :func:`~theorylab.kernels.fastexp._exp`), experts :math:`h_i = \phi(\eta_i^\top z)` and
    :math:`\phi'`, f, r = f − y, the gradient columns
    :math:`\partial f/\partial(\beta_{1i}, \beta_{0i}) = \pi_i (h_i - f)(x, 1)` and
    :math:`\partial f/\partial \eta_i = \pi_i \phi'(\eta_i^\top z)\, z` — then A += G Gᵀ
    and g += G r as dot products. Every loop is innermost over the points and branch-free, so
    LLVM vectorises it. Sums are reassociated within a block (``fastmath``): results differ from
    a scalar pass by rounding only (a test checks them against the Jacobian), are
    bit-reproducible on one machine, and differ in the last bits between CPUs with different
    vector widths, which can change the optimum an over-fitted fit ends in (README,
    "Reproducibility"). ``error_model`` "numpy": a Python-style zero-division check would stop the
    vectorisation (the softmax denominator is ≥ 1 here). About 9–11 ns per point for d = 1,
    k = 3 sigmoid experts and 13 ns for d = 2 (the scalar pass with libm's exp: 58 and 133 ns).
    """
    n, d = X.shape
    m = deg * d + 1
    P = theta.shape[0]
    g1 = (k - 1) * d
    e0 = g1 + k - 1
    B = _BLOCK
    W = np.empty((m + 3 * k + P + 4, B))  # one allocation: the block's columns
    Z = W[:m]
    E = W[m:m + k]
    H = W[m + k:m + 2 * k]
    HP = W[m + 2 * k:m + 3 * k]
    G = W[m + 3 * k:m + 3 * k + P]
    mx, tot, f, r = W[m + 3 * k + P], W[m + 3 * k + P + 1], W[m + 3 * k + P + 2], W[m + 3 * k + P + 3]
    A[:, :] = 0.0
    g[:] = 0.0
    s = 0.0
    for start in range(0, n, B):
        nb = min(B, n - start)
        for t in range(d):
            for j in range(nb):
                Z[t, j] = X[start + j, t]
        for p in range(1, deg):
            for t in range(d):
                for j in range(nb):
                    Z[p * d + t, j] = Z[(p - 1) * d + t, j] * Z[t, j]
        for j in range(nb):
            Z[m - 1, j] = 1.0
            mx[j] = 0.0
        for i in range(k - 1):
            b = theta[g1 + i]
            for j in range(nb):
                E[i, j] = b
            for t in range(d):
                a = theta[i * d + t]
                for j in range(nb):
                    E[i, j] += a * Z[t, j]
            for j in range(nb):
                mx[j] = max(mx[j], E[i, j])
        for j in range(nb):
            E[k - 1, j] = 0.0
            tot[j] = 0.0
            f[j] = 0.0
        for i in range(k):  # log-sum-exp shift: finite for any finite logits
            for j in range(nb):
                e = _exp(E[i, j] - mx[j])
                E[i, j] = e
                tot[j] += e
        for j in range(nb):
            tot[j] = 1.0 / tot[j]
        for i in range(k):
            for j in range(nb):
                E[i, j] *= tot[j]
        for i in range(k):
            for j in range(nb):
                H[i, j] = 0.0
            for q in range(m):
                a = theta[e0 + i * m + q]
                for j in range(nb):
                    H[i, j] += a * Z[q, j]
            if act == 0:  # sigmoid; _exp's clamp keeps 1/(1 + e) finite
                for j in range(nb):
                    sg = 1.0 / (1.0 + _exp(-H[i, j]))
                    H[i, j] = sg
                    HP[i, j] = sg * (1.0 - sg)
            elif act == 1:  # tanh(u) = 1 - 2 / (1 + e^{2u}), absolute error ~1e-16
                for j in range(nb):
                    th = 1.0 - 2.0 / (1.0 + _exp(2.0 * H[i, j]))
                    H[i, j] = th
                    HP[i, j] = 1.0 - th * th
            else:
                for j in range(nb):
                    HP[i, j] = 1.0
            for j in range(nb):
                f[j] += E[i, j] * H[i, j]
        for j in range(nb):
            r[j] = f[j] - y[start + j]
        for i in range(k - 1):  # gates: pi_i (h_i - f) (x, 1)
            for j in range(nb):
                G[g1 + i, j] = E[i, j] * (H[i, j] - f[j])
            for t in range(d):
                for j in range(nb):
                    G[i * d + t, j] = G[g1 + i, j] * Z[t, j]
        for i in range(k):  # experts: pi_i phi'(u_i) z
            for q in range(m):
                for j in range(nb):
                    G[e0 + i * m + q, j] = E[i, j] * HP[i, j] * Z[q, j]
        acc = 0.0
        for j in range(nb):
            acc += r[j] * r[j]
        s += acc
        for p in range(P):
            acc = 0.0
            for j in range(nb):
                acc += G[p, j] * r[j]
            g[p] += acc
            for q in range(p + 1):
                acc = 0.0
                for j in range(nb):
                    acc += G[p, j] * G[q, j]
                A[p, q] += acc
    for p in range(P):
        for q in range(p + 1, P):
            A[p, q] = A[q, p]
    return s


@njit(cache=True)
def _chol_solve(M, b, out):
    """Solve M out = b for symmetric positive definite M (Cholesky); False if not SPD."""
    P = M.shape[0]
    L = np.zeros((P, P))
    for i in range(P):
        for j in range(i + 1):
            s = M[i, j]
            for t in range(j):
                s -= L[i, t] * L[j, t]
            if i == j:
                if s <= 0.0 or not np.isfinite(s):
                    return False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    w = np.empty(P)
    for i in range(P):
        s = b[i]
        for t in range(i):
            s -= L[i, t] * w[t]
        w[i] = s / L[i, i]
    for i in range(P - 1, -1, -1):
        s = w[i]
        for t in range(i + 1, P):
            s -= L[t, i] * out[t]
        out[i] = s / L[i, i]
    return True


@njit(cache=True)
def _free_mask(theta, g, bound, free):
    """free[p]: coordinate p may move (it is not held at the box by a gradient pushing outwards)."""
    for p in range(theta.shape[0]):
        free[p] = not ((theta[p] >= bound and g[p] < 0.0) or (theta[p] <= -bound and g[p] > 0.0))


@njit(cache=True)
def _damped_system(A, g, free, D, dmax, lam, M, rhs):
    """Fill M = A + lam diag(max(D, floor)) and rhs = -g over the ``free`` coordinates (held ones
    get the identity row and 0), floor = 1e-12 max diag(A): the LM step solves M delta = rhs."""
    P = g.shape[0]
    floor = 1e-12 * max(dmax, 1e-300)
    for p in range(P):
        for q in range(P):
            M[p, q] = A[p, q] if (free[p] and free[q]) else 0.0
        if free[p]:
            M[p, p] += lam * max(D[p], floor)
            rhs[p] = -g[p]
        else:
            M[p, p] = 1.0
            rhs[p] = 0.0


@njit(cache=True)
def _gn_gain(A, g, free, D, dmax, M, rhs, out):
    r"""SSE decrease :math:`g^\top A^{-1} g` predicted by the undamped Gauss–Newton step over the
    ``free`` coordinates (a 1e-10 Marquardt floor keeps singular directions solvable); M, rhs,
    out are scratch. Returns inf when even the floored system is not positive definite."""
    _damped_system(A, g, free, D, dmax, 1e-10, M, rhs)
    if not _chol_solve(M, rhs, out):
        return np.inf
    gain = 0.0
    for p in range(g.shape[0]):
        gain += rhs[p] * out[p]  # (-g)^T (-A^{-1} g)
    return gain


@njit(cache=True)
def _lm_core(X, y, theta0, k, act, deg, max_iter, tol, bound):
    r"""Projected Levenberg–Marquardt with Marquardt scaling and Nielsen's damping update.

    Step: :math:`(J^\top J + \lambda D)\,\delta = -J^\top r`, D the running maximum of
    :math:`\mathrm{diag}(J^\top J)` over the iterations (MINPACK's scaling; it keeps steps short in
    the flat directions of over-specified fits and halves the iterations there), over the free
    coordinates (those not held at the box :math:`|\theta_p| \le` ``bound`` by a gradient pushing
    outwards), then clipped to the box; accepted if the SSE drops. Stops (converged) after two
    accepted steps in a row that lower the SSE by less than ``tol`` (relative) *and* after which
    the undamped Gauss–Newton model predicts less than ``tol`` (relative) still to gain,
    :math:`g^\top (J^\top J)^{-1} g < \mathrm{tol}\cdot S`; when the free gradient vanishes;
    or when the damping blows up (no descent left in floating point). The model test matters
    in the flat directions of over-specified fits: there the Marquardt-scaled, damped steps
    crawl, and a rule on the actual decrease alone stops short of the minimum.
    Returns (theta, S, iters, converged).
    """
    P = theta0.shape[0]
    theta = np.minimum(np.maximum(theta0, -bound), bound)
    trial = np.empty(P)
    A = np.empty((P, P))
    g = np.empty(P)
    A_new = np.empty((P, P))  # normal equations at the trial point: reused when it is accepted
    g_new = np.empty(P)
    M = np.empty((P, P))
    rhs = np.empty(P)
    delta = np.empty(P)
    free = np.empty(P, dtype=np.bool_)
    S = _normal_core(X, y, theta, k, act, deg, A, g)
    dmax = 0.0
    D = np.empty(P)  # Marquardt scaling, non-decreasing over iterations (as MINPACK's diag)
    for p in range(P):
        dmax = max(dmax, A[p, p])
        D[p] = A[p, p]
    lam = 1e-3
    nu = 2.0
    it = 0
    small = 0
    converged = False
    while it < max_iter:
        it += 1
        _free_mask(theta, g, bound, free)
        gmax = 0.0
        for p in range(P):
            if free[p]:
                gmax = max(gmax, abs(g[p]))
        if gmax <= 1e-300 or S <= 1e-300:
            converged = True
            break
        _damped_system(A, g, free, D, dmax, lam, M, rhs)
        if not _chol_solve(M, rhs, delta):
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                break
            continue
        for p in range(P):
            trial[p] = min(max(theta[p] + delta[p], -bound), bound)
            delta[p] = trial[p] - theta[p]
        S_new = _normal_core(X, y, trial, k, act, deg, A_new, g_new)
        # predicted decrease of the Gauss-Newton model, -(2 g.d + d^T A d), for the clipped step
        pred = 0.0
        for p in range(P):
            ad = 0.0
            for q in range(P):
                ad += A[p, q] * delta[q]
            pred -= delta[p] * (2.0 * g[p] + ad)
        if np.isfinite(S_new) and S_new < S:
            rel = (S - S_new) / S
            rho = (S - S_new) / pred if pred > 0.0 else 1.0
            theta[:] = trial
            S = S_new
            A, A_new = A_new, A
            g, g_new = g_new, g
            for p in range(P):
                dmax = max(dmax, A[p, p])
                D[p] = max(D[p], A[p, p])
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            lam = max(lam, 1e-15)
            nu = 2.0
            done = False
            if rel < tol:  # a small step counts only if the GN model sees little left too
                _free_mask(theta, g, bound, free)
                done = _gn_gain(A, g, free, D, dmax, M, rhs, delta) < tol * S
            small = small + 1 if done else 0
            if small >= 2:
                converged = True
                break
        else:
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                converged = True  # no descent direction left at machine precision
                break
    return theta, S, it, converged


# ----------------------------------------------------------------------------------------------
# multi-start LSE
# ----------------------------------------------------------------------------------------------

def random_start(rng: np.random.Generator, X, y, family: str, k: int, degree: int = 1,
                 init_scale: float = 3.0) -> np.ndarray:
    """One data-driven start theta (never uses the true parameters).

    Gates: slopes :math:`\\mathcal{N}(0, (s/\\mathrm{sd}(X))^2)` with :math:`s = 0.5\\,`init_scale,
    intercepts :math:`\\mathcal{N}(0, 1)`. Experts: a *local fit*, least squares of the
    linearised target :math:`\\varphi^{-1}(y)` (clipped logit / artanh; y itself for identity
    experts) on z(x) over the n/k points nearest a random data point, jittered by 10 %; for
    sigmoid/tanh each expert is instead, with probability 1/2, a random direction with slope
    :math:`|\\mathcal{N}(0, \\text{init\\_scale}^2)|/\\mathrm{sd}(X)` whose transition passes
    through a random data point (diversity).
    """
    n, d = X.shape
    deg = _deg(family, degree)
    m = deg * d + 1
    sx = X.std(axis=0) + 1e-12
    Z = np.concatenate([X ** (p + 1) for p in range(deg)] + [np.ones((n, 1))], axis=1)
    size = min(n, max(2 * m, n // k))
    centers = X[rng.integers(n, size=k)]
    partition = rng.random() < 0.5
    if partition:
        # gates that favour expert i near its centre c_i: logits -g|x - c_i|^2/2 up to a common term
        gam = abs(rng.normal(0.0, init_scale)) / (sx ** 2).mean()
        beta1 = gam * centers
        beta0 = -0.5 * gam * (centers ** 2).sum(axis=1) + rng.normal(0.0, 0.1, size=k)
    else:
        beta1 = rng.normal(0.0, 0.5 * init_scale, size=(k, d)) / sx
        beta0 = rng.normal(0.0, 1.0, size=k)
    eta = np.empty((k, m))
    for i in range(k):
        if family in ("sigmoid", "tanh") and not partition and rng.random() < 0.5:
            w = rng.normal(size=d)
            w /= np.linalg.norm(w) + 1e-300
            a = w * abs(rng.normal(0.0, init_scale)) / sx
            eta[i, :d] = a
            eta[i, d] = -a @ X[rng.integers(n)] + rng.normal(0.0, 0.5)
            continue
        # local fit: least squares of the linearised target phi^{-1}(y) on z(x) over the points
        # nearest the centre c_i (identity activation: y itself)
        idx = np.argsort(((X - centers[i]) ** 2).sum(axis=1))[:size]
        t = y[idx]
        if family == "sigmoid":
            t = np.clip(t, 0.02, 0.98)
            t = np.log(t / (1.0 - t))
        elif family == "tanh":
            t = np.arctanh(np.clip(t, -0.96, 0.96))
        coef, *_ = np.linalg.lstsq(Z[idx], t, rcond=None)
        eta[i] = coef + rng.normal(0.0, 0.1, size=m) * (np.abs(coef) + 0.1)
    return pack(MoEParams(beta1, beta0, eta))


def split_start(rng: np.random.Generator, theta_prev, family: str, k: int, d: int, atom: int,
                degree: int = 1, jitter: float = 0.1) -> np.ndarray:
    r"""A k-atom start from a (k − 1)-atom fit ``theta_prev``: atom ``atom`` is split in two.

    The two copies share its gate with intercept :math:`\beta_{0} - \log 2` (so the mixture is
    unchanged) and move apart by :math:`\pm u`, with :math:`u` Gaussian of relative size
    ``jitter``, in the expert and gate-slope coordinates. These are the configurations by which
    an over-fitted LSE approaches :math:`G_*` (the over-specified Voronoi cells of
    :math:`D_1`); random starts reach them rarely, because an extra atom finds a local optimum
    at the edge of the box (a parked atom) first.
    """
    prev = unpack(theta_prev, k - 1, d, family, degree)
    b1 = np.insert(prev.beta1, atom, prev.beta1[atom], axis=0)
    b0 = np.insert(prev.beta0, atom, prev.beta0[atom])
    eta = np.insert(prev.eta, atom, prev.eta[atom], axis=0)
    b0[atom:atom + 2] -= np.log(2.0)
    u_eta = rng.normal(size=eta.shape[1]) * jitter * (np.abs(eta[atom]) + 0.1)
    u_b1 = rng.normal(size=d) * jitter * (np.abs(b1[atom]) + 0.1)
    eta[atom] += u_eta
    eta[atom + 1] -= u_eta
    b1[atom] += u_b1
    b1[atom + 1] -= u_b1
    return pack(MoEParams(b1, b0, eta))


def relocate_start(rng: np.random.Generator, theta, family: str, k: int, d: int, drop: int,
                   atom: int, degree: int = 1, jitter: float = 0.1) -> np.ndarray:
    r"""A k-atom start from a k-atom fit ``theta``: atom ``drop`` is removed and atom ``atom``
    (≠ drop) is split in two (:func:`split_start`) — a split–merge move (Ueda et al., "SMEM
    algorithm for mixture models", Neural Computation 2000).

    Removing atom j renormalises the other gates: the softmax is invariant to a common shift of
    the logits, so the remaining k − 1 gates are re-identified by subtracting the last remaining
    atom's :math:`(\beta_{1}, \beta_{0})` from all of them. The move sends an atom that fits
    little (parked at the edge of the box, or fitting a few noise points) to where a split atom
    can lower the objective — the configuration an over-fitted LSE takes near :math:`G_*`,
    which a local search from a parked atom does not reach.
    """
    if drop == atom:
        raise ConfigError(f"'drop' and 'atom' of relocate_start must differ. Got {drop} and {atom}.")
    p = unpack(theta, k, d, family, degree)
    keep = [i for i in range(k) if i != drop]
    prev = pack(MoEParams(p.beta1[keep], p.beta0[keep], p.eta[keep]))  # pack re-identifies the gates
    return split_start(rng, prev, family, k, d, keep.index(atom), degree, jitter)


def _moves(rng, X, y, theta, S, k, d, family, act, deg, degree, tol, max_iter, bnd, rounds):
    r"""Split–merge search around a fit: from (theta, S), try every relocate move (drop atom j,
    split atom i; :func:`relocate_start`) run to convergence by LM on all the data, and move to
    the best result if it lowers the objective; repeat for at most ``rounds`` rounds or until a
    round finds no lower objective. Never increases S.
    Returns (theta, S, iters, converged, moved, tried)."""
    it, conv, tried, moved = 0, True, 0, False
    for _ in range(rounds):
        best = None
        for drop in range(k):
            for atom in range(k):
                if atom == drop:
                    continue
                th0 = relocate_start(rng, theta, family, k, d, drop, atom, degree)
                res = _lm_core(X, y, th0, k, act, deg, max_iter, tol, bnd)
                tried += 1
                if np.isfinite(res[1]) and res[1] < S and (best is None or res[1] < best[1]):
                    best = res
        if best is None:
            break
        theta, S, it, conv = best[0], best[1], best[2], best[3]
        moved = True
    return theta, S, it, conv, moved, tried


def fit_lse(X, y, family: str, k: int, *, seed: int, degree: int = 1, n_starts: int = 20,
            max_iter: int = 200, tol: float | None = None, screen_size: int = 2000, n_polish: int = 3,
            init_scale: float = 3.0, screen_iter: int = 100, stage_factor: int = 5,
            bound: float | None = None, split_starts: int = 2, starts=None,
            polish_margin: float = 50.0, move_rounds: int = 2, move_size: int = 10_000) -> FitResult:
    r"""Least-squares estimate :math:`\hat G_n \in \arg\min_G \sum_i (Y_i - f_G(X_i))^2`.

    Multi-start projected Levenberg–Marquardt (:func:`_lm_core`):

    1. *screen*: ``n_starts`` data-driven starts (:func:`random_start`, all drawn from
       ``np.random.default_rng(seed)``, never from the truth) and, for k ≥ 2, ``split_starts``
       starts per atom of a (k − 1)-atom LSE of the same subsample (:func:`split_start`) run for
       ``screen_iter`` iterations on a random subsample of ``min(n, screen_size)`` points
       (``starts``, a sequence of packed :math:`\theta`, replaces the random draws: benchmarks
       give every solver the same starts);
    2. *polish*: the ``n_polish`` best distinct optima (objectives 1e-7 apart), and the best
       split start when none of them is one, are run to
       convergence (``tol``, ``max_iter``) on nested random subsamples growing by
       ``stage_factor`` (screen_size, 5 screen_size, ...) and finally on all n points. After
       each stage only the candidates whose objective is within ``polish_margin`` noise
       variances of the best (:math:`\hat\sigma^2 = S_{\text{best}}/m` on m points) go on:
       differences of a few :math:`\sigma^2` are noise fitting that a larger sample can
       reorder, while a configuration that is worse by a systematic misfit falls further
       behind as m grows. Each stage starts next to its optimum, so the expensive full-data
       stage needs few iterations;
    3. *split–merge moves* (k ≥ 2, ``move_rounds`` > 0): from the polished best, every move
       "remove atom j, split atom i in two" (:func:`relocate_start`, k(k − 1) moves) is run to
       convergence on all n points, and the fit moves to the best result that lowers the
       objective; up to ``move_rounds`` rounds, stopping at the first round that finds nothing
       lower. For n > ``move_size`` the moves run on the nested subsample of ``move_size``
       points (the staged polish's sample, so their cost stays bounded at n = 10⁶) and the best
       move found there is polished on all n points and taken only if it lowers the full
       objective. The moves draw from their own generator (``default_rng([seed, 1])``), so
       steps 1–2 are unchanged and the moves can only lower the objective. They address the misses the
       many-start reference (:func:`~theorylab.kernels.moe.reference.reference_lse`) finds in
       over-fitted problems: an atom parked at a local optimum that more random starts rarely
       leave.

    ``tol`` is the relative SSE decrease below which LM stops (twice in a row); the default
    1e-4/n is an absolute decrease of about :math:`10^{-4}\sigma^2`, far below the statistical
    resolution of the objective (:math:`\sigma^2` per parameter), so the fit is exact for the
    study while flat over-specified directions do not cost hundreds of iterations.

    ``bound`` (optional) confines every free parameter to :math:`|\theta_p| \le` bound, the
    compact parameter space the paper assumes; without it over-specified fits may send an unused
    expert's slope to infinity (a sharp step fitting noise).

    Returns
    -------
    FitResult(params, theta, objective, n_iter, converged, n_starts, n_moves): objective on the full data;
    n_iter and converged describe the final (full-data) polish.

    Raises
    ------
    ConfigError
        unknown family; k, degree, n_starts, max_iter, screen_size, n_polish, screen_iter < 1,
        stage_factor < 2, split_starts < 0, move_rounds < 0, move_size < 1; tol, init_scale or
        bound not > 0;
        polish_margin < 0.
    InputError
        non-finite or mis-shaped X / y; fewer points than free parameters.

    Examples
    --------
    >>> from theorylab.kernels.moe import moe_predict
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-3, 3, size=(200, 1))
    >>> true = MoEParams(np.array([[2.0], [0.0]]), np.array([-0.5, 0.0]),
    ...                  np.array([[-2.0, 1.0], [3.0, -1.0]]))
    >>> fit = fit_lse(X, moe_predict(X, true, "sigmoid"), "sigmoid", 2, seed=0)
    >>> fit.objective < 1e-12
    True
    """
    owner = "fit_lse"
    act, deg = _check_family(family, degree, owner)
    check_int(owner, "k", k, lo=1)
    check_int(owner, "seed", seed, lo=0)
    check_int(owner, "n_starts", n_starts, lo=1)
    check_int(owner, "max_iter", max_iter, lo=1)
    check_int(owner, "screen_size", screen_size, lo=1)
    check_int(owner, "n_polish", n_polish, lo=1)
    check_int(owner, "screen_iter", screen_iter, lo=1)
    check_int(owner, "stage_factor", stage_factor, lo=2)
    check_int(owner, "split_starts", split_starts, lo=0)
    check_int(owner, "move_rounds", move_rounds, lo=0)
    check_int(owner, "move_size", move_size, lo=1)
    check_real(owner, "polish_margin", polish_margin, lo=0.0)
    if tol is not None:
        check_real(owner, "tol", tol, lo=0.0, lo_open=True)
    check_real(owner, "init_scale", init_scale, lo=0.0, lo_open=True)
    bnd = np.inf if bound is None else check_real(owner, "bound", bound, lo=0.0, lo_open=True)
    X, y = _check_X(X, y)
    n, d = X.shape
    tol = 1e-4 / n if tol is None else tol
    P = n_free(k, d, family, degree)
    if n < P:
        raise InputError(f"'X' of fit_lse must have at least as many rows as free parameters "
                         f"({P} for k={k}, d={d}, family={family!r}). Got {n}.")
    rng = np.random.default_rng(seed)
    sizes = [min(n, max(screen_size, P))]
    while sizes[-1] * stage_factor < n:
        sizes.append(sizes[-1] * stage_factor)
    if sizes[-1] < n:
        sizes.append(n)
    perm = rng.permutation(n) if n > sizes[0] else None

    def sample(m):
        if m == n:
            return X, y
        idx = perm[:m]
        return np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])

    Xs, ys = sample(sizes[0])
    if starts is None:
        starts = [random_start(rng, Xs, ys, family, k, degree, init_scale) for _ in range(n_starts)]
    else:
        starts = [check_shape("starts[...]", check_finite("starts[...]", np.asarray(th, dtype=float)), (P,))
                  for th in starts]
        if not starts:
            raise InputError("'starts' of fit_lse must hold at least one start. Got none.")
    n_random = len(starts)
    if k >= 2 and split_starts > 0 and Xs.shape[0] >= n_free(k - 1, d, family, degree):
        prev = fit_lse(Xs, ys, family, k - 1, seed=int(rng.integers(2 ** 31)), degree=degree,
                       n_starts=max(1, n_starts // 2), max_iter=max_iter, tol=tol, screen_size=screen_size,
                       n_polish=1, init_scale=init_scale, screen_iter=screen_iter,
                       stage_factor=stage_factor, bound=bound, split_starts=0, move_rounds=0)
        starts += [split_start(rng, prev.theta, family, k, d, atom, degree)
                   for atom in range(k - 1) for _ in range(split_starts)]
    screened = []
    for i, th0 in enumerate(starts):
        th, S, it, conv = _lm_core(Xs, ys, th0, k, act, deg, screen_iter, tol, bnd)
        screened.append((S, th, it, conv, i >= n_random))
    screened.sort(key=lambda c: c[0])
    distinct = []  # starts that reached the same optimum are polished once
    for c in screened:
        if all(abs(c[0] - o[0]) > 1e-7 * abs(o[0]) for o in distinct):
            distinct.append(c)
    cands = distinct[:n_polish]
    split = [c for c in screened if c[4]]
    if split and not any(c[4] for c in cands):
        # a subsample cannot rank optima a few sigma^2 apart: the best split start, the route
        # to the over-specified configurations, is always polished
        cands.append(split[0])
    for m in sizes:
        Xm, ym = sample(m)
        cands = [_lm_core(Xm, ym, c[1], k, act, deg, max_iter, tol, bnd) for c in cands]
        cands = sorted(((S, th, it, conv) for th, S, it, conv in cands), key=lambda c: c[0])
        # on to the next stage: the candidates within polish_margin noise variances of the best
        # (S_best / m estimates sigma^2); closer ones may swap ranks on more data
        s2 = cands[0][0] / m
        cands = [c for c in cands if c[0] - cands[0][0] <= polish_margin * s2]
    S, th, it, conv = cands[0]
    n_tried = 0
    if k >= 2 and move_rounds > 0:
        mrng = np.random.default_rng([seed, 1])
        m = max(min(n, move_size), sizes[0])  # m < n only where the nested sample exists
        if m >= n:
            th, S, it2, conv2, moved, n_tried = _moves(mrng, X, y, th, S, k, d, family, act, deg,
                                                       degree, tol, max_iter, bnd, move_rounds)
            if moved:  # report the polish of the move taken
                it, conv = it2, conv2
        else:  # search on the nested subsample, then polish the winner on all the data
            Xm, ym = sample(m)
            # the baseline is the fit re-optimised on the sample (else every move would "win" by
            # fitting the sample's noise); tol * n / m: the same absolute precision on m points
            thm, Sm, _, _ = _lm_core(Xm, ym, th, k, act, deg, max_iter, tol * n / m, bnd)
            thm, _, _, _, moved, n_tried = _moves(mrng, Xm, ym, thm, Sm, k, d, family, act, deg,
                                                  degree, tol * n / m, max_iter, bnd, move_rounds)
            if moved:
                th2, S2, it2, conv2 = _lm_core(X, y, thm, k, act, deg, max_iter, tol, bnd)
                n_tried += 1
                if S2 < S:
                    th, S, it, conv = th2, S2, it2, conv2
    return FitResult(unpack(th, k, d, family, degree), th, float(S), int(it), bool(conv), len(starts),
                     n_tried)


def lm_fit(X, y, family: str, k: int, theta0, *, degree: int = 1, max_iter: int = 200,
           tol: float = 1e-10, bound: float | None = None) -> FitResult:
    """One Levenberg–Marquardt run from ``theta0`` on all the data (no multi-start, no staging).

    The local solver inside :func:`fit_lse`, exposed for benchmarks and for callers that bring
    their own starts. Returns a :class:`FitResult` with ``n_starts = 1``.
    """
    owner = "lm_fit"
    act, deg = _check_family(family, degree, owner)
    check_int(owner, "k", k, lo=1)
    check_int(owner, "max_iter", max_iter, lo=1)
    check_real(owner, "tol", tol, lo=0.0, lo_open=True)
    bnd = np.inf if bound is None else check_real(owner, "bound", bound, lo=0.0, lo_open=True)
    X, y = _check_X(X, y)
    d = X.shape[1]
    theta0 = check_finite("theta0", np.asarray(theta0, dtype=float))
    check_shape("theta0", theta0, (n_free(k, d, family, degree),))
    th, S, it, conv = _lm_core(X, y, np.ascontiguousarray(theta0), k, act, deg, max_iter, tol, bnd)
    return FitResult(unpack(th, k, d, family, degree), th, float(S), int(it), bool(conv), 1)
