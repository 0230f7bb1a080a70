r"""Criteria as objects: each one decides a claim's outcome, renders its ``expected`` text and
describes itself as a machine-readable dict, so that what is shown is what is tested.

An outcome is one of :data:`STATUSES`:

* ``"holds"`` — the measurement meets the criterion;
* ``"fails"`` — it does not;
* ``"inconclusive"`` — the measurement's confidence interval is wider than the precision the
  criterion states (``max_half_width``) and, at that width, the CI cannot tell. It does not hold,
  so a claim can never pass merely for lack of power.

The precision gates exactly the outcomes a wider CI would make easier: a two-sided band or an
upper bound is met *more* easily by a wide CI, so "holds" needs the precision; a CI lying above
a value is *harder* to get with a wide CI, so a wide CI that straddles the value is inconclusive
but one that lies above it holds.

Kinds: :class:`RateBand` (two-sided rate), :class:`RateBound` (upper bound on a rate),
:class:`Threshold` (value op x), :class:`CIAbove` / :class:`CIBelow`, :class:`Equality` (exact,
absolute or relative tolerance) and :class:`AllOf` (conjunction of named sub-criteria).

Example
-------
>>> Threshold("<", 0.25).decide(0.1), Threshold("<", 0.25).render()
('holds', '< 0.25')
>>> c = RateBand((-0.5, -0.43), max_half_width=0.125)
>>> c.decide(-0.48, (-0.52, -0.44)), c.decide(-0.48, (-0.9, -0.06))
('holds', 'inconclusive')
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from theorylab.errors import ConfigError

__all__ = ["STATUSES", "Measured", "Criterion", "RateBand", "RateBound", "Threshold", "CIAbove",
           "CIBelow", "CIContains", "Equality", "AllOf", "half_width", "from_description"]

STATUSES = ("holds", "fails", "inconclusive")

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class Measured(NamedTuple):
    """A value with its (lo, hi) confidence interval, as one named part of an :class:`AllOf`."""

    value: Any
    ci: tuple[float, float] | None = None


def half_width(ci: tuple[float, float]) -> float:
    """Half the width of the interval ``ci``."""
    return (float(ci[1]) - float(ci[0])) / 2


def _g(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _need_ci(kind: str, ci) -> tuple[float, float] | None:
    if ci is None:
        return None
    lo, hi = float(ci[0]), float(ci[1])
    if math.isnan(lo) or math.isnan(hi):
        return None
    if lo > hi:
        raise ConfigError(f"the CI given to a {kind} criterion must have lo <= hi. Got {ci}.")
    return lo, hi


def _check_precision(kind: str, max_half_width: float | None) -> None:
    if max_half_width is not None and not (max_half_width > 0):
        raise ConfigError(f"'max_half_width' of {kind} must be > 0. Got {max_half_width}.")


class Criterion:
    """Base: ``decide(measured, ci) -> status``, ``render() -> str``, ``describe() -> dict``."""

    kind = "criterion"

    def decide(self, measured: Any, ci: tuple[float, float] | None = None) -> str:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class _Rate(Criterion):
    band: tuple[float, float]
    max_half_width: float

    def __post_init__(self):
        lo, hi = sorted(float(b) for b in self.band)
        object.__setattr__(self, "band", (lo, hi))
        _check_precision(type(self).__name__, self.max_half_width)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "band": list(self.band), "requires_decay": True,
                "max_half_width": self.max_half_width}


@dataclass(frozen=True)
class RateBand(_Rate):
    r"""Two-sided rate: the slope CI lies below 0 (a measured decay) and meets ``band``
    (closed), with half-width ≤ ``max_half_width``. A CI disjoint from the band fails at any
    width."""

    kind = "rate_band"

    def decide(self, measured, ci=None) -> str:
        ci = _need_ci(self.kind, ci)
        if ci is None:
            return "inconclusive"
        lo, hi = self.band
        precise = half_width(ci) <= self.max_half_width
        if ci[0] > hi or ci[1] < lo:
            return "fails"
        if ci[1] < 0:
            return "holds" if precise else "inconclusive"
        return "fails" if precise else "inconclusive"

    def render(self) -> str:
        return (f"CI meets [{self.band[0]:.3g}, {self.band[1]:.3g}], CI < 0, "
                f"half-width <= {self.max_half_width:g}")


@dataclass(frozen=True)
class RateBound(_Rate):
    r"""Upper bound on a rate (an :math:`O_P` bound): the slope CI lies below 0 and reaches the
    band or lies below it (``ci_lo <= max(band)``), with half-width ≤ ``max_half_width``. A CI
    entirely above the band fails at any width."""

    kind = "rate_bound"

    def decide(self, measured, ci=None) -> str:
        ci = _need_ci(self.kind, ci)
        if ci is None:
            return "inconclusive"
        precise = half_width(ci) <= self.max_half_width
        if ci[0] > self.band[1]:
            return "fails"
        if ci[1] < 0:
            return "holds" if precise else "inconclusive"
        return "fails" if precise else "inconclusive"

    def render(self) -> str:
        return (f"CI reaches <= {self.band[1]:.3g} (bound), CI < 0, "
                f"half-width <= {self.max_half_width:g}")


@dataclass(frozen=True)
class Threshold(Criterion):
    """``measured op value`` for op in ``<, <=, >, >=``; a NaN measurement fails."""

    op: str
    value: float
    kind = "threshold"

    def __post_init__(self):
        if self.op not in _OPS:
            raise ConfigError(f"'op' of Threshold must be one of {', '.join(_OPS)}. Got {self.op!r}.")

    def decide(self, measured, ci=None) -> str:
        return "holds" if bool(_OPS[self.op](float(measured), self.value)) else "fails"

    def render(self) -> str:
        return f"{self.op} {_g(self.value)}"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "op": self.op, "value": self.value}


@dataclass(frozen=True)
class _CISide(Criterion):
    value: float
    max_half_width: float
    inclusive: bool = False

    def __post_init__(self):
        _check_precision(type(self).__name__, self.max_half_width)

    def _decide(self, ci: tuple[float, float], near: float, far: float, beyond) -> str:
        """``near``: the CI end that must pass ``value``; ``far``: the other end."""
        if beyond(near):
            return "holds"
        if not beyond(far):
            return "fails"   # the whole CI is on the wrong side
        return "fails" if half_width(ci) <= self.max_half_width else "inconclusive"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "inclusive": self.inclusive,
                "max_half_width": self.max_half_width}


@dataclass(frozen=True)
class CIAbove(_CISide):
    """The CI lies above ``value`` (``lo > value``, or ``>=`` when ``inclusive``). A CI that
    straddles ``value`` with half-width > ``max_half_width`` is inconclusive."""

    kind = "ci_above"

    def decide(self, measured, ci=None) -> str:
        ci = _need_ci(self.kind, ci)
        if ci is None:
            return "inconclusive"
        ge = operator.ge if self.inclusive else operator.gt
        return self._decide(ci, ci[0], ci[1], lambda x: ge(x, self.value))

    def render(self) -> str:
        return f"CI {'>=' if self.inclusive else '>'} {_g(self.value)}"


@dataclass(frozen=True)
class CIBelow(_CISide):
    """The CI lies below ``value`` (``hi < value``, or ``<=`` when ``inclusive``)."""

    kind = "ci_below"

    def decide(self, measured, ci=None) -> str:
        ci = _need_ci(self.kind, ci)
        if ci is None:
            return "inconclusive"
        le = operator.le if self.inclusive else operator.lt
        return self._decide(ci, ci[1], ci[0], lambda x: le(x, self.value))

    def render(self) -> str:
        return f"CI {'<=' if self.inclusive else '<'} {_g(self.value)}"


@dataclass(frozen=True)
class CIContains(_CISide):
    """Two-sided comparison: the CI contains ``value`` and is at most ``max_half_width`` wide
    (holds); a CI that excludes ``value`` fails; one that contains it but is wider is
    inconclusive (``inclusive`` is unused: the ends count as inside)."""

    kind = "ci_contains"

    def decide(self, measured, ci=None) -> str:
        ci = _need_ci(self.kind, ci)
        if ci is None:
            return "inconclusive"
        if not ci[0] <= self.value <= ci[1]:
            return "fails"
        return "holds" if half_width(ci) <= self.max_half_width else "inconclusive"

    def render(self) -> str:
        return f"CI contains {_g(self.value)}, half-width <= {_g(self.max_half_width)}"


@dataclass(frozen=True)
class Equality(Criterion):
    r"""``measured == value`` exactly (any type), or within ``abs_tol`` (:math:`|m - v| \le`
    abs_tol) or ``rel_tol`` (:math:`|m - v| \le` rel_tol · |v|). With ``max_half_width``, a
    measurement whose CI is wider than that is inconclusive."""

    value: Any
    abs_tol: float | None = None
    rel_tol: float | None = None
    max_half_width: float | None = None
    kind = "equality"

    def __post_init__(self):
        if self.abs_tol is not None and self.rel_tol is not None:
            raise ConfigError("Equality takes 'abs_tol' or 'rel_tol', not both.")
        for name in ("abs_tol", "rel_tol"):
            tol = getattr(self, name)
            if tol is not None and not tol >= 0:
                raise ConfigError(f"'{name}' of Equality must be >= 0. Got {tol}.")
        _check_precision("Equality", self.max_half_width)

    def decide(self, measured, ci=None) -> str:
        if self.max_half_width is not None:
            ci = _need_ci(self.kind, ci)
            if ci is None or half_width(ci) > self.max_half_width:
                return "inconclusive"
        if self.abs_tol is None and self.rel_tol is None:
            return "holds" if measured == self.value else "fails"
        tol = self.abs_tol if self.abs_tol is not None else self.rel_tol * abs(self.value)
        return "holds" if abs(float(measured) - float(self.value)) <= tol else "fails"

    def render(self) -> str:
        text = f"= {_g(self.value)}"
        if self.abs_tol is not None:
            text += f" ± {_g(self.abs_tol)}"
        if self.rel_tol is not None:
            text += f" ± {self.rel_tol:.0%} (relative)"
        if self.max_half_width is not None:
            text += f", half-width <= {_g(self.max_half_width)}"
        return text

    def describe(self) -> dict[str, Any]:
        value = self.value.item() if hasattr(self.value, "item") else self.value
        return {"kind": self.kind, "value": value, "abs_tol": self.abs_tol,
                "rel_tol": self.rel_tol, "max_half_width": self.max_half_width}


@dataclass(frozen=True)
class AllOf(Criterion):
    """Conjunction of named sub-criteria, decided on a mapping name → value (or
    :class:`Measured`). Fails if any part fails, else inconclusive if any part is, else holds."""

    parts: tuple[tuple[str, Criterion], ...]
    kind = "all_of"

    def __init__(self, parts: Mapping[str, Criterion] | tuple):
        items = tuple(parts.items()) if isinstance(parts, Mapping) else tuple(parts)
        if not items:
            raise ConfigError("AllOf needs at least one named criterion.")
        object.__setattr__(self, "parts", items)

    def decide_parts(self, measured: Mapping[str, Any]) -> dict[str, str]:
        """The status of each part."""
        if not isinstance(measured, Mapping):
            raise ConfigError(f"AllOf decides on a mapping of its parts' names "
                              f"({', '.join(n for n, _ in self.parts)}). Got {type(measured).__name__}.")
        missing = [n for n, _ in self.parts if n not in measured]
        if missing:
            raise ConfigError(f"AllOf misses measured values for: {', '.join(missing)}.")
        out = {}
        for name, crit in self.parts:
            m = measured[name]
            m = m if isinstance(m, Measured) else Measured(m)
            out[name] = crit.decide(m.value, m.ci)
        return out

    def decide(self, measured, ci=None) -> str:
        statuses = set(self.decide_parts(measured).values())
        return "fails" if "fails" in statuses else (
            "inconclusive" if "inconclusive" in statuses else "holds")

    def render(self) -> str:
        return " and ".join(f"{name} {crit.render()}" for name, crit in self.parts)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "parts": {name: crit.describe() for name, crit in self.parts}}


def from_description(d: Mapping[str, Any]) -> Criterion:
    """The criterion that :meth:`Criterion.describe` described (``from_description(c.describe())``
    decides and renders as ``c``): lets a reader of the verify JSON re-decide a verdict."""
    kind = d.get("kind")
    if kind in ("rate_band", "rate_bound"):
        cls = RateBand if kind == "rate_band" else RateBound
        return cls(tuple(d["band"]), d["max_half_width"])
    if kind == "threshold":
        return Threshold(d["op"], d["value"])
    if kind in ("ci_above", "ci_below", "ci_contains"):
        cls = {"ci_above": CIAbove, "ci_below": CIBelow, "ci_contains": CIContains}[kind]
        return cls(d["value"], d["max_half_width"], d["inclusive"])
    if kind == "equality":
        return Equality(d["value"], d["abs_tol"], d["rel_tol"], d["max_half_width"])
    if kind == "all_of":
        return AllOf({name: from_description(p) for name, p in d["parts"].items()})
    raise ConfigError(f"unknown criterion kind {kind!r}; known: rate_band, rate_bound, threshold, "
                      "ci_above, ci_below, equality, all_of.")
