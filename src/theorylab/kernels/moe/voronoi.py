r"""Voronoi losses between a fitted mixing measure G and the truth G* (numpy; cheap per fit).

Nguyen, Ho, Rinaldo (arXiv 2402.02952, ICML 2024), Section 3. With atoms
:math:`\omega_i = (\beta_{1i}, \eta_i)` of :math:`G = \sum_{i=1}^k e^{\beta_{0i}}\delta_{\omega_i}` and
:math:`\omega^*_j` of :math:`G_* = \sum_{j=1}^{k_*} e^{\beta^*_{0j}}\delta_{\omega^*_j}`, the Voronoi cells
:math:`A_j = \{i : \|\omega_i - \omega^*_j\| \le \|\omega_i - \omega^*_\ell\|\ \forall \ell\}`
(ties go to the lowest j) and

.. math::

    D_r(G, G_*) = \sum_{j=1}^{k_*}\Big|\sum_{i\in A_j} e^{\beta_{0i}} - e^{\beta^*_{0j}}\Big|
      + \sum_{j:|A_j|=1}\sum_{i\in A_j} e^{\beta_{0i}}(\|\Delta\beta_{1ij}\| + \|\Delta\eta_{ij}\|)
      + \sum_{j:|A_j|>1}\sum_{i\in A_j} e^{\beta_{0i}}(\|\Delta\beta_{1ij}\|^r + \|\Delta\eta_{ij}\|^r),

:math:`\Delta\beta_{1ij} = \beta_{1i} - \beta^*_{1j}`, :math:`\Delta\eta_{ij} = \eta_i - \eta^*_j`.
:math:`D_1` of the paper is :math:`D_r` with r = 2 (:func:`voronoi_d1`); :func:`voronoi_d2` takes r
(the paper's loss for linear/polynomial experts uses a larger power on the over-specified cells).

Gauge
-----
:math:`f_G` is unchanged by translating every gate, :math:`(\beta_{1i}, \beta_{0i}) \mapsto
(\beta_{1i} + c_1, \beta_{0i} + c_0)`, and a fit fixes its OWN last gate at 0, which need not
match the true last atom. The losses are therefore minimised over a finite set of candidate
gauges: the raw one (c = 0) and, for every fitted atom i and true atom j, the translation that
puts fitted gate i exactly on true gate j (cells recomputed in each). This set depends only on
gate differences, so apart from the raw candidate the loss is invariant under any gate
translation of G; at the truth (in any gauge) it is 0. :func:`atom_errors` reports per-atom
errors in the gauge chosen by :func:`voronoi_d1`.
"""

from __future__ import annotations

from math import exp as math_exp

import numpy as np

from theorylab.errors import InputError
from theorylab.kernels.moe.model import moe_predict
from theorylab.validation import check_finite, check_real

__all__ = ["voronoi_cells", "voronoi_d1", "voronoi_d2", "atom_errors", "over_specified_error",
           "l2_error"]


def _arrays(params, name):
    try:
        b1, b0, eta = (np.asarray(a, dtype=float) for a in (params.beta1, params.beta0, params.eta))
    except AttributeError:
        raise InputError(f"'{name}' must be a MoEParams. Got {type(params).__name__}.") from None
    for a, part in ((b1, "beta1"), (b0, "beta0"), (eta, "eta")):
        check_finite(f"{name}.{part}", a)
    if b1.ndim != 2 or b0.shape != (b1.shape[0],) or eta.ndim != 2 or eta.shape[0] != b1.shape[0]:
        raise InputError(f"'{name}' must have beta1 (k, d), beta0 (k,), eta (k, m). Got "
                         f"{b1.shape}, {b0.shape}, {eta.shape}.")
    return b1, b0, eta


def _pair(params, true):
    b1, b0, eta = _arrays(params, "params")
    t1, t0, teta = _arrays(true, "true")
    if b1.shape[1] != t1.shape[1] or eta.shape[1] != teta.shape[1]:
        raise InputError(f"'params' and 'true' must share d and m. Got beta1 {b1.shape} vs "
                         f"{t1.shape}, eta {eta.shape} vs {teta.shape}.")
    return (b1, b0, eta), (t1, t0, teta)


