import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.toy import ToyStudy
from theorylab.errors import ConfigError, StoreError
from theorylab.store import Store
from theorylab.study import config_hash, from_dict
from theorylab.sweep import Sweeper

TESTS = Path(__file__).parent


def test_serial_run_fills_store_and_is_deterministic(store, tmp_path):
    study = ToyStudy()
    table = Sweeper(store, "serial", progress=False).run(study)
    assert len(table) == len(study.units()) == 6
    with Store(tmp_path / "other.sqlite") as other:
        again = Sweeper(other, "serial", progress=False).run(study)
    assert table.sort_values(["n", "rep"])["mean"].tolist() == \
        again.sort_values(["n", "rep"])["mean"].tolist()


def test_rerun_skips_finished_units(store):
    study = ToyStudy()
    sw = Sweeper(store, "serial", progress=False)
    sw.run(study)
    first = store.runs()
    sw.run(study)
    assert len(store.runs()) == len(first)  # nothing to do → no new run recorded


def test_config_change_is_a_new_key(store):
    a, b = ToyStudy(), ToyStudy(seed=1)
    assert config_hash(a) != config_hash(b)
    Sweeper(store, "serial", progress=False).run(a)
    assert store.table(b).empty


def test_process_pool_matches_serial(store, tmp_path):
    study = ToyStudy(ns=(5, 50), n_reps=2)
    with Sweeper(store, "process", n_workers=2, progress=False) as sw:
        par = sw.run(study)
    with Store(tmp_path / "s.sqlite") as s2:
        ser = Sweeper(s2, "serial", progress=False).run(study)
    key = ["n", "rep"]
    assert par.sort_values(key)["mean"].tolist() == ser.sort_values(key)["mean"].tolist()
    assert par["pid"].nunique() >= 1 and os.getpid() not in set(par["pid"])


def test_dask_local_cluster_matches_serial(store, tmp_path):
    pytest.importorskip("distributed")
    study = ToyStudy(ns=(5,), n_reps=3)
    with Sweeper(store, "dask", n_workers=2, dask_address="local", progress=False) as sw:
        dk = sw.run(study)
    with Store(tmp_path / "s.sqlite") as s2:
        ser = Sweeper(s2, "serial", progress=False).run(study)
    assert dk.sort_values("rep")["mean"].tolist() == ser.sort_values("rep")["mean"].tolist()


def test_manifest_written(store):
    Sweeper(store, "serial", progress=False).run(ToyStudy())
    manifests = list(store.manifest_dir.glob("_toy-*.json"))
    assert len(manifests) == 1
    m = json.loads(manifests[0].read_text())
    assert m["config"]["n_reps"] == 3 and m["n_computed"] == 6
    assert {"numpy", "torch"} <= set(m["versions"]) and m["wall_seconds"] >= 0


def test_require_complete_raises(store):
    with pytest.raises(StoreError, match="0 of 6 units"):
        store.table(ToyStudy(), require_complete=True)


def test_unknown_field_and_bad_value():
    with pytest.raises(ConfigError, match="unknown config field 'nreps'"):
        from_dict(ToyStudy, {"nreps": 3})
    with pytest.raises(ConfigError, match="'n_reps' of ToyStudy must be an int >= 1. Got 0."):
        ToyStudy(n_reps=0)
    with pytest.raises(ConfigError, match="executor"):
        Sweeper(None, "threads")


KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from support.toy import ToyStudy
from theorylab.store import Store
from theorylab.sweep import Sweeper
with Store({db!r}) as store, Sweeper(store, "process", n_workers=2, progress=False) as sw:
    sw.run(ToyStudy(ns=(3, 4, 5, 6), n_reps=4, sleep=0.25))
"""


def test_sigkill_then_resume_loses_no_finished_unit(tmp_path):
    db = tmp_path / "results.sqlite"
    study = ToyStudy(ns=(3, 4, 5, 6), n_reps=4, sleep=0.25)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(tests=str(TESTS), db=str(db))],
                            start_new_session=True)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and done < 4:
        time.sleep(0.1)
        if db.exists():
            with Store(db) as s:
                done = len(s.done_keys(study))
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its pool workers, mid-sweep
    proc.wait()
    with Store(db) as s:
        before = s.table(study)
    assert 4 <= len(before) < len(study.units()), "kill should land mid-sweep"
    with Store(db) as s:
        after = Sweeper(s, "serial", progress=False).run(study)
        runs = s.runs()
    assert len(after) == len(study.units())
    merged = before.merge(after, on=["n", "rep"], suffixes=("_before", "_after"))
    assert (merged["pid_before"] == merged["pid_after"]).all()  # not recomputed
    assert (merged["mean_before"] == merged["mean_after"]).all()
    assert runs["n_computed"].iloc[-1] == len(study.units()) - len(before)


def test_table_order_follows_units_not_completion(store):
    study = ToyStudy()
    for unit in reversed(study.units()):  # finish in the opposite order
        store.put(study, unit, study.run_unit(unit), 0.0)
    table = store.table(study)
    assert list(zip(table["n"], table["rep"], strict=True)) == \
        [(u["n"], u["rep"]) for u in study.units()]


@pytest.mark.parametrize("kind", ["parent_is_a_file", "not_a_database"])
def test_unusable_store_path_is_one_line_error(tmp_path, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("not sqlite " * 100)
    path = blocker / "results.sqlite" if kind == "parent_is_a_file" else blocker
    with pytest.raises(StoreError, match="cannot be opened|is corrupt or not a SQLite database") as info:
        Store(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert blocker.read_text() == "not sqlite " * 100  # nothing overwritten


def test_manifest_records_the_cpu(store):
    """The manifest names the CPU and the JIT target whose vector width fastmath kernels use."""
    import re
    Sweeper(store, "serial", progress=False).run(ToyStudy())
    m = json.loads(next(store.manifest_dir.glob("_toy-*.json")).read_text())
    cpuinfo = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M) \
        if cpuinfo.exists() else []
    assert m["cpu_model"] == (names[0].strip() if names else m["cpu_model"]) and m["cpu_model"]
    assert m["jit_cpu"] and isinstance(m["simd"], list)
    widths = {"avx512f": 512, "avx2": 256, "avx": 256, "sse2": 128, "neon": 128}
    assert m["simd_max_bits"] == max((widths[f] for f in m["simd"] if f in widths), default=None)


def test_cpu_model_reads_cpuinfo_else_platform(tmp_path, monkeypatch):
    from theorylab.store import _cpu_model
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Test CPU @ 1.0GHz\n"
                 "model name\t: second\n")
    assert _cpu_model(f) == "Test CPU @ 1.0GHz"
    f.write_text("processor\t: 0\nHardware\t: some arm board\n")
    monkeypatch.setattr("platform.processor", lambda: "fallback-proc")
    assert _cpu_model(f) == "fallback-proc"
    assert _cpu_model(tmp_path / "missing") == "fallback-proc"


def test_jit_target_follows_numba_overrides(monkeypatch):
    from theorylab.store import _jit_target
    monkeypatch.setenv("NUMBA_CPU_NAME", "generic")
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+sse2,+sse4.2,-avx,-avx2,-avx512f")
    assert _jit_target() == {"jit_cpu": "generic", "simd": ["sse2", "sse4.2"],
                             "simd_max_bits": 128}
