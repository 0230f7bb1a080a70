"""Artifacts: the expensive intermediate stages of a study, built once and reused everywhere.

A unit of a staged study asks for an earlier stage with ``ctx.artifact(stage, key, build)``
(a pretrained base model, a generated data set, the model of the previous acquisition round).
The first caller builds it, writes it *atomically* beside the results store and records it in the
store's ``artifacts`` table; every other worker, and every rerun, loads it instead.

Layout: ``<store dir>/artifacts/<study>/<scope hash>/<stage>/<key>.<pt|parquet>``. The scope hash
is the study's config hash (name, ``version``, every config field), or, with
``depends_on=(field, ...)``, a hash of the name, version, stage and only those fields — so that,
say, a pretrained model is reused when only the evaluation grid changes.

Guarantees
----------
* **Atomic.** The object is written to a temporary file in the same folder, flushed, fsync'ed and
  renamed over the final name (``os.replace``), so a reader sees the old state or the new one,
  never half a file (:mod:`theorylab.atomic`); a ``kill -9`` during the write leaves only an
  ignored hidden ``.<name>.*.tmp`` file (``theorylab store prune`` removes those).
* **Built once.** An exclusive ``fcntl`` lock per artifact: a second worker asking for the same
  artifact waits for the first and loads its result. A builder that dies releases the lock.
* **Safe loading.** Tensors, dicts, lists, tuples, numbers and strings go through
  ``torch.save`` and come back through ``torch.load(weights_only=True)`` (no pickle of code);
  a ``pandas.DataFrame`` goes to Parquet. Anything else is refused with a one-line error.
* **Same value on first run and rerun.** ``artifact`` always returns what it loads from disk,
  so the computation after it cannot differ between the run that built it and one that reused it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from theorylab.atomic import atomic_write
from theorylab.errors import ConfigError, StoreError

__all__ = ["ArtifactStore", "UnitContext", "FORMATS", "scope_hash"]

#: file suffix of each format
FORMATS = {"torch": ".pt", "parquet": ".parquet"}
_KEY_OK = re.compile(r"[^A-Za-z0-9_.=-]+")


def scope_hash(study, stage: str, depends_on: Iterable[str] | None) -> str:
    """The artifact's config key: the study's config hash, or a hash of only ``depends_on``."""
    from theorylab.study import config_dict, config_hash, stable_hash
    if depends_on is None:
        return config_hash(study)
    cfg = config_dict(study)
    fields = sorted(set(depends_on))
    unknown = [f for f in fields if f not in cfg]
    if unknown:
        raise ConfigError(f"'depends_on' of artifact stage {stage!r} names unknown field "
                          f"{unknown[0]!r} of {type(study).__name__}.")
    return stable_hash({"name": study.name, "version": study.version, "stage": stage,
                        "config": {f: cfg[f] for f in fields}})


def _file_stem(key: Any) -> str:
    """A readable, collision-free file name for a key (JSON-able: int, str, tuple, dict)."""
    from theorylab.study import _stable_json, stable_hash
    readable = _KEY_OK.sub("_", _stable_json(key)).strip("_")[:60] or "key"
    return f"{readable}-{stable_hash(key, 10)}"


def _format_of(obj: Any) -> str:
    import pandas as pd
    return "parquet" if isinstance(obj, pd.DataFrame) else "torch"


def _write(obj: Any, fmt: str, fh) -> None:
    if fmt == "parquet":
        obj.to_parquet(fh, index=True)
    else:
        import torch
        torch.save(obj, fh)


def _read(path: Path, fmt: str) -> Any:
    if fmt == "parquet":
        import pandas as pd
        return pd.read_parquet(path)
    import torch
    return torch.load(path, map_location="cpu", weights_only=True)


class ArtifactStore:
    """Artifacts of one results store: files under ``root``, records in the store's SQLite."""

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = Path(db_path)
        self.root = self.db_path.parent / "artifacts"

    def path_for(self, study, stage: str, key: Any, depends_on=None, fmt: str = "torch") -> Path:
        scope = scope_hash(study, stage, depends_on)
        return self.root / study.name / scope / stage / (_file_stem(key) + FORMATS[fmt])

    def find(self, study, stage: str, key: Any, depends_on=None) -> Path | None:
        """The stored file of this artifact, if it exists (any format)."""
        for fmt in FORMATS:
            p = self.path_for(study, stage, key, depends_on, fmt)
            if p.exists():
                return p
        return None

    def get(self, study, stage: str, key: Any, build: Callable[[], Any],
            depends_on: Iterable[str] | None = None) -> Any:
        """Load the artifact ``(study, stage, key)``, building and storing it first if absent."""
        if not stage or not re.fullmatch(r"[A-Za-z0-9_-]+", stage):
            raise ConfigError(f"artifact 'stage' must be a non-empty name of letters, digits, "
                              f"'_' or '-'. Got {stage!r}.")
        depends_on = None if depends_on is None else tuple(depends_on)
        folder = self.path_for(study, stage, key, depends_on).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"artifact folder {str(folder)!r} cannot be created: {exc}") from None
        lock_path = folder / (_file_stem(key) + ".lock")
        with _locked(lock_path):
            found = self.find(study, stage, key, depends_on)
            if found is not None:
                return _read(found, "parquet" if found.suffix == ".parquet" else "torch")
            t0 = time.perf_counter()
            obj = build()
            fmt = _format_of(obj)
            path = self.path_for(study, stage, key, depends_on, fmt)
            atomic_write(path, lambda fh: _write(obj, fmt, fh))
            try:
                loaded = _read(path, fmt)
            except Exception as exc:  # noqa: BLE001 - an object weights_only cannot load back
                path.unlink(missing_ok=True)
                raise ConfigError(
                    f"artifact {study.name}/{stage}/{key!r} holds a {type(obj).__name__} that "
                    f"cannot be loaded safely ({type(exc).__name__}); return tensors, dicts, "
                    f"lists, numbers, strings or a DataFrame (numpy arrays: torch.from_numpy)."
                ) from None
            self._record(study, stage, key, depends_on, path, fmt, time.perf_counter() - t0)
            return loaded

    def _record(self, study, stage, key, depends_on, path: Path, fmt: str, seconds: float) -> None:
        row = (study.name, scope_hash(study, stage, depends_on), stage,
               json.dumps(key, sort_keys=True, default=str), int(study.version),
               str(path.relative_to(self.root)), fmt, path.stat().st_size, seconds,
               time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()))
        with contextlib.closing(sqlite3.connect(self.db_path, timeout=60)) as conn, conn:
            conn.execute("INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?,?,?,?,?,?)", row)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class UnitContext:
    """What ``run_unit(unit, ctx)`` may use: the study's artifacts (picklable, for any worker)."""

    def __init__(self, study, db_path: str | os.PathLike | None):
        self.study = study
        self._artifacts = ArtifactStore(db_path) if db_path is not None else None
        self._memory: dict[tuple, Any] = {}

    def artifact(self, stage: str, key: Any, build: Callable[[], Any], *,
                 depends_on: Iterable[str] | None = None) -> Any:
        """The artifact ``(stage, key)`` of this study: loaded if stored, else built and stored.

        ``depends_on`` names the config fields the stage depends on (default: all of them).
        Without a store (``UnitContext(study, None)``) artifacts live in memory for this context.
        """
        if self._artifacts is None:
            mkey = (stage, json.dumps(key, sort_keys=True, default=str),
                    scope_hash(self.study, stage, depends_on))
            if mkey not in self._memory:
                self._memory[mkey] = build()
            return self._memory[mkey]
        return self._artifacts.get(self.study, stage, key, build, depends_on)

    def __getstate__(self):
        return {"study": self.study, "db_path": None if self._artifacts is None
                else str(self._artifacts.db_path)}

    def __setstate__(self, state):
        self.__init__(state["study"], state["db_path"])
