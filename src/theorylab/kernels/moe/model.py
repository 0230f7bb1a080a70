r"""Softmax-gated mixture of experts: the model, its packing, prediction and analytic Jacobian (numba).

Nguyen, Ho, Rinaldo, "On Least Squares Estimation in Softmax Gating Mixture of Experts"
(arXiv 2402.02952, ICML 2024), the regression model of Section 2:

.. math::

    f_G(x) = \sum_{i=1}^{k} \mathrm{softmax}_i(\beta_{1i}^\top x + \beta_{0i})\, h(x, \eta_i),
    \qquad \hat G_n \in \arg\min_G \sum_{i=1}^n (Y_i - f_G(X_i))^2 .

Expert families (:data:`FAMILIES`), with the feature vector
:math:`z(x) = (x, x^{\circ 2}, \dots, x^{\circ p}, 1) \in \mathbb{R}^m` and
:math:`h(x, \eta) = \varphi(\eta^\top z(x))`:

* ``"sigmoid"``, ``"tanh"``: :math:`\varphi` = sigmoid / tanh, :math:`p = 1`, :math:`\eta = (a, b)`,
  :math:`m = d + 1` (a one-neuron feed-forward expert, the paper's strongly identifiable case);
* ``"linear"``: :math:`\varphi = \mathrm{id}`, :math:`p = 1` (:math:`h = a^\top x + b`);
* ``"polynomial"``: :math:`\varphi = \mathrm{id}`, degree :math:`p` =
  ``degree``, :math:`h = b + \sum_{j=1}^p a_j^\top x^{\circ j}`, :math:`m = p d + 1`.

The gate is identified by fixing the LAST atom's gate, :math:`\beta_{1k} = 0, \beta_{0k} = 0`
(the paper's convention); :func:`pack` therefore drops it. The free-parameter vector is

``theta = [beta1[0..k-2].ravel(), beta0[0..k-2], eta.ravel()]``, of length
:math:`P = (k-1)(d+1) + k m`.

The numba kernels are serial (``@njit(cache=True)``, no ``parallel``): a sweep runs many fits on
all cores. Public functions validate their input once and raise a one-line
:class:`~theorylab.errors.ConfigError` / :class:`~theorylab.errors.InputError`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from theorylab.errors import InputError
from theorylab.validation import check_choice, check_finite, check_int, check_shape

__all__ = ["FAMILIES", "MoEParams", "n_eta", "n_free", "pack", "unpack", "moe_predict",
           "residuals_jacobian", "objective"]

FAMILIES = ("sigmoid", "tanh", "linear", "polynomial")
_ACT = {"sigmoid": 0, "tanh": 1, "linear": 2, "polynomial": 2}  # 2 = identity activation


class MoEParams(NamedTuple):
    """Mixing measure :math:`G = \\sum_i e^{\\beta_{0i}}\\delta_{(\\beta_{1i}, \\eta_i)}`.

    beta1 : (k, d) gate slopes; beta0 : (k,) gate intercepts; eta : (k, m) expert parameters
    (``eta[i] = (a_1, ..., a_p, b)``, each :math:`a_j \\in \\mathbb{R}^d`).
    """

    beta1: np.ndarray
    beta0: np.ndarray
    eta: np.ndarray


def _deg(family: str, degree: int) -> int:
    return int(degree) if family == "polynomial" else 1


def n_eta(family: str, d: int, degree: int = 1) -> int:
    """Length m of one expert's parameter: d + 1, or p d + 1 for polynomial experts."""
    check_choice(None, "family", family, FAMILIES)
    return _deg(family, degree) * int(d) + 1


def n_free(k: int, d: int, family: str, degree: int = 1) -> int:
    """Number of free parameters P = (k - 1)(d + 1) + k m (last gate fixed at 0)."""
    return (k - 1) * (d + 1) + k * n_eta(family, d, degree)


