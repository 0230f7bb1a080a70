r"""Shared statistics: the mean with its Student-t interval, a binomial (Wilson) interval, and
convergence-rate slopes of log-loss against log n.

* :func:`mean_ci`: :math:`\bar x \pm t_{n-1,\,(1+\ell)/2}\, s/\sqrt n` (the one mean-and-CI
  helper; :math:`s` the sample standard deviation with ddof 1).
* :func:`wilson_ci`: the Wilson score interval of k successes in n trials.
* :func:`grouped_mean_ci`: :func:`mean_ci` over group means: when draws within a group share
  a random input (one replicate's trained model and its selections, say), the groups, not the
  draws, are the independent observations.
* :func:`loglog_slope`, :func:`rate_band`, :func:`band_overlaps`, :func:`within_bound`: a loss
  decaying like :math:`C n^{-r}` has slope :math:`-r` in :math:`\log \text{loss}` vs
  :math:`\log n`. The MoE-LSE theorems state rates up to a log factor,
  :math:`(\log n / n)^{r}`, whose slope against :math:`\log n` on a finite grid is shallower
  than :math:`-r`; :func:`rate_band` gives the interval between the two on the same grid.

scipy and statsmodels are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from theorylab.errors import InputError

__all__ = ["mean_ci", "grouped_mean_ci", "wilson_ci", "SlopeFit", "loglog_slope", "rate_band", "band_overlaps",
           "within_bound"]


def mean_ci(x, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Mean of ``x`` and its Student-t ``level`` interval (n - 1 degrees of freedom).

    One value gives a NaN interval (no spread to estimate); an empty or non-finite sample is
    rejected.
    """
    from scipy import stats
    x = np.asarray(x, dtype=float).ravel()
    if x.size == 0 or not np.isfinite(x).all():
        raise InputError(f"'x' of mean_ci must be a non-empty finite sample. Got {x.size} values, "
                         f"{int((~np.isfinite(x)).sum())} not finite.")
    if not 0 < level < 1:
        raise InputError(f"'level' of mean_ci must be in (0, 1). Got {level}.")
    m, n = float(x.mean()), x.size
    if n < 2:
        return m, (math.nan, math.nan)
    h = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, (m - h, m + h)


def seed_paired_difference(va, vb, a: str, b: str, level: float = 0.95) -> dict:
    """Mean and t-interval over seeds of ``va − vb``, two pandas Series indexed by seed (the
    seeds both have; NaN differences dropped). A ``vb`` scored once (a deterministic method at
    seed 0) is paired with every seed of ``va``. Returns ``{"mean", "ci", "n_seeds", a, b}``
    with ``a`` and ``b`` the two means."""
    if len(vb) == 1:
        vb = type(va)(float(vb.iloc[0]), index=va.index)
    d = (va - vb).dropna().to_numpy()
    mean, ci = mean_ci(d, level)
    return {"mean": mean, "ci": ci, "n_seeds": int(len(d)), a: float(va.mean()),
            b: float(vb.mean())}


def grouped_mean_ci(x, groups, level: float = 0.95
                    ) -> tuple[float, tuple[float, float], int]:
    r"""Mean and Student-t ``level`` interval of the *group means* of ``x``.

    With :math:`\bar x_r` the mean of the draws of group :math:`r` (:math:`R` groups), returns
    :math:`\bar x = R^{-1} \sum_r \bar x_r`, its interval
    :math:`\bar x \pm t_{R-1,(1+\ell)/2}\, s_R/\sqrt R` (:math:`s_R` the standard deviation of the
    :math:`\bar x_r`) and :math:`R`. Each group weighs the same whatever its number of draws:
    the draws of one group are averaged, not counted as independent observations, so permuting
    or duplicating draws within a group changes nothing.
    """
    x = np.asarray(x, dtype=float).ravel()
    groups = np.asarray(groups).ravel()
    if groups.shape != x.shape:
        raise InputError(f"'groups' of grouped_mean_ci must have one label per value of 'x' "
                         f"({x.size}). Got {groups.size}.")
    if x.size == 0 or not np.isfinite(x).all():
        raise InputError(f"'x' of grouped_mean_ci must be a non-empty finite sample. Got {x.size} "
                         f"values, {int((~np.isfinite(x)).sum())} not finite.")
    labels, inverse = np.unique(groups, return_inverse=True)
    means = np.bincount(inverse, weights=x) / np.bincount(inverse)
    m, ci = mean_ci(means, level)
    return m, ci, int(labels.size)


def wilson_ci(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the success probability after ``k`` successes in ``n`` trials."""
    from scipy import stats
    if not (n > 0 and 0 <= k <= n):
        raise InputError(f"'k' and 'n' of wilson_ci must satisfy 0 <= k <= n, n > 0. Got k={k}, n={n}.")
    z = stats.norm.ppf(0.5 + level / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


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
    import statsmodels.api as sm
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
