"""The study contract: a frozen dataclass config that expands into independent units of work.

A *study* is a frozen dataclass whose fields are its configuration (defaults reproduce the
paper's setting). ``units()`` lists the units of work (small JSON-able dicts such as
``{"n": 1000, "rep": 3}``); ``run_unit(unit, ctx)`` computes them deterministically (seeded from
the unit) and returns one row (a flat dict of scalars) or *long records* (a list of such dicts,
e.g. one per (method, fraction) or (round, strategy)). The store keys each unit by
``(name, config_hash(), unit_key(unit))``, so a rerun with the same config skips finished units.
Expensive earlier stages (a pretrained model, a generated data set) come from
``ctx.artifact(stage, key, build)`` (:mod:`theorylab.artifacts`): built once, stored beside the
results, reused by every worker and rerun. ``quick()`` gives the small form that CI runs: fewer
sizes and replications, never looser criteria. Each study declares its fields' rules once in
``constraints`` (:mod:`theorylab.constraints`), checked at construction; ``check()`` holds the
rules that involve several fields.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any, ClassVar

from theorylab.constraints import Constrained
from theorylab.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from theorylab.artifacts import UnitContext

__all__ = ["Study", "STUDIES", "config_dict", "config_hash", "unit_key", "from_dict", "records",
           "memory_context", "run_command"]

#: Every study class by its ``name`` (filled as subclasses are defined): what ``theorylab run`` runs.
STUDIES: dict[str, type] = {}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def config_dict(study: Study) -> dict[str, Any]:
    """The study's configuration as plain JSON types (its dataclass fields)."""
    return _jsonable(study)


def _stable_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_hash(obj: Any, digits: int = 16) -> str:
    """The first ``digits`` hex digits of the SHA-256 of ``obj``'s canonical JSON."""
    return hashlib.sha256(_stable_json(obj).encode()).hexdigest()[:digits]


def config_hash_of(name: str, version: int, config: dict[str, Any]) -> str:
    """The config hash of a study ``name`` at ``version`` with ``config`` (plain JSON types):
    what :func:`config_hash` computes, and what a stored config is checked against."""
    return stable_hash({"name": name, "version": version, "config": config})


def config_hash(study: Study) -> str:
    """Stable 16-hex-digit hash of (study name, row-schema version, config): the store's key.

    Bump a study's ``version`` whenever ``run_unit`` changes what it computes or returns, so
    rows of the old code are never mixed with the new (they stay in the store, unreferenced).
    """
    return config_hash_of(study.name, study.version, config_dict(study))


def unit_key(unit: dict) -> str:
    """Canonical JSON of a unit (sorted keys): the unit's key inside one configuration."""
    return _stable_json(_jsonable(unit))


def from_dict(cls: type[Study], values: dict[str, Any]) -> Study:
    """Build a study from a dict, rejecting unknown fields with a one-line :class:`ConfigError`."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config field '{unknown[0]}' for {cls.__name__}; "
                          f"valid fields: {', '.join(sorted(names))}.")
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class Study(Constrained):
    """Base class of every study (subclass as a frozen dataclass, set ``name``, declare
    ``constraints`` for every field; cross-field rules go in ``check()``)."""

    name: ClassVar[str] = "study"
    #: Version of what ``run_unit`` computes: part of the config hash (bump on change).
    version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            STUDIES[cls.name] = cls

    def units(self) -> list[dict]:
        """The independent units of work, each a small JSON-able dict."""
        raise NotImplementedError

    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> dict | list[dict]:
        """Compute one unit: a flat dict of scalars (one row) or a list of them (long records).

        ``ctx`` (given by the sweep) provides ``ctx.artifact(stage, key, build)``; a study that
        uses artifacts and is called without one falls back to :func:`memory_context`.
        """
        raise NotImplementedError

    def quick(self) -> Study:
        """The CI-sized form of this study (default: itself)."""
        return self

    def replace(self, **changes) -> Study:
        """A copy with some fields changed (validated like the original)."""
        return from_dict(type(self), {**{f.name: getattr(self, f.name)
                                         for f in dataclasses.fields(self)}, **changes})


def memory_context(study: Study, ctx: UnitContext | None = None) -> UnitContext:
    """``ctx`` itself, or (when a unit is run by hand, outside a sweep) one whose artifacts live
    in memory only."""
    from theorylab.artifacts import UnitContext
    return ctx if ctx is not None else UnitContext(study, None)


def records(table: pd.DataFrame, kind: str, column: str = "record") -> pd.DataFrame:
    """The rows of one kind of long record (``table[column] == kind``), without the columns that
    only other kinds fill (all-NaN here), index reset."""
    if column not in table.columns:
        raise ConfigError(f"table has no {column!r} column; its records are not of several kinds.")
    sub = table[table[column] == kind]
    return sub.dropna(axis=1, how="all").reset_index(drop=True)


def _set_value(value: Any) -> str:
    """``value`` as the CLI's ``--set`` parses it back (JSON, or a bare string)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value  # a bare word stays readable: expert=sigmoid
    return json.dumps(_jsonable(value), separators=(",", ":"))


def run_command(study: Study) -> str:
    """The ``theorylab run`` command that computes exactly ``study``.

    Its base is the default config or its quick form (``--quick``), whichever differs from
    ``study`` in fewer fields; each differing field becomes a ``--set FIELD=VALUE`` (applied
    after ``--quick``), so the command's config hash equals ``config_hash(study)``.
    """
    import shlex
    try:
        default = type(study)()
        bases = [(default, False), (default.quick(), True)]
    except Exception:  # noqa: BLE001 - a study without a default config: name only
        return f"theorylab run {study.name}"
    fields = [f.name for f in dataclasses.fields(study)]

    def diff(base: Study) -> list[str]:
        return [k for k in fields if _jsonable(getattr(base, k)) != _jsonable(getattr(study, k))]

    base, quick = min(bases, key=lambda b: (len(diff(b[0])), not b[1]))
    sets = [f"--set {shlex.quote(f'{k}={_set_value(getattr(study, k))}')}" for k in diff(base)]
    return " ".join(["theorylab run", shlex.quote(study.name), *(["--quick"] if quick else []),
                     *sets])