def _cells(b1, eta, t1, teta):
    om = np.concatenate([b1, eta], axis=1)
    tom = np.concatenate([t1, teta], axis=1)
    dist = np.linalg.norm(om[:, None, :] - tom[None, :, :], axis=2)
    return np.argmin(dist, axis=1)


def _loss(b1, b0, eta, t1, t0, teta, r):
    """D_r in one fixed gauge (vectorised); returns (loss, cells)."""
    cells = _cells(b1, eta, t1, teta)
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.exp(b0)
        ks = t0.shape[0]
        mass = np.bincount(cells, weights=w, minlength=ks)
        size = np.bincount(cells, minlength=ks)
        loss = np.abs(mass - np.exp(t0)).sum()
        db = np.linalg.norm(b1 - t1[cells], axis=1)
        de = np.linalg.norm(eta - teta[cells], axis=1)
        single = size[cells] == 1
        loss += np.sum(w * np.where(single, db + de, db ** r + de ** r))
    return (float(loss) if np.isfinite(loss) else np.inf), cells


def _best_gauge(params, true, r):
    """(loss, c1, c0, cells) minimising D_r over the candidate gauges (module docstring)."""
    (b1, b0, eta), (t1, t0, teta) = _pair(params, true)
    cands = [(np.zeros(b1.shape[1]), 0.0)]
    cands += [(t1[j] - b1[i], t0[j] - b0[i]) for i in range(b1.shape[0]) for j in range(t1.shape[0])]
    best = None
    for c1, c0 in cands:
        loss, cells = _loss(b1 + c1, b0 + c0, eta, t1, t0, teta, r)
        if best is None or loss < best[0]:
            best = (loss, c1, c0, cells)
    return best


def voronoi_cells(params, true) -> np.ndarray:
    """Index j of the true atom whose cell :math:`A_j` holds fitted atom i, shape (k,), in the
    gauge chosen by :func:`voronoi_d1`."""
    return _best_gauge(params, true, 2.0)[3]


def voronoi_d1(params, true) -> float:
    """The paper's :math:`D_1(G, G_*)` (squared terms on cells with > 1 atom), gauge-minimised."""
    return _best_gauge(params, true, 2.0)[0]


def voronoi_d2(params, true, r: float) -> float:
    """:math:`D_r(G, G_*)`: power ``r`` on the over-specified cells (e.g. for linear experts)."""
    r = check_real("voronoi_d2", "r", r, lo=0.0, lo_open=True)
    return _best_gauge(params, true, r)[0]


def atom_errors(params, true) -> tuple[float, float]:
    """(exact_err, over_err): the largest :math:`\\|\\Delta\\beta_1\\| + \\|\\Delta\\eta\\|` over fitted
    atoms in singleton cells, and over atoms in cells with > 1 atom (nan where there are none),
    in the gauge chosen by :func:`voronoi_d1`."""
    _, c1, _, cells = _best_gauge(params, true, 2.0)
    (b1, _, eta), (t1, _, teta) = _pair(params, true)
    err = np.linalg.norm(b1 + c1 - t1[cells], axis=1) + np.linalg.norm(eta - teta[cells], axis=1)
    size = np.bincount(cells, minlength=t1.shape[0])[cells]
    ex, ov = err[size == 1], err[size > 1]
    return (float(ex.max()) if ex.size else float("nan"), float(ov.max()) if ov.size else float("nan"))