def pack(params: MoEParams) -> np.ndarray:
    """Free-parameter vector theta; the last gate is dropped after translating it to 0.

    Gate translation :math:`(\\beta_{1i}, \\beta_{0i}) \\mapsto (\\beta_{1i} - \\beta_{1k},
    \\beta_{0i} - \\beta_{0k})` leaves :math:`f_G` unchanged, so any ``params`` packs exactly.
    """
    b1 = np.asarray(params.beta1, dtype=float)
    b0 = np.asarray(params.beta0, dtype=float)
    eta = np.asarray(params.eta, dtype=float)
    b1 = b1 - b1[-1]
    b0 = b0 - b0[-1]
    return np.concatenate([b1[:-1].ravel(), b0[:-1], eta.ravel()])


def unpack(theta, k: int, d: int, family: str, degree: int = 1) -> MoEParams:
    """Inverse of :func:`pack`: the last atom gets :math:`\\beta_{1k} = 0, \\beta_{0k} = 0`."""
    m = n_eta(family, d, degree)
    theta = np.asarray(theta, dtype=float)
    if theta.shape != ((k - 1) * (d + 1) + k * m,):
        raise InputError(f"'theta' must have shape ({(k - 1) * (d + 1) + k * m},) for k={k}, "
                         f"d={d}, family={family!r}. Got {theta.shape}.")
    g1 = (k - 1) * d
    beta1 = np.zeros((k, d))
    beta1[:-1] = theta[:g1].reshape(k - 1, d)
    beta0 = np.zeros(k)
    beta0[:-1] = theta[g1:g1 + k - 1]
    eta = theta[g1 + k - 1:].reshape(k, m).copy()
    return MoEParams(beta1, beta0, eta)


# ----------------------------------------------------------------------------------------------
# numba core: one pass over the data per call; J is never stored
# ----------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _expert(u, act, i, h, hp):
    """h[i], hp[i] = phi(u), phi'(u) for act 0 = sigmoid, 1 = tanh, 2 = identity."""
    if act == 0:
        sg = 1.0 / (1.0 + np.exp(-u))  # exp overflow -> inf -> 0: the exact limit, no nan
        h[i] = sg
        hp[i] = sg * (1.0 - sg)
    elif act == 1:
        t = np.tanh(u)
        h[i] = t
        hp[i] = 1.0 - t * t
    else:
        h[i] = u
        hp[i] = 1.0


@njit(cache=True, inline="always")
def _scratch(k, m):
    """Per-pass scratch of :func:`_point`: features z (m), logits lg, gates pi, experts h, hp (k)."""
    return np.empty(m), np.empty(k), np.empty(k), np.empty(k), np.empty(k)


@njit(cache=True, inline="always")
def _point(X, j, theta, k, d, act, deg, z, lg, pi, h, hp):
    """Fill z (features), pi (gates), h, hp (expert values / slopes) at row j; return f(X[j]).

    The scalar path, with libm's exp: predictions, the Jacobian and the SSE. The LM pass,
    :func:`theorylab.kernels.moe.fit._normal_core`, is vectorised across points instead."""
    m = deg * d + 1
    g1 = (k - 1) * d
    e0 = g1 + k - 1
    for t in range(d):
        v = X[j, t]
        z[t] = v
        for p in range(1, deg):
            z[p * d + t] = z[(p - 1) * d + t] * v
    z[m - 1] = 1.0
    mx = 0.0  # the last logit is 0
    for i in range(k - 1):
        s = theta[g1 + i]
        for t in range(d):
            s += theta[i * d + t] * z[t]
        lg[i] = s
        if s > mx:
            mx = s
    lg[k - 1] = 0.0
    tot = 0.0
    f = 0.0
    for i in range(k):
        e = np.exp(lg[i] - mx)  # log-sum-exp shift: finite for any finite logits
        pi[i] = e
        tot += e
        u = 0.0
        for q in range(m):
            u += theta[e0 + i * m + q] * z[q]
        _expert(u, act, i, h, hp)
        f += e * h[i]
    inv = 1.0 / tot
    for i in range(k):
        pi[i] *= inv
    return f * inv


