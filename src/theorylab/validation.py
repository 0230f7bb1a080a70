"""Validation at the boundary: one-line errors naming the owner, the parameter, the rule, the value.

Message template (after scikit-learn's): ``'k' of MoERateStudy must be an int >= 1. Got 0.``
Kernels assume validated input; public wrappers call these, and configs declare their fields'
rules in :mod:`theorylab.constraints` (same messages).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import numpy as np

from theorylab.errors import ConfigError, InputError

__all__ = ["check_int", "check_real", "check_choice", "check_finite", "check_shape"]


def _who(owner: str | None, name: str) -> str:
    return f"'{name}' of {owner}" if owner else f"'{name}'"


def _range_text(lo, hi, lo_open=False, hi_open=False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi}")
    return " and ".join(parts)


def check_int(owner: str | None, name: str, value, lo=None, hi=None) -> int:
    """Return ``value`` as int if it is an integer in [lo, hi], else raise :class:`ConfigError`."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return int(value)
    rule = "an int" + (f" {_range_text(lo, hi)}" if (lo is not None or hi is not None) else "")
    raise ConfigError(f"{_who(owner, name)} must be {rule}. Got {value!r}.")


def check_real(owner: str | None, name: str, value, lo=None, hi=None,
               lo_open: bool = False, hi_open: bool = False) -> float:
    """Return ``value`` as float if it is a finite real in the stated interval."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        v = float(value)
        ok = ((lo is None or (v > lo if lo_open else v >= lo))
              and (hi is None or (v < hi if hi_open else v <= hi)))
        if ok:
            return v
    rng = _range_text(lo, hi, lo_open, hi_open)
    rule = "a finite real" + (f" {rng}" if rng else "")
    raise ConfigError(f"{_who(owner, name)} must be {rule}. Got {value!r}.")


def check_choice(owner: str | None, name: str, value, choices: Iterable):
    """Return ``value`` if it is one of ``choices``."""
    choices = tuple(choices)
    if value in choices:
        return value
    raise ConfigError(
        f"{_who(owner, name)} must be one of {', '.join(map(repr, choices))}. Got {value!r}.")


def check_finite(name: str, array) -> np.ndarray:
    """Return ``array`` as ndarray if every entry is finite, else raise :class:`InputError`."""
    arr = np.asarray(array)
    if arr.dtype.kind not in "biufc":
        raise InputError(f"'{name}' must be numeric. Got dtype {arr.dtype}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"'{name}' must be finite. Got {arr[idx].item()!r} at index {idx} "
                         f"({int(bad.sum())} non-finite entries).")
    return arr


def check_shape(name: str, array, shape: Sequence[int | None]) -> np.ndarray:
    """Check ``array.shape`` against ``shape`` where ``None`` or ``-1`` is a wildcard."""
    arr = np.asarray(array)
    want = tuple(shape)
    if arr.ndim != len(want) or any(
            w not in (None, -1) and w != s for w, s in zip(want, arr.shape, strict=True)):
        pretty = "(" + ", ".join("*" if w in (None, -1) else str(w) for w in want) + ")"
        raise InputError(f"'{name}' must have shape {pretty}. Got {arr.shape}.")
    return arr