def over_specified_error(params, true) -> float:
    r"""Weighted RMS parameter error of the atoms in over-specified cells (:math:`|A_j| > 1`),

    .. math::

        \Big(\sum_{j:|A_j|>1}\sum_{i\in A_j} e^{\beta_{0i}}(\|\Delta\beta_{1ij}\|^2 + \|\Delta\eta_{ij}\|^2)
        \Big/ \sum_{j:|A_j|>1}\sum_{i\in A_j} e^{\beta_{0i}}\Big)^{1/2},

    in the gauge chosen by :func:`voronoi_d1` (nan if no cell has more than one atom). These are
    the squared terms of :math:`D_1` normalised by their weights, so :math:`D_1 \lesssim n^{-1/2}`
    with weights bounded below gives :math:`n^{-1/4}`: the paper's over-specified rate.
    """
    _, c1, c0, cells = _best_gauge(params, true, 2.0)
    (b1, b0, eta), (t1, _, teta) = _pair(params, true)
    size = np.bincount(cells, minlength=t1.shape[0])[cells]
    over = size > 1
    if not over.any():
        return float("nan")
    w = np.exp(b0 + c0)[over]
    sq = (np.sum((b1 + c1 - t1[cells])[over] ** 2, axis=1)
          + np.sum((eta - teta[cells])[over] ** 2, axis=1))
    return float(np.sqrt(np.sum(w * sq) / np.sum(w)))


def l2_error(params, true, X_eval, family: str, degree: int = 1) -> float:
    """:math:`\\|f_G - f_{G_*}\\|_{L^2(\\mu_n)} = \\sqrt{\\tfrac1n\\sum_j (f_G(x_j) - f_{G_*}(x_j))^2}`
    on the evaluation points X_eval (a sample of μ)."""
    diff = moe_predict(X_eval, params, family, degree) - moe_predict(X_eval, true, family, degree)
    return float(np.sqrt(np.mean(diff ** 2)))


# ---- slow twins: loops straight from the formula -------------------------------------------

def _slow_voronoi_dr(params, true, r):
    b1, b0, eta = (np.asarray(a, float) for a in params)
    t1, t0, teta = (np.asarray(a, float) for a in true)
    k, ks = len(b0), len(t0)
    gauges = [(np.zeros(b1.shape[1]), 0.0)]
    for i in range(k):
        for j in range(ks):
            gauges.append((t1[j] - b1[i], t0[j] - b0[i]))
    best = np.inf
    for c1, c0 in gauges:
        g1 = [b1[i] + c1 for i in range(k)]
        g0 = [b0[i] + c0 for i in range(k)]
        cells = {j: [] for j in range(ks)}
        for i in range(k):
            dists = [np.sqrt(np.sum((g1[i] - t1[j]) ** 2) + np.sum((eta[i] - teta[j]) ** 2))
                     for j in range(ks)]
            cells[int(np.argmin(dists))].append(i)
        total = 0.0
        for j in range(ks):
            total += abs(sum(np.exp(g0[i]) for i in cells[j]) - np.exp(t0[j]))
            for i in cells[j]:
                db = np.sqrt(np.sum((g1[i] - t1[j]) ** 2))
                de = np.sqrt(np.sum((eta[i] - teta[j]) ** 2))
                total += np.exp(g0[i]) * ((db + de) if len(cells[j]) == 1 else (db ** r + de ** r))
        best = min(best, total)
    return float(best)


def _slow_over_specified_error(params, true, c1, c0, cells):
    """Loop twin of :func:`over_specified_error` in a given gauge (c1, c0) and cells."""
    num = den = 0.0
    for i, j in enumerate(cells):
        if sum(1 for jj in cells if jj == j) < 2:
            continue
        w = math_exp(float(params.beta0[i]) + c0)
        d_b1 = sum((float(params.beta1[i][u]) + float(c1[u]) - float(true.beta1[j][u])) ** 2
                   for u in range(len(c1)))
        d_eta = sum((float(params.eta[i][u]) - float(true.eta[j][u])) ** 2
                    for u in range(len(true.eta[j])))
        num += w * (d_b1 + d_eta)
        den += w
    return (num / den) ** 0.5 if den > 0 else float("nan")


def _slow_voronoi_d1(params, true):
    return _slow_voronoi_dr(params, true, 2.0)


def _slow_voronoi_d2(params, true, r):
    return _slow_voronoi_dr(params, true, r)
