"""Run a study's independent units: serially, on a local process pool, or on a Dask cluster.

Every finished unit is committed to the :class:`~theorylab.store.Store` as soon as it arrives, in
the parent process, so an interrupted sweep loses only the units still running. Units already in
the store are skipped (resume). The pool is created lazily and reused across studies.

Executors
---------
``"process"`` (default)
    ``concurrent.futures.ProcessPoolExecutor`` with the *spawn* start method (safe beside torch and
    numba threads), ``n_workers`` processes (default: all cores), one compute thread each. A
    worker exits when the parent dies, also by ``kill -9`` (no orphaned workers).
``"serial"``
    In the calling process (for debugging and tiny studies).
``"dask"``
    A ``distributed.Client`` connected to ``dask_address`` (``"local"`` starts a ``LocalCluster``);
    a scheduler that does not answer within ``dask_timeout`` seconds is a one-line error.

Progress bars are drawn on a terminal only (never ``\r`` frames into a pipe or a log file).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING

from theorylab.artifacts import UnitContext
from theorylab.errors import ConfigError
from theorylab.study import Study, unit_key

if TYPE_CHECKING:  # kept light: the CLI reads EXECUTORS before it knows what it will run
    import pandas as pd

    from theorylab.store import Store

__all__ = ["Sweeper", "run_unit_timed", "die_with_parent", "EXECUTORS"]

#: The executor names (the CLI's ``--executor`` choices).
EXECUTORS = ("process", "serial", "dask")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int, pdeathsig: bool) -> None:
    """Exit when the process ``parent_pid`` dies, even by SIGKILL (no orphaned pool workers).

    Linux: the kernel sends SIGKILL on the parent's death (``prctl(PR_SET_PDEATHSIG)``; immediate,
    even inside a long C call). The signal fires when the *thread* that started the worker ends,
    so it is used only for pools started from the main thread. Everywhere: a daemon thread polls
    ``getppid()`` each second (the fallback, and the race where the parent died before prctl).
    """
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="theorylab-parent-watch", daemon=True).start()


def _init_worker(parent_pid: int | None = None, pdeathsig: bool = False) -> None:
    # One compute thread per worker: the pool itself uses the cores. The environment variables
    # reach libraries imported from now on; torch may already be imported (spawn re-imports the
    # parent's main module before the initializer runs), so set its thread count directly.
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if parent_pid is not None:
        die_with_parent(parent_pid, pdeathsig)


def run_unit_timed(study: Study, unit: dict, ctx: UnitContext | None = None
                   ) -> tuple[dict, dict | list[dict], float]:
    """Run one unit and time it (top-level so that it pickles for pools and Dask)."""
    t0 = time.perf_counter()
    row = study.run_unit(unit, ctx)
    return unit, row, time.perf_counter() - t0


class Sweeper:
    """Runs studies' pending units and commits each result to ``store`` as it finishes."""

    def __init__(self, store: Store, executor: str = "process", n_workers: int | None = None,
                 dask_address: str | None = None, progress: bool = True,
                 dask_timeout: float = 5.0):
        if executor not in EXECUTORS:
            raise ConfigError(f"'executor' must be one of {', '.join(EXECUTORS)}. Got {executor!r}.")
        if executor == "dask" and not dask_address:
            raise ConfigError("'dask_address' is required with executor 'dask' "
                              "(a scheduler address such as tcp://host:8786, or 'local').")
        self.store = store
        self.executor = executor
        self.n_workers = n_workers or os.cpu_count() or 1
        self.dask_address = dask_address
        self.progress = progress
        self.dask_timeout = dask_timeout
        self._pool: ProcessPoolExecutor | None = None
        self._client = None
        self._cluster = None

    # -- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> Sweeper:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            main = threading.current_thread() is threading.main_thread()
            self._pool = ProcessPoolExecutor(self.n_workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(os.getpid(), main))
        return self._pool

    def _get_client(self):
        if self._client is None:
            from distributed import Client, LocalCluster
            if self.dask_address == "local":
                self._cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1,
                                             processes=True, dashboard_address=None)
                self._client = Client(self._cluster)
            else:
                try:
                    self._client = Client(self.dask_address, timeout=self.dask_timeout)
                except (OSError, TimeoutError) as exc:  # refused, unknown host, no answer
                    raise ConfigError(
                        f"no Dask scheduler answers at {self.dask_address!r} within "
                        f"{self.dask_timeout:g} s ({type(exc).__name__}); start one "
                        "(`dask scheduler`), or use --dask local or --executor process.") from None
        return self._client

    # -- running --------------------------------------------------------------------------------
    def run(self, study: Study) -> pd.DataFrame:
        """Compute the study's missing units; return the full table from the store."""
        units = study.units()
        done = self.store.done_keys(study)
        todo = [u for u in units if unit_key(u) not in done]
        if todo:
            if self.executor == "dask":
                self._get_client()  # an unreachable scheduler fails before the run is recorded
            from tqdm.auto import tqdm
            run_id = self.store.begin_run(study, len(units))
            t0 = time.perf_counter()
            n_computed = 0
            bar = tqdm(total=len(units), initial=len(units) - len(todo), desc=study.name,
                       unit="unit", disable=None if self.progress else True, leave=False)  # None: TTY only
            try:
                for unit, row, seconds in self._iter_results(study, todo):
                    self.store.put(study, unit, row, seconds)
                    n_computed += 1
                    bar.update(1)
            finally:
                bar.close()
                self.store.end_run(run_id, study, n_computed, time.perf_counter() - t0,
                                   self.executor)
        return self.store.table(study)

    def _iter_results(self, study: Study, todo: list[dict]):
        # every unit may use the study's artifacts, stored beside the results (with a remote Dask
        # cluster the store's folder must be on a file system the workers share)
        ctx = UnitContext(study, self.store.path)
        if self.executor == "serial" or (self.executor == "process" and len(todo) == 1):
            for unit in todo:
                yield run_unit_timed(study, unit, ctx)
        elif self.executor == "process":
            pool = self._get_pool()
            pending = {pool.submit(run_unit_timed, study, u, ctx) for u in todo}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        yield fut.result()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
        else:
            from distributed import as_completed
            client = self._get_client()
            futures = [client.submit(run_unit_timed, study, u, ctx, pure=False) for u in todo]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            except BaseException:
                client.cancel(futures)
                raise
