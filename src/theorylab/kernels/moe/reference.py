r"""An independent reference for the global LSE: many-start bounded ``scipy.optimize.least_squares``.

The LSE of Nguyen, Ho, Rinaldo (arXiv 2402.02952, ICML 2024) is the *global* minimiser

.. math::

    \hat G_n \in \arg\min_{G \in \Theta} \sum_{i=1}^n (Y_i - f_G(X_i))^2,
    \qquad \Theta = \{\theta : |\theta_p| \le B\},

over the compact box the theorems assume. :func:`~theorylab.kernels.moe.fit_lse` is a
heuristic for it (projected Levenberg–Marquardt from data-driven and split starts); a fit whose
objective is below the objective at :math:`G_*` may still be a local optimum. This module
solves the same problem by other means — scipy's trust-region-reflective solver (``trf``, the
bounded method of ``least_squares``) with the analytic Jacobian of
:func:`~theorylab.kernels.moe.residuals_jacobian`, evaluated by the plain per-point kernels of
:mod:`~theorylab.kernels.moe.model`, not by ``fit_lse``'s vectorised LM pass — from many starts:

* ``n_box`` starts uniform in the box scaled by ``box_scale`` (every coordinate
  :math:`\sim U[-sB, sB]`): blind to the data;
* ``n_data`` draws of :func:`~theorylab.kernels.moe.random_start` (data-driven, the same
  scheme as ``fit_lse``'s but from the reference's own generator);
* ``extra`` (optional): given starts, e.g. the fit under test, so that the reference is never
  worse than a point the caller already has.

When n exceeds ``screen_size``, the box and data starts are first run on a random subsample of
``screen_size`` points and the ``n_polish`` best distinct results are run again on all n points
(the extra starts always go straight to all n). The reference is the best objective over the
full-data runs. It is slow (scipy's Python loop, a full
Jacobian per iteration), which is the point: it shares no solver code with ``fit_lse``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import least_squares
from threadpoolctl import threadpool_limits

from theorylab.errors import ConfigError
from theorylab.kernels.moe.fit import random_start
from theorylab.kernels.moe.model import (
    MoEParams,
    _check_family,
    _check_X,
    _jacobian_core,
    _predict_core,
    _sse_core,
    n_free,
    unpack,
)
from theorylab.validation import check_finite, check_int, check_real, check_shape

__all__ = ["ReferenceResult", "reference_lse", "sse"]


class ReferenceResult(NamedTuple):
    """Outcome of :func:`reference_lse`.

    objective: the best :math:`\\sum_i (Y_i - f_G(X_i))^2` over all runs (by :func:`sse`);
    objectives: every full-data run's final objective, the box and data starts first (after
    screening: the polished ones, best first), the extra starts last; best_start: the index of
    the best run in that order (≥ len(objectives) − n_extra: an extra start won);
    n_box, n_data, n_extra: the start counts.
    """

    params: MoEParams
    theta: np.ndarray
    objective: float
    objectives: np.ndarray
    best_start: int
    n_box: int
    n_data: int
    n_extra: int


def sse(X, y, theta, family: str, k: int, degree: int = 1) -> float:
    """The least-squares objective :math:`\\sum_i (Y_i - f_\\theta(X_i))^2` at a packed theta
    (the plain per-point kernel; :func:`fit_lse` reports the same quantity from its LM pass)."""
    act, deg = _check_family(family, degree)
    X, y = _check_X(X, y)
    theta = check_finite("theta", np.asarray(theta, dtype=float))
    check_shape("theta", theta, (n_free(k, X.shape[1], family, degree),))
    return float(_sse_core(X, y, np.ascontiguousarray(theta), k, act, deg))


def _trf(X, y, theta0, k, act, deg, bound, tol, max_nfev):
    """One bounded trf run from theta0 (clipped into the open box); returns theta."""
    lo, hi = -bound, bound
    x0 = np.clip(theta0, lo + 1e-12 * bound, hi - 1e-12 * bound)  # trf needs a strictly interior start

    def fun(th):
        return _predict_core(X, np.ascontiguousarray(th), k, act, deg) - y

    def jac(th):
        return _jacobian_core(X, y, np.ascontiguousarray(th), k, act, deg)[1]

    # one BLAS thread: trf takes an SVD of the n x P Jacobian per iteration; threaded BLAS on these
    # thin matrices ran 15x slower on a loaded 2-core machine (30 vs 2 ms per SVD at n = 1000)
    with threadpool_limits(1):
        res = least_squares(fun, x0, jac=jac, bounds=(lo, hi), method="trf", ftol=tol, xtol=tol,
                            gtol=tol, max_nfev=max_nfev, x_scale="jac")
    return np.clip(res.x, lo, hi)


def reference_lse(X, y, family: str, k: int, *, seed: int, bound: float, degree: int = 1,
                  n_box: int = 20, n_data: int = 20, extra=(), box_scale: float = 1.0,
                  tol: float = 1e-9, max_nfev: int = 200, screen_size: int = 1000,
                  n_polish: int = 6) -> ReferenceResult:
    r"""Best of many bounded ``least_squares(method="trf")`` runs over :math:`|\theta_p| \le` bound.

    Starts: ``n_box`` uniform in :math:`[-sB, sB]^P` (s = ``box_scale``), ``n_data``
    :func:`~theorylab.kernels.moe.random_start` draws, then the given ``extra`` thetas, all
    from ``np.random.default_rng(seed)``. Each run stops on ``ftol = xtol = gtol = tol`` or
    ``max_nfev`` evaluations; its objective is re-evaluated by :func:`sse`. With n >
    ``screen_size`` the box and data starts are screened on a subsample and the ``n_polish``
    best distinct ones (objectives 1e-9 apart) rerun on all n points.

    Raises
    ------
    ConfigError
        unknown family; k < 1; n_box, n_data < 0 or no start at all; bound, box_scale, tol not
        > 0; max_nfev, screen_size, n_polish < 1.
    InputError
        non-finite or mis-shaped X, y or extra starts.

    Examples
    --------
    >>> from theorylab.kernels.moe import moe_predict
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-3, 3, size=(200, 1))
    >>> true = MoEParams(np.array([[1.0], [0.0]]), np.zeros(2), np.array([[-3.0, 2.0], [2.0, 1.0]]))
    >>> ref = reference_lse(X, moe_predict(X, true, "sigmoid"), "sigmoid", 2, seed=0, bound=10.0,
    ...                     n_box=2, n_data=4)
    >>> ref.objective < 1e-12
    True
    """
    owner = "reference_lse"
    act, deg = _check_family(family, degree, owner)
    check_int(owner, "k", k, lo=1)
    check_int(owner, "seed", seed, lo=0)
    check_int(owner, "n_box", n_box, lo=0)
    check_int(owner, "n_data", n_data, lo=0)
    check_int(owner, "max_nfev", max_nfev, lo=1)
    check_int(owner, "screen_size", screen_size, lo=1)
    check_int(owner, "n_polish", n_polish, lo=1)
    bound = check_real(owner, "bound", bound, lo=0.0, lo_open=True)
    check_real(owner, "box_scale", box_scale, lo=0.0, lo_open=True)
    check_real(owner, "tol", tol, lo=0.0, lo_open=True)
    X, y = _check_X(X, y)
    d = X.shape[1]
    P = n_free(k, d, family, degree)
    extra = [check_shape("extra[...]", check_finite("extra[...]", np.asarray(t, dtype=float)), (P,))
             for t in extra]
    if n_box + n_data + len(extra) == 0:
        raise ConfigError(f"{owner} needs at least one start (n_box + n_data + len(extra) >= 1). Got 0.")
    rng = np.random.default_rng(seed)
    s = min(box_scale, 1.0) * bound
    starts = [rng.uniform(-s, s, size=P) for _ in range(n_box)]
    starts += [random_start(rng, X, y, family, k, degree) for _ in range(n_data)]
    n = X.shape[0]
    if n > max(screen_size, P) and starts:
        idx = rng.choice(n, size=max(screen_size, P), replace=False)
        Xs, ys = np.ascontiguousarray(X[idx]), np.ascontiguousarray(y[idx])
        screened = [_trf(Xs, ys, th, k, act, deg, bound, tol, max_nfev) for th in starts]
        so = [float(_sse_core(Xs, ys, th, k, act, deg)) for th in screened]
        distinct = []
        for i in np.argsort(so):
            if all(abs(so[i] - so[j]) > 1e-9 * abs(so[j]) for j in distinct):
                distinct.append(int(i))
        starts = [screened[i] for i in distinct[:n_polish]]
    starts = starts + extra
    thetas = [_trf(X, y, th, k, act, deg, bound, tol, max_nfev) for th in starts]
    objs = np.array([float(_sse_core(X, y, th, k, act, deg)) for th in thetas])
    best = int(np.argmin(objs))
    th = thetas[best]
    return ReferenceResult(unpack(th, k, d, family, degree), th, float(objs[best]), objs, best,
                           n_box, n_data, len(extra))
