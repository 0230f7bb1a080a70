"""Resumable results store: SQLite (stdlib), one row per finished unit of work.

Rows are keyed by ``(experiment, config_hash, unit_key)`` and each is committed the moment its
unit finishes (WAL journal), so a study killed at any point (Ctrl-C, ``kill -9``) and rerun with
the same config skips the finished units and loses none. Each run also leaves a JSON manifest
(versions, git commit, config, host, wall time) under ``<store dir>/manifests/``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from theorylab.errors import StoreError
from theorylab.study import Study, config_dict, config_hash, unit_key

__all__ = ["Store", "default_store_path", "environment_info"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS configs (
    experiment TEXT NOT NULL, config_hash TEXT NOT NULL, config_json TEXT NOT NULL,
    PRIMARY KEY (experiment, config_hash));
CREATE TABLE IF NOT EXISTS units (
    experiment TEXT NOT NULL, config_hash TEXT NOT NULL, unit_key TEXT NOT NULL,
    row_json TEXT NOT NULL, seconds REAL, finished_at TEXT NOT NULL,
    PRIMARY KEY (experiment, config_hash, unit_key));
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT NOT NULL,
    config_hash TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT,
    n_units INTEGER, n_computed INTEGER, wall_seconds REAL, manifest_path TEXT);
"""


def default_store_path() -> Path:
    """``$THEORYLAB_STORE`` if set, else ``./theorylab-results/results.sqlite``."""
    return Path(os.environ.get("THEORYLAB_STORE", "theorylab-results/results.sqlite"))


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info() -> dict[str, Any]:
    """Versions, host and git commit: the reproducibility part of a manifest."""
    versions = {}
    for mod in ("numpy", "scipy", "sympy", "numba", "torch", "statsmodels", "pandas"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        versions[mod] = getattr(m, "__version__", "?")
    from theorylab import __version__
    return {"theorylab": __version__, "python": platform.python_version(),
            "versions": versions, "host": socket.gethostname(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "git_commit": _git_commit()}


class Store:
    """SQLite-backed table of finished units. Open one per process (not shared across forks)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:  # a file where a folder must be, not a database, ...
            raise StoreError(f"results store {str(self.path)!r} cannot be opened: {exc}") from None

    @property
    def manifest_dir(self) -> Path:
        return self.path.parent / "manifests"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------
    def register(self, study: Study) -> str:
        """Record the study's config; return its hash."""
        h = config_hash(study)
        self._conn.execute("INSERT OR IGNORE INTO configs VALUES (?, ?, ?)",
                           (study.name, h, json.dumps(config_dict(study), sort_keys=True)))
        return h

    def put(self, study: Study, unit: dict, row: dict, seconds: float | None = None) -> None:
        """Commit one finished unit (idempotent: a unit already stored is kept as it was)."""
        self._conn.execute(
            "INSERT OR IGNORE INTO units VALUES (?, ?, ?, ?, ?, ?)",
            (study.name, config_hash(study), unit_key(unit),
             json.dumps(row, default=_json_default), seconds, _now()))

    def begin_run(self, study: Study, n_units: int) -> int:
        cur = self._conn.execute(
            "INSERT INTO runs (experiment, config_hash, started_at, n_units) VALUES (?, ?, ?, ?)",
            (study.name, self.register(study), _now(), n_units))
        return int(cur.lastrowid)

    def end_run(self, run_id: int, study: Study, n_computed: int, wall_seconds: float,
                executor: str) -> Path:
        """Close a run and write its manifest; return the manifest's path."""
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
        path = self.manifest_dir / f"{study.name}-{config_hash(study)}-{stamp}-{run_id}.json"
        manifest = {"experiment": study.name, "config_hash": config_hash(study),
                    "config": config_dict(study), "run_id": run_id, "executor": executor,
                    "n_units": len(study.units()), "n_computed": n_computed,
                    "wall_seconds": wall_seconds, "finished_at": _now(), **environment_info()}
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        self._conn.execute(
            "UPDATE runs SET finished_at=?, n_computed=?, wall_seconds=?, manifest_path=? "
            "WHERE run_id=?", (_now(), n_computed, wall_seconds, str(path), run_id))
        return path

    # -- reading ------------------------------------------------------------------------------
    def done_keys(self, study: Study) -> set[str]:
        cur = self._conn.execute(
            "SELECT unit_key FROM units WHERE experiment=? AND config_hash=?",
            (study.name, config_hash(study)))
        return {k for (k,) in cur.fetchall()}

    def table(self, study: Study, require_complete: bool = False) -> pd.DataFrame:
        """Finished units of ``study`` as a tidy table: the unit's fields, then the row's.

        Rows come in the order of ``study.units()``, not in the order they finished, so every
        statistic computed from the table is bit-identical however the sweep was scheduled.
        """
        cur = self._conn.execute(
            "SELECT unit_key, row_json, seconds FROM units WHERE experiment=? AND config_hash=?",
            (study.name, config_hash(study)))
        position = {unit_key(u): i for i, u in enumerate(study.units())}
        records = []
        for key, row_json, seconds in sorted(cur.fetchall(),
                                             key=lambda r: (position.get(r[0], len(position)), r[0])):
            rec = dict(json.loads(key))
            rec.update(json.loads(row_json))
            rec["unit_seconds"] = seconds
            records.append(rec)
        if require_complete:
            missing = len(study.units()) - len(records)
            if missing > 0:
                raise StoreError(
                    f"store {self.path} has {len(records)} of {len(study.units())} units of "
                    f"'{study.name}' (config {config_hash(study)}); run it first "
                    f"(theorylab run {study.name}{' --quick' if _is_quick(study) else ''}).")
        return pd.DataFrame.from_records(records)

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._conn)


def _is_quick(study: Study) -> bool:
    try:
        return study.quick() == study
    except Exception:  # noqa: BLE001 - only a hint in a message
        return False


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"row value of type {type(value).__name__} is not JSON-serialisable")
