r"""Metrics of the accuracy matrix (Lopez-Paz & Ranzato, "Gradient Episodic Memory", NeurIPS 2017;
forgetting after Chaudhry et al., ECCV 2018).

R[i, j] is the test accuracy on task j after training on tasks 0..i (T tasks, 0-based), and
b_j the accuracy on task j of the model at initialisation. Then

.. math::
    \mathrm{ACC} = \frac1T \sum_{j=0}^{T-1} R_{T-1,j}, \qquad
    \mathrm{BWT} = \frac1{T-1} \sum_{j=0}^{T-2} \left(R_{T-1,j} - R_{j,j}\right),

.. math::
    \mathrm{FWT} = \frac1{T-1} \sum_{j=1}^{T-1} \left(R_{j-1,j} - b_j\right), \qquad
    F = \frac1{T-1} \sum_{j=0}^{T-2} \max_{l \le T-2} \left(R_{l,j} - R_{T-1,j}\right).

(In F the max runs over l ≥ j in effect: before task j is trained R_{l,j} is at chance.)
"""

from __future__ import annotations

import numpy as np

from theorylab.errors import InputError

__all__ = ["acc", "bwt", "fwt", "forgetting", "summary"]


def _check(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 1:
        raise InputError(f"the accuracy matrix must be square T×T with T >= 1. Got shape {R.shape}.")
    if not np.all(np.isfinite(R)):
        raise InputError("the accuracy matrix holds a non-finite entry.")
    return R


def acc(R) -> float:
    R = _check(R)
    return float(R[-1].mean())


def bwt(R) -> float:
    R = _check(R)
    T = len(R)
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1])) if T > 1 else 0.0


def fwt(R, b) -> float:
    R = _check(R)
    b = np.asarray(b, dtype=float)
    T = len(R)
    if b.shape != (T,):
        raise InputError(f"'b' must hold one accuracy per task ({T}). Got shape {b.shape}.")
    return float(np.mean([R[j - 1, j] - b[j] for j in range(1, T)])) if T > 1 else 0.0


def forgetting(R) -> float:
    R = _check(R)
    T = len(R)
    if T == 1:
        return 0.0
    return float(np.mean([R[:-1, j].max() - R[-1, j] for j in range(T - 1)]))


def summary(R, b=None) -> dict[str, float]:
    """ACC, BWT, forgetting and (with ``b``) FWT of one accuracy matrix."""
    out = {"acc": acc(R), "bwt": bwt(R), "forgetting": forgetting(R)}
    if b is not None:
        out["fwt"] = fwt(R, b)
    return out
