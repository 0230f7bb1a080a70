"""Field constraints as data: each config class declares every field's rule once.

A config (every :class:`~theorylab.study.Study`, ``TrainConfig``) is a frozen dataclass that
inherits :class:`Constrained` and maps each field name to a constraint object in the class
attribute ``constraints``::

    constraints: ClassVar = {"n_reps": Int(1, 10_000), "ns": Tuple(Int(1, 10**7)), ...}

Construction validates every field (in field order) and then calls ``check()``, where a class
keeps only its genuine cross-field rules (e.g. ``d_model % n_heads == 0``). A field without a
declaration (or a declaration without a field) is a programming error, reported at the first
construction. Messages follow :mod:`theorylab.validation`:
``'n_reps' of MoERateStudy must be an int >= 1 and <= 10000. Got 0.``

Tests read the declarations (``lo``, ``hi``, ``choices``, ``min_len`` ...) to generate the
invalid values of every field of every registered config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from typing import Any, ClassVar

from theorylab.errors import ConfigError
from theorylab.validation import _range_text

__all__ = ["Constraint", "Int", "Real", "Bool", "Str", "Choice", "Device", "Optional", "Tuple",
           "Constrained", "validate", "SEED", "POSITIVE", "NONNEGATIVE", "UNIT_OPEN", "UNIT"]


def _who(owner: str, name: str) -> str:
    return f"'{name}' of {owner}"


class Constraint:
    """One field's rule: ``ok(value)`` decides, ``rule()`` says it (after "must be")."""

    #: What a list of such values is called ("ints", "finite reals", ...).
    plural: ClassVar[str] = "values"

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def rule(self) -> str:
        raise NotImplementedError

    def check(self, owner: str, name: str, value: Any) -> None:
        """Raise a one-line :class:`ConfigError` unless ``value`` satisfies the rule."""
        if not self.ok(value):
            raise ConfigError(f"{_who(owner, name)} must be {self.rule()}. Got {value!r}.")


@dataclasses.dataclass(frozen=True)
class Int(Constraint):
    """An int (not a bool) in ``[lo, hi]``."""

    lo: int | None = None
    hi: int | None = None
    plural: ClassVar[str] = "ints"

    def ok(self, value):
        return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
                and (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi))

    def rule(self):
        rng = _range_text(self.lo, self.hi)
        return "an int" + (f" {rng}" if rng else "")


@dataclasses.dataclass(frozen=True)
class Real(Constraint):
    """A finite real (ints accepted, bools not) in the interval; ``*_open`` excludes the end."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    plural: ClassVar[str] = "reals"

    def ok(self, value):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and math.isfinite(value)):
            return False
        v = float(value)
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def rule(self):
        rng = _range_text(self.lo, self.hi, self.lo_open, self.hi_open)
        return "a finite real" + (f" {rng}" if rng else "")


@dataclasses.dataclass(frozen=True)
class Bool(Constraint):
    """``True`` or ``False`` (not 0/1)."""

    plural: ClassVar[str] = "bools"

    def ok(self, value):
        return isinstance(value, bool)

    def rule(self):
        return "a bool (true or false)"


@dataclasses.dataclass(frozen=True)
class Str(Constraint):
    """Any string (a path, a label)."""

    plural: ClassVar[str] = "strings"

    def ok(self, value):
        return isinstance(value, str)

    def rule(self):
        return "a string"


@dataclasses.dataclass(frozen=True)
class Choice(Constraint):
    """One of a fixed set of values (names of families, tasks, methods ...)."""

    choices: tuple
    plural: ClassVar[str] = "names"

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))

    def ok(self, value):
        try:
            return value in self.choices
        except TypeError:  # unhashable or incomparable
            return False

    def rule(self):
        return "one of " + ", ".join(map(repr, self.choices))


#: torch device names that :func:`theorylab.empirical.train.pick_device` accepts.
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclasses.dataclass(frozen=True)
class Device(Constraint):
    """A torch device name: 'auto', 'cpu', 'cuda' or 'cuda:i' (availability is checked at run)."""

    plural: ClassVar[str] = "devices"

    def ok(self, value):
        return isinstance(value, str) and _DEVICE.fullmatch(value) is not None

    def rule(self):
        return "'auto', 'cpu', 'cuda' or 'cuda:i'"


@dataclasses.dataclass(frozen=True)
class Optional(Constraint):
    """``None`` or a value satisfying ``inner``."""

    inner: Constraint

    def ok(self, value):
        return value is None or self.inner.ok(value)

    def rule(self):
        return f"None or {self.inner.rule()}"

    def check(self, owner, name, value):
        if value is not None:
            self.inner.check(owner, name, value)


def _example(value: Any) -> str:
    """``value`` as the user would type it inside ``--set name=[...]``."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclasses.dataclass(frozen=True)
