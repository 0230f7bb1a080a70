r"""Convergence-rate estimation: slopes of log-loss against log n, with 95 % confidence intervals.

A loss decaying like :math:`C n^{-r}` has slope :math:`-r` in :math:`\log \text{loss}` vs
:math:`\log n`. The MoE-LSE theorems state rates up to a log factor,
:math:`(\log n / n)^{r}`, whose slope against :math:`\log n` on a finite grid is shallower than
:math:`-r`; :func:`rate_band` gives the interval between the two, computed on the same grid.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import statsmodels.api as sm

from theorylab.errors import InputError

__all__ = ["SlopeFit", "loglog_slope", "rate_band", "band_overlaps", "within_bound"]


class SlopeFit(NamedTuple):
    """OLS fit of log(loss) = intercept + slope · log(scale(n)) with a (1 − alpha) CI."""

    slope: float
    ci_lo: float
    ci_hi: float
    intercept: float
    n_obs: int
    scale: str

    @property
    def ci(self) -> tuple[float, float]:
        return (self.ci_lo, self.ci_hi)


def _scale(n: np.ndarray, scale: str) -> np.ndarray:
    if scale == "n":
        return np.log(n)
    if scale == "logn_over_n":
        return np.log(np.log(n) / n)
    raise InputError(f"'scale' must be 'n' or 'logn_over_n'. Got {scale!r}.")


def loglog_slope(n, loss, scale: str = "n", alpha: float = 0.05) -> SlopeFit:
    """Slope of log(loss) on log n (``scale="n"``) or on log(log n / n) (``"logn_over_n"``).

    Every replicate is one observation (statsmodels OLS); standard errors are
    heteroscedasticity-robust (HC3), since the spread of log-loss changes with n.
    Non-positive or non-finite losses are rejected (they have no logarithm).
    """
    n = np.asarray(n, dtype=float)
    loss = np.asarray(loss, dtype=float)
    if n.shape != loss.shape or n.ndim != 1:
        raise InputError(f"'n' and 'loss' must be 1-d of equal length. Got {n.shape} and {loss.shape}.")
    bad = ~np.isfinite(loss) | (loss <= 0)
    if bad.any():
        raise InputError(f"'loss' must be finite and > 0 for a log-log fit; {int(bad.sum())} of "
                         f"{loss.size} entries are not.")
    if np.unique(n).size < 2:
        raise InputError("'n' must take at least 2 distinct values for a slope.")
    X = sm.add_constant(_scale(n, scale))
    res = sm.OLS(np.log(loss), X).fit(cov_type="HC3")
    lo, hi = res.conf_int(alpha)[1]
    return SlopeFit(float(res.params[1]), float(lo), float(hi), float(res.params[0]), int(n.size), scale)


def rate_band(ns, r: float) -> tuple[float, float]:
    r"""Slopes vs log n between the parametric rate :math:`n^{-r}` and the theory's
    :math:`(\log n/n)^{r}` on the grid ``ns``: ``(-r, slope of r·log(log n/n) vs log n)``."""
    ns = np.unique(np.asarray(ns, dtype=float))
    s = np.polyfit(np.log(ns), r * np.log(np.log(ns) / ns), 1)[0]
    return (-r, float(s))


def band_overlaps(ci: tuple[float, float], band: tuple[float, float]) -> bool:
    """True when the interval ``ci`` intersects ``band`` (both closed)."""
    lo, hi = min(band), max(band)
    return bool(ci[0] <= hi and ci[1] >= lo)


def within_bound(ci: tuple[float, float], band: tuple[float, float]) -> bool:
    """True when the slope CI ``ci`` reaches the band or lies below it: the loss decays no slower
    than the band's shallower rate (an :math:`O_P` upper bound is not contradicted)."""
    return bool(ci[0] <= max(band))