@njit(cache=True)
def _predict_core(X, theta, k, act, deg):
    n, d = X.shape
    m = deg * d + 1
    z, lg, pi, h, hp = _scratch(k, m)
    out = np.empty(n)
    for j in range(n):
        out[j] = _point(X, j, theta, k, d, act, deg, z, lg, pi, h, hp)
    return out


@njit(cache=True, inline="always")
def _grad_point(f, k, d, deg, z, pi, h, hp, G, row):
    """G[row] = d f(x) / d theta (analytic): gates pi_j (h_j - f) (x, 1), experts pi_i phi' z."""
    m = deg * d + 1
    g1 = (k - 1) * d
    e0 = g1 + k - 1
    for j in range(k - 1):
        c = pi[j] * (h[j] - f)
        for t in range(d):
            G[row, j * d + t] = c * z[t]
        G[row, g1 + j] = c
    for i in range(k):
        c = pi[i] * hp[i]
        for q in range(m):
            G[row, e0 + i * m + q] = c * z[q]


@njit(cache=True)
def _jacobian_core(X, y, theta, k, act, deg):
    n, d = X.shape
    m = deg * d + 1
    P = theta.shape[0]
    z, lg, pi, h, hp = _scratch(k, m)
    r = np.empty(n)
    J = np.empty((n, P))
    for j in range(n):
        f = _point(X, j, theta, k, d, act, deg, z, lg, pi, h, hp)
        r[j] = f - y[j]
        _grad_point(f, k, d, deg, z, pi, h, hp, J, j)
    return r, J


@njit(cache=True)
def _sse_core(X, y, theta, k, act, deg):
    n, d = X.shape
    m = deg * d + 1
    z, lg, pi, h, hp = _scratch(k, m)
    s = 0.0
    for j in range(n):
        r = _point(X, j, theta, k, d, act, deg, z, lg, pi, h, hp) - y[j]
        s += r * r
    return s


# ----------------------------------------------------------------------------------------------
# validation at the boundary
# ----------------------------------------------------------------------------------------------

def _check_X(X, y=None):
    X = check_finite("X", np.asarray(X, dtype=float))
    if X.ndim == 1:
        X = X[:, None]
    check_shape("X", X, (-1, -1))
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise InputError(f"'X' must have at least one row and one column. Got shape {X.shape}.")
    if y is None:
        return np.ascontiguousarray(X)
    y = check_finite("y", np.asarray(y, dtype=float))
    check_shape("y", y, (X.shape[0],))
    return np.ascontiguousarray(X), np.ascontiguousarray(y)


def _check_family(family, degree, owner=None):
    check_choice(owner, "family", family, FAMILIES)
    check_int(owner, "degree", degree, lo=1)
    return _ACT[family], _deg(family, degree)


def _check_params(params, d, family, degree, name="params"):
    if not isinstance(params, MoEParams):
        raise InputError(f"'{name}' must be a MoEParams. Got {type(params).__name__}.")
    b1 = check_finite(f"{name}.beta1", np.asarray(params.beta1, dtype=float))
    k = b1.shape[0] if b1.ndim == 2 else -1
    check_shape(f"{name}.beta1", b1, (-1, d))
    if k < 1:
        raise InputError(f"'{name}.beta1' must have at least one row (k >= 1). Got {b1.shape}.")
    b0 = check_shape(f"{name}.beta0", check_finite(f"{name}.beta0", np.asarray(params.beta0, float)), (k,))
    eta = check_shape(f"{name}.eta", check_finite(f"{name}.eta", np.asarray(params.eta, float)),
                      (k, n_eta(family, d, degree)))
    return MoEParams(b1, b0, eta)