class Tuple(Constraint):
    """A tuple (or list) of ``min_len``..``max_len`` items, each satisfying ``item``."""

    item: Constraint
    min_len: int = 1
    max_len: int | None = None
    plural: ClassVar[str] = "lists"

    def ok(self, value):
        return (isinstance(value, (tuple, list)) and self._len_ok(len(value))
                and all(self.item.ok(v) for v in value))

    def _len_ok(self, n: int) -> bool:
        return n >= self.min_len and (self.max_len is None or n <= self.max_len)

    def _len_text(self) -> str:
        if self.max_len is not None and self.max_len == self.min_len:
            return f"exactly {self.min_len}"
        if self.max_len is None:
            return f"at least {self.min_len}"
        return f"{self.min_len} to {self.max_len}"

    def rule(self):
        return f"a list of {self._len_text()} {self.item.plural}"

    def check(self, owner, name, value):
        who = _who(owner, name)
        if not isinstance(value, (tuple, list)):
            raise ConfigError(f"{who} must be a list of {self.item.plural} "
                              f"(write --set {name}=[{_example(value)}]). Got {value!r}.")
        if not self._len_ok(len(value)):
            raise ConfigError(f"{who} must be {self.rule()}. Got {len(value)}: {value!r}.")
        for i, v in enumerate(value):
            if isinstance(self.item, (Tuple, Optional)):  # nested: name the row
                self.item.check(owner, f"{name}[{i}]", v)
            elif not self.item.ok(v):
                raise ConfigError(f"{who} must be {self.item.rule()} in every item. "
                                  f"Got {v!r} (item {i}).")


# -- the common declarations ------------------------------------------------------------------

#: Base seeds: :func:`~theorylab.seeding.seed_for` takes any int >= 0; 63 bits keeps every seed
#: valid for numpy and torch alike.
SEED = Int(0, 2**63 - 1)
POSITIVE = Real(0, lo_open=True)
NONNEGATIVE = Real(0)
#: A probability or fraction strictly inside (0, 1).
UNIT_OPEN = Real(0, 1, lo_open=True, hi_open=True)
UNIT = Real(0, 1)


# -- validation --------------------------------------------------------------------------------


def validate(config: Any, constraints: dict[str, Constraint]) -> None:
    """Check every dataclass field of ``config`` against its declaration (field order)."""
    cls = type(config)
    names = [f.name for f in dataclasses.fields(config)]
    missing = [n for n in names if n not in constraints]
    extra = sorted(set(constraints) - set(names))
    if missing or extra:  # a programming error of the class, not a user's
        raise TypeError(f"{cls.__name__}.constraints must declare exactly its fields: "
                        f"undeclared {missing}, unknown {extra}.")
    for n in names:
        constraints[n].check(cls.__name__, n, getattr(config, n))


class Constrained:
    """Mixin of frozen-dataclass configs: validate the declared ``constraints``, then ``check()``.

    Subclasses declare ``constraints: ClassVar[dict[str, Constraint]]`` and may override
    ``check()`` for rules that involve several fields; they do not define ``__post_init__``.
    """

    constraints: ClassVar[dict[str, Constraint]] = {}

    def __post_init__(self):
        validate(self, type(self).constraints)
        self.check()

    def check(self) -> None:
        """Cross-field rules (the single-field ones are in ``constraints``)."""
