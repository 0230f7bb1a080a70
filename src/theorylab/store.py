"""Resumable results store: SQLite (stdlib), one entry per finished unit of work.

Units are keyed by ``(experiment, config_hash, unit_key)`` and each is committed the moment it
finishes (WAL journal), so a study killed at any point (Ctrl-C, ``kill -9``) and rerun with the
same config skips the finished units and loses none. A unit's result is one row or a list of
long records; :meth:`Store.table` returns one tidy table either way. Artifacts (the stages of
staged studies, :mod:`theorylab.artifacts`) are files under ``<store dir>/artifacts/`` recorded in
the ``artifacts`` table. Each run also leaves a JSON manifest (versions, git commit, config, host,
wall time) under ``<store dir>/manifests/``. :meth:`Store.summary` lists what a store holds and
:meth:`Store.prune` removes what older versions of the studies left.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from theorylab.errors import StoreError
from theorylab.study import (
    STUDIES,
    Study,
    config_dict,
    config_hash,
    config_hash_of,
    run_command,
    unit_key,
)

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
CREATE TABLE IF NOT EXISTS artifacts (
    experiment TEXT NOT NULL, scope_hash TEXT NOT NULL, stage TEXT NOT NULL, key TEXT NOT NULL,
    version INTEGER NOT NULL, path TEXT NOT NULL, format TEXT NOT NULL, bytes INTEGER,
    seconds REAL, created_at TEXT NOT NULL,
    PRIMARY KEY (experiment, scope_hash, stage, key));
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


def _cpu_model(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU's marketing name: /proc/cpuinfo's first "model name", else platform.processor()."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


_SIMD_WIDTHS = (("avx512f", 512), ("avx2", 256), ("avx", 256), ("sse2", 128), ("neon", 128))


def _jit_target() -> dict[str, Any]:
    """The CPU numba compiles for (LLVM's name), its SIMD features and their widest vector.

    ``fastmath`` kernels (``kernels.moe.fit``: reassociation and FMA contraction) vectorise on
    this target, so their last bits depend on it. ``simd_max_bits`` is the widest vector the
    target supports, not necessarily the one LLVM chose. None where llvmlite is missing.
    """
    try:
        import llvmlite.binding as llvm
        name, features = llvm.get_host_cpu_name(), dict(llvm.get_host_cpu_features().items())
    except (ImportError, RuntimeError):
        return {"jit_cpu": None, "simd": None, "simd_max_bits": None}
    # numba compiles for NUMBA_CPU_NAME / NUMBA_CPU_FEATURES where they are set
    name = os.environ.get("NUMBA_CPU_NAME") or name
    if os.environ.get("NUMBA_CPU_FEATURES"):
        features = {f[1:]: f[0] == "+" for f in os.environ["NUMBA_CPU_FEATURES"].split(",") if f}
    known = {"fma", "sse4.2"} | {w for w, _ in _SIMD_WIDTHS}
    simd = sorted(k for k, on in features.items() if on and k in known)
    bits = next((b for w, b in _SIMD_WIDTHS if w in simd), None)
    return {"jit_cpu": name, "simd": simd, "simd_max_bits": bits}


def environment_info() -> dict[str, Any]:
    """Versions, host, CPU (model, JIT target, vector width) and git commit: the reproducibility
    part of a manifest."""
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
            "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), **_jit_target(),
            "git_commit": _git_commit()}


class Store:
    """SQLite-backed table of finished units. Open one per process (not shared across forks)."""

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool = False):
        """Open (or create) the store at ``path``; ``readonly`` opens an existing one for reading.

        A corrupt file and a read-only file or folder (when writing) are one-line
        :class:`StoreError` s, raised here, before anything is written. A missing store opened
        ``readonly`` reads as empty and is not created.
        """
        self.path = Path(path) if path is not None else default_store_path()
        self.readonly = readonly
        try:
            self._conn = self._open_readonly() if readonly else self._open_writable()
            check = self._conn.execute("PRAGMA quick_check").fetchone()  # ms per 10 MB
            if check is None or check[0] != "ok":
                first = [ln for ln in str(check and check[0]).splitlines() if "***" not in ln]
                raise sqlite3.DatabaseError(f"integrity check failed ({' '.join(first[:1])})")
        except StoreError:
            raise
        except (OSError, sqlite3.Error) as exc:  # a file where a folder must be, not a database, ...
            corrupt = (isinstance(exc, sqlite3.DatabaseError)
                       and not isinstance(exc, sqlite3.OperationalError))
            what = "is corrupt or not a SQLite database" if corrupt else "cannot be opened"
            raise StoreError(f"results store {str(self.path)!r} {what}: {exc}") from None

    def _open_writable(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for target in (self.path, self.path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                which = "the file" if target == self.path else "its folder"
                raise StoreError(
                    f"results store {str(self.path)!r} is read-only ({which} is not writable); "
                    "`theorylab plot` can read it, but `run` and `verify` add results: pass "
                    "--store with a writable path.")
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():  # reads as empty (its errors name what to run); creates nothing
            conn = sqlite3.connect(":memory:", isolation_level=None)
            conn.executescript(_SCHEMA)
            return conn
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL store in a read-only folder without its -shm file: nobody can be writing it,
            # so read it as immutable (no locks, no shared memory).
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
        return conn

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

    def put(self, study: Study, unit: dict, row: dict | list[dict],
            seconds: float | None = None) -> None:
        """Commit one finished unit: a row, or long records (a list of rows). Idempotent: a unit
        already stored is kept as it was."""
        _check_result(study, unit, row)
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
        n_units = 0
        for key, row_json, seconds in sorted(cur.fetchall(),
                                             key=lambda r: (position.get(r[0], len(position)), r[0])):
            unit = json.loads(key)
            result = json.loads(row_json)
            n_units += 1
            for row in (result if isinstance(result, list) else [result]):
                records.append({**unit, **row, "unit_seconds": seconds})
        if require_complete:
            missing = len(study.units()) - n_units
            if missing > 0:
                command = run_command(study) + (
                    "" if self.path == default_store_path()
                    else f" --store {shlex.quote(str(self.path))}")
                raise StoreError(
                    f"store {self.path} has {n_units} of {len(study.units())} units of "
                    f"'{study.name}' (config {config_hash(study)}); compute them with "
                    f"`{command}`.")
        return pd.DataFrame.from_records(records)

    def runs(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM runs ORDER BY run_id", self._conn)

    def artifacts(self) -> pd.DataFrame:
        """Every recorded artifact: experiment, scope hash, stage, key, version, path, bytes..."""
        return pd.read_sql_query("SELECT * FROM artifacts ORDER BY experiment, stage, key",
                                 self._conn)

    @property
    def artifact_root(self) -> Path:
        return self.path.parent / "artifacts"

    # -- housekeeping ---------------------------------------------------------------------------
    def _config_is_current(self, experiment: str, chash: str, config_json: str) -> bool:
        """True if the study still exists and its current ``version`` hashes to ``chash``."""
        cls = STUDIES.get(experiment)
        return cls is not None and config_hash_of(experiment, cls.version,
                                                  json.loads(config_json)) == chash

    def summary(self) -> pd.DataFrame:
        """One row per (study, config): units and records held, artifacts and their bytes, and
        whether the config belongs to the study's current ``version`` (``stale`` otherwise)."""
        rows = []
        counts: dict[tuple[str, str], list[int]] = {}  # (units, records); rows may hold NaN,
        for e, h, row_json in self._conn.execute(       # which SQLite's json functions refuse
                "SELECT experiment, config_hash, row_json FROM units"):
            c = counts.setdefault((e, h), [0, 0])
            c[0] += 1
            c[1] += len(json.loads(row_json)) if row_json.startswith("[") else 1
        last_run = dict(((e, h), t) for e, h, t in self._conn.execute(
            "SELECT experiment, config_hash, MAX(finished_at) FROM runs "
            "GROUP BY experiment, config_hash"))
        for exp, chash, cfg in self._conn.execute(
                "SELECT experiment, config_hash, config_json FROM configs ORDER BY experiment"):
            n_units, n_rec = counts.get((exp, chash), (0, 0))
            last = last_run.get((exp, chash))
            rows.append({"study": exp, "config_hash": chash, "units": n_units, "records": n_rec,
                         "artifacts": 0, "artifact_bytes": 0, "last_run": last,
                         "stale": not self._config_is_current(exp, chash, cfg)})
        for exp, scope, version, n, size in self._conn.execute(
                "SELECT experiment, scope_hash, version, COUNT(*), SUM(bytes) FROM artifacts "
                "GROUP BY experiment, scope_hash, version"):
            cls = STUDIES.get(exp)
            match = [r for r in rows if r["study"] == exp and r["config_hash"] == scope]
            if match:
                match[0]["artifacts"] += n
                match[0]["artifact_bytes"] += int(size or 0)
            else:  # a stage scoped by `depends_on`: its own line
                rows.append({"study": exp, "config_hash": scope, "units": 0, "records": 0,
                             "artifacts": n, "artifact_bytes": int(size or 0), "last_run": None,
                             "stale": cls is None or cls.version != version})
        return pd.DataFrame(rows, columns=["study", "config_hash", "units", "records",
                                           "artifacts", "artifact_bytes", "last_run", "stale"])

    def prune(self) -> dict[str, int]:
        """Delete what stale study versions left (units, configs, artifacts and their files) and
        leftover temporary files of interrupted artifact writes. Returns the counts removed."""
        import shutil
        counts = {"configs": 0, "units": 0, "artifacts": 0, "bytes": 0, "temp_files": 0}
        stale = [(e, h) for e, h, c in self._conn.execute(
            "SELECT experiment, config_hash, config_json FROM configs").fetchall()
                 if not self._config_is_current(e, h, c)]
        with self._conn:
            for exp, chash in stale:
                counts["units"] += self._conn.execute(
                    "DELETE FROM units WHERE experiment=? AND config_hash=?", (exp, chash)).rowcount
                counts["configs"] += self._conn.execute(
                    "DELETE FROM configs WHERE experiment=? AND config_hash=?", (exp, chash)).rowcount
        for exp, scope, stage, key, version, rel, size in self._conn.execute(
                "SELECT experiment, scope_hash, stage, key, version, path, bytes FROM artifacts"
        ).fetchall():
            cls = STUDIES.get(exp)
            if cls is not None and cls.version == version and (exp, scope) not in stale:
                continue
            (self.artifact_root / rel).unlink(missing_ok=True)
            self._conn.execute("DELETE FROM artifacts WHERE experiment=? AND scope_hash=? AND "
                               "stage=? AND key=?", (exp, scope, stage, key))
            counts["artifacts"] += 1
            counts["bytes"] += int(size or 0)
        if self.artifact_root.exists():
            for tmp in self.artifact_root.rglob(".*.tmp"):  # interrupted atomic writes
                tmp.unlink(missing_ok=True)
                counts["temp_files"] += 1
            for folder in sorted(self.artifact_root.rglob("*"), reverse=True):
                if folder.is_dir() and not any(p.suffix in (".pt", ".parquet")
                                               for p in folder.rglob("*")):
                    shutil.rmtree(folder, ignore_errors=True)
        return counts


def _check_result(study: Study, unit: dict, row: Any) -> None:
    """A unit returns a dict (one row) or a non-empty list of dicts: say which unit did not."""
    rows = row if isinstance(row, list) else [row]
    if not rows or any(not isinstance(r, dict) for r in rows):
        raise StoreError(f"unit {unit_key(unit)} of '{study.name}' returned {type(row).__name__}"
                         f"; run_unit must return a dict (one row) or a non-empty list of dicts "
                         f"(long records).")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"row value of type {type(value).__name__} is not JSON-serialisable")