def moe_predict(X, params: MoEParams, family: str, degree: int = 1) -> np.ndarray:
    """:math:`f_G(X_j)` for each row of X (n, d); stable log-sum-exp softmax (finite for logits ±1e4).

    Examples
    --------
    >>> p = MoEParams(np.array([[1.0], [0.0]]), np.zeros(2), np.array([[0.0, 1.0], [0.0, -1.0]]))
    >>> float(moe_predict(np.zeros((1, 1)), p, "linear")[0])
    0.0
    """
    act, deg = _check_family(family, degree)
    X = _check_X(X)
    params = _check_params(params, X.shape[1], family, degree)
    return _predict_core(X, pack(params), params.beta1.shape[0], act, deg)


def residuals_jacobian(theta, X, y, family: str, degree: int, k: int):
    """Residuals :math:`r_j = f_G(X_j) - Y_j` and the analytic Jacobian :math:`J = \\partial r/\\partial\\theta`.

    With :math:`\\pi_i` the gates, :math:`u_i = \\eta_i^\\top z(x)`:
    :math:`\\partial f/\\partial\\beta_{1j} = \\pi_j (h_j - f) x`,
    :math:`\\partial f/\\partial\\beta_{0j} = \\pi_j (h_j - f)` (j < k),
    :math:`\\partial f/\\partial\\eta_i = \\pi_i \\varphi'(u_i) z(x)`.
    Returns (r (n,), J (n, P)).
    """
    act, deg = _check_family(family, degree)
    check_int(None, "k", k, lo=1)
    X, y = _check_X(X, y)
    theta = check_finite("theta", np.asarray(theta, dtype=float))
    check_shape("theta", theta, (n_free(k, X.shape[1], family, degree),))
    return _jacobian_core(X, y, np.ascontiguousarray(theta), k, act, deg)


def objective(X, y, params: MoEParams, family: str, degree: int = 1) -> float:
    """Least-squares objective :math:`\\sum_j (Y_j - f_G(X_j))^2`."""
    act, deg = _check_family(family, degree)
    X, y = _check_X(X, y)
    params = _check_params(params, X.shape[1], family, degree)
    return float(_sse_core(X, y, pack(params), params.beta1.shape[0], act, deg))


# ----------------------------------------------------------------------------------------------
# slow reference twins (plain numpy, straight from the formulas) for the tests
# ----------------------------------------------------------------------------------------------

def _slow_features(x, family, degree):
    return np.concatenate([x ** (p + 1) for p in range(_deg(family, degree))] + [np.ones(1)])


def _slow_h(x, eta_i, family, degree):
    u = float(eta_i @ _slow_features(x, family, degree))
    if family == "sigmoid":
        return 1.0 / (1.0 + np.exp(-u))
    if family == "tanh":
        return np.tanh(u)
    return u


def _slow_moe_predict(X, params, family, degree=1):
    """f_G(x) = sum_i softmax_i(beta1_i.x + beta0_i) h(x, eta_i), one point at a time."""
    X = np.atleast_2d(np.asarray(X, float))
    out = []
    for x in X:
        logits = np.array([params.beta1[i] @ x + params.beta0[i] for i in range(len(params.beta0))])
        w = np.exp(logits - logits.max())
        w /= w.sum()
        out.append(sum(w[i] * _slow_h(x, params.eta[i], family, degree) for i in range(len(w))))
    return np.array(out)


def _slow_residuals(theta, X, y, family, degree, k):
    """r = f_G(X) - y via unpack + the slow predictor."""
    X = np.atleast_2d(np.asarray(X, float))
    return _slow_moe_predict(X, unpack(theta, k, X.shape[1], family, degree), family, degree) - y


def _slow_jacobian(theta, X, y, family, degree, k, eps=1e-6):
    """Central finite differences of :func:`_slow_residuals`."""
    theta = np.asarray(theta, float)
    cols = []
    for p in range(theta.size):
        e = np.zeros_like(theta)
        e[p] = eps
        cols.append((_slow_residuals(theta + e, X, y, family, degree, k)
                     - _slow_residuals(theta - e, X, y, family, degree, k)) / (2 * eps))
    return np.stack(cols, axis=1)
