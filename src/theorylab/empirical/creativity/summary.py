r"""Statistics recomputed from a paper's reported summaries, and the rounding they allow.

For a paired t-test of :math:`n` participants (:math:`df = n - 1`):

* :math:`p = 2\,(1 - F_{t,df}(|t|))` (two-sided);
* :math:`t = F^{-1}_{t,df}(1 - p/2)` from a reported p;
* effect sizes computable from :math:`t` and :math:`n` alone (:data:`D_FROM_T`):
  :math:`d_z = t/\sqrt n`, :math:`t/\sqrt{df}`, the independent-groups conversions
  :math:`t\sqrt{2/n}` and :math:`2t/\sqrt{df}`, and Hedges' :math:`g_z = d_z (1 - 3/(4df - 1))`;
* :math:`d_{av} = \bar D / \tfrac12(s_1 + s_2)` needs the SDs; with equal SDs
  :math:`d_{av} = d_z \sqrt{2(1 - r)}`, so a reported :math:`d_{av}` and :math:`t` imply the
  between-condition correlation :math:`r = 1 - (d_{av}/d_z)^2/2`.

A reported number ``x`` printed with ``digits`` decimals stands for the interval
:math:`[x - \tfrac12 10^{-digits}, x + \tfrac12 10^{-digits}]`; :func:`image` propagates such
intervals through a monotone function on a grid of their corners.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from theorylab.errors import InputError

__all__ = ["rounding", "p_from_t", "t_from_p", "D_FROM_T", "image", "matches", "implied_r",
           "REPORTED"]

#: Anderson, Shah & Kreminski (C&C 2024), within-subject, 33 participants analysed: group-level
#: dissimilarity ChatGPT .24 vs Oblique Strategies .28, t(32) = 2.154, p = .038, d = .47;
#: individual-level .65 vs .66, p = .352.
REPORTED = {
    "n": 33,
    "group": {"t": 2.154, "df": 32, "p": 0.038, "d": 0.47, "mean_llm": 0.24, "mean_ctrl": 0.28},
    "individual": {"p": 0.352, "df": 32, "mean_llm": 0.65, "mean_ctrl": 0.66},
}


def rounding(x: float, digits: int) -> tuple[float, float]:
    """The interval a value printed as ``x`` with ``digits`` decimals stands for."""
    h = 0.5 * 10.0 ** -digits
    return (x - h, x + h)


def p_from_t(t: float, df: float) -> float:
    """Two-sided p of a t statistic with ``df`` degrees of freedom."""
    from scipy import stats
    if not df > 0:
        raise InputError(f"'df' of p_from_t must be > 0. Got {df}.")
    return float(2 * stats.t.sf(abs(t), df))


def t_from_p(p: float, df: float) -> float:
    """|t| whose two-sided p with ``df`` degrees of freedom is ``p``."""
    from scipy import stats
    if not 0 < p <= 1:
        raise InputError(f"'p' of t_from_p must be in (0, 1]. Got {p}.")
    return float(stats.t.isf(p / 2, df))


#: effect sizes computable from (t, n) alone
D_FROM_T: dict[str, Callable[[float, int], float]] = {
    "d_z = t/sqrt(n)": lambda t, n: t / math.sqrt(n),
    "t/sqrt(df)": lambda t, n: t / math.sqrt(n - 1),
    "g_z (Hedges)": lambda t, n: t / math.sqrt(n) * (1 - 3 / (4 * (n - 1) - 1)),
    "d_s = t*sqrt(2/n)": lambda t, n: t * math.sqrt(2 / n),
    "2t/sqrt(df)": lambda t, n: 2 * t / math.sqrt(n - 1),
}


def image(f: Callable[..., float], *intervals: tuple[float, float]) -> tuple[float, float]:
    """Range of ``f`` over the corners of the ``intervals`` (exact for f monotone in each)."""
    vals = [f(*c) for c in itertools.product(*intervals)]
    return (min(vals), max(vals))


def matches(value_range: tuple[float, float], reported: float, digits: int) -> bool:
    """True when some value in ``value_range`` prints as ``reported`` with ``digits`` decimals."""
    lo, hi = rounding(reported, digits)
    return value_range[0] <= hi and value_range[1] >= lo


def implied_r(d_av: float, d_z: float) -> float:
    r"""The correlation between conditions that equal SDs imply: :math:`1 - (d_{av}/d_z)^2/2`."""
    return 1 - (d_av / d_z) ** 2 / 2
