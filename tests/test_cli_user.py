"""The CLI as a new user meets it: option order, hints that name the command that helps, one-line
errors with nothing overwritten, no orphaned workers, no progress frames in pipes."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import theorylab
from support.toy import ToyStudy
from support.toy_paper import FIGURE, figure_study, register
from theorylab import cli
from theorylab.store import Store
from theorylab.study import STUDIES, config_hash, run_command
from theorylab.sweep import EXECUTORS

TOY_CLI = Path(__file__).parent / "support" / "toy_cli.py"
FAST = ["--executor", "serial", "--no-progress"]


@pytest.fixture
def toy_paper():
    unregister = register()
    yield
    unregister()


def _one_line_error(capsys, rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    for w in words:
        assert w in err, err
    return err


def _toy_cli(*args, timeout=60, **kw):
    env = {**os.environ, "PYTHONPATH": str(Path(theorylab.__file__).parents[1])}
    return subprocess.run([sys.executable, str(TOY_CLI), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------ run options
def test_run_applies_set_on_top_of_quick(tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    assert cli.main(["run", "_toy", "--quick", "--set", "n_reps=3", "--store", str(db), *FAST]) == 0
    assert "3 units" in capsys.readouterr().out  # quick: ns=(10,), then n_reps=3 from --set
    with Store(db) as s:
        assert len(s.table(ToyStudy().quick().replace(n_reps=3), require_complete=True)) == 3


def test_executor_choices_are_the_sweeps():
    action = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["run"]._actions
                  if a.dest == "executor")
    assert tuple(action.choices) == EXECUTORS


def _studies_to_name():
    from theorylab.papers import load_studies
    from theorylab.simulations.moe_rates import case_study, tail_study
    load_studies()
    out = [cls() for cls in STUDIES.values()] + [cls().quick() for cls in STUDIES.values()]
    out += [case_study(e, c, quick=q) for e in ("sigmoid", "linear") for c in ("exact", "over")
            for q in (False, True)] + [tail_study(quick=q) for q in (False, True)]
    out += [tail_study(True, "tanh"), case_study("sigmoid", "over", True, noise_sd=0.01)]
    return out + [figure_study(False), figure_study(True), ToyStudy(sleep=0.5, ns=(3,))]


def test_run_command_rebuilds_exactly_the_study():
    for study in _studies_to_name():
        command = run_command(study)
        argv = shlex.split(command)
        assert argv[:2] == ["theorylab", "run"], command
        args = cli.build_parser().parse_args(argv[1:])
        assert config_hash(cli._study(args)) == config_hash(study), command


@pytest.mark.parametrize("which", ["run", "verify"])
@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_plot_names_the_command_that_produces_its_input(which, quick, toy_paper, tmp_path, capsys):
    db, out = str(tmp_path / "store dir" / "s.sqlite"), tmp_path / "figs"
    plot = ["plot", FIGURE, "--store", db, "--outdir", str(out), *(["--quick"] if quick else [])]
    assert cli.main(["run", "_toy", "--store", db, *FAST]) == 0  # some other config exists
    err = _one_line_error(capsys, cli.main(plot), FIGURE)
    commands = dict((c.split()[1], c) for c in re.findall(r"`(theorylab [^`]+)`", err))
    assert set(commands) == {"run", "verify"}, err
    argv = shlex.split(commands[which])[1:]
    assert cli.main([*argv, *FAST]) == 0, commands[which]
    capsys.readouterr()
    assert cli.main(plot) == 0
    assert (out / f"{FIGURE}.png").is_file()


# ------------------------------------------------------------------------ one-line errors
def _toy_store(tmp_path) -> Path:
    db = tmp_path / "s.sqlite"
    with Store(db) as s:  # many units, so that the database spans many pages
        from theorylab.sweep import Sweeper
        Sweeper(s, executor="serial", progress=False).run(ToyStudy(ns=(10,) + tuple(range(11, 60)),
                                                                   n_reps=20))
    return db


def test_corrupt_store_is_one_line_and_untouched(toy_paper, tmp_path, capsys):
    db = _toy_store(tmp_path)
    size = db.stat().st_size
    page = 4096
    assert size >= 8 * page
    with db.open("r+b") as f:  # a few bytes of a page in the middle: a malformed b-tree page
        f.seek((size // page // 2) * page)
        f.write(b"\xff" * 64)
    before = _digest(db)
    for argv in (["run", "_toy", *FAST], ["plot", FIGURE, "--outdir", str(tmp_path / "f")],
                 ["verify", "_toy", *FAST]):
        _one_line_error(capsys, cli.main([*argv, "--store", str(db)]), "corrupt")
        assert _digest(db) == before
    assert not (tmp_path / "f").exists()


def test_json_to_a_folder_fails_before_the_run(toy_paper, tmp_path, capsys):
    db, folder = tmp_path / "s.sqlite", tmp_path / "out"
    folder.mkdir()
    rc = cli.main(["verify", "--quick", "_toy", "--json", str(folder), "--store", str(db), *FAST])
    _one_line_error(capsys, rc, "'--json'", "folder")
    with Store(db) as s:
        assert s.runs().empty  # nothing was run


def test_outdir_that_is_a_file(toy_paper, tmp_path, capsys):
    db, target = str(tmp_path / "s.sqlite"), tmp_path / "figs"
    target.write_text("mine\n")
    assert cli.main(["verify", "_toy.fig_input", "--store", db, *FAST]) == 0
    capsys.readouterr()
    _one_line_error(capsys, cli.main(["plot", FIGURE, "--store", db, "--outdir", str(target)]),
                    "'--outdir'", "is a file")
    _one_line_error(capsys, cli.main(["plot", FIGURE, "--store", db,
                                      "--outdir", str(target / "sub")]), "'--outdir'")
    assert target.read_text() == "mine\n"


def test_plot_from_a_missing_store_names_the_command_and_creates_nothing(toy_paper, tmp_path,
                                                                        capsys):
    db = tmp_path / "none" / "s.sqlite"
    err = _one_line_error(capsys, cli.main(["plot", FIGURE, "--store", str(db)]))
    assert f"`{run_command(figure_study(False))} --store {db}`" in err
    assert not db.parent.exists()


def test_unreachable_dask_scheduler_fails_fast(tmp_path, capfd):
    pytest.importorskip("distributed")
    db = tmp_path / "s.sqlite"
    t0 = time.perf_counter()
    rc = cli.main(["run", "_toy", "--dask", "tcp://127.0.0.1:9", "--store", str(db),
                   "--no-progress"])
    assert time.perf_counter() - t0 < 10
    _one_line_error(capfd, rc, "Dask scheduler", "tcp://127.0.0.1:9")
    with Store(db) as s:
        assert s.runs().empty


def _read_only(folder: Path, argv: list[str]) -> subprocess.CompletedProcess:
    """Run the toy CLI with ``folder`` read-only: by permissions, or for root (whom permissions
    do not stop) on a read-only bind mount in a private mount namespace."""
    if os.geteuid() != 0:
        for p in folder.iterdir():
            p.chmod(0o444)
        folder.chmod(0o555)
        try:
            return _toy_cli(*argv)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare: cannot make a read-only store")
    inner = (f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))} && exec "
             + shlex.join([sys.executable, str(TOY_CLI), *argv]))
    env = {**os.environ, "PYTHONPATH": str(Path(theorylab.__file__).parents[1])}
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("root without mount namespaces: cannot make a read-only store")
    return subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True,
                          timeout=120, env=env)


def test_read_only_store_refuses_writes_and_plots(toy_paper, tmp_path):
    folder = tmp_path / "ro"
    db, out = folder / "s.sqlite", tmp_path / "figs"
    assert cli.main(["verify", "_toy.fig_input", "--store", str(db), *FAST]) == 0
    before = _digest(db)
    res = _read_only(folder, ["run", "_toy", "--store", str(db), *FAST])
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "read-only" in res.stderr and "Traceback" not in res.stderr
    res = _read_only(folder, ["plot", FIGURE, "--store", str(db), "--outdir", str(out)])
    assert res.returncode == 0, res.stderr
    assert (out / f"{FIGURE}.png").is_file()
    assert _digest(db) == before


# ------------------------------------------------------------------------ processes and pipes
def test_progress_bars_write_no_frames_into_pipes(tmp_path):
    res = _toy_cli("run", "_toy", "--set", "sleep=0.02", "--set", "n_reps=20", "--executor",
                   "serial", "--store", str(tmp_path / "s.sqlite"))
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stdout + res.stderr
    assert "40 units" in res.stdout


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``, from /proc."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_run_leaves_no_pool_workers(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(theorylab.__file__).parents[1])}
    marks = tmp_path / "busy"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, str(TOY_CLI), "run", "_toy_marked", "--set",
                             f"marks={marks}", "--set", "sleep=60", "--workers", "2",
                             "--no-progress", "--store", str(tmp_path / "s.db")],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        busy = [int(p.name) for p in marks.iterdir()]
        assert len(busy) == 2, "the workers never started their units"
        assert set(busy) <= set(_group_members(proc.pid))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_members(proc.pid) == []
    finally:
        for pid in _group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_plot_of_one_paper_figure_finds_it_in_a_fresh_process(tmp_path):
    """`theorylab plot NAME` loads the papers itself: a registered figure is never 'unknown'."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "theorylab.cli", "plot", "moe-rates", "--store",
                          str(tmp_path / "none.sqlite"), "--outdir", str(tmp_path / "f")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown figure" not in out.stderr
    assert "needs results the store lacks" in out.stderr and "theorylab verify" in out.stderr
    assert out.stderr.count("\n") == 1 and not (tmp_path / "none.sqlite").exists()
