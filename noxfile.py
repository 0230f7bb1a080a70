"""nox sessions: lint and tests by default; bench, plots, book, gpu on request.

Sessions reuse the current interpreter's packages (``venv_backend="none"``) when
``THEORYLAB_NOX_REUSE=1``; otherwise each session builds a venv and installs the project with
the extras it needs and names torch==2.13.0, the CPU build, so that no CUDA build is pulled
(pyproject only asks for a range).
"""

from __future__ import annotations

import os

import nox

nox.needs_version = ">=2024.4"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

REUSE = os.environ.get("THEORYLAB_NOX_REUSE") == "1"
BACKEND = "none" if REUSE else "virtualenv"


def _install(session: nox.Session, extras: str) -> None:
    if not REUSE:
        session.install("torch==2.13.0", "-e", f".[{extras},empirical,cst,ner,power,gnn,nmt,ad]")
        session.install("--no-deps", "aaanalysis==1.1.0", "graspologic==3.4.4")


@nox.session(venv_backend=BACKEND)
def lint(session: nox.Session) -> None:
    """ruff on the package, tests, benchmarks and this file."""
    if not REUSE:
        session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session(venv_backend=BACKEND)
def tests(session: nox.Session) -> None:
    """The test suite (what CI runs); pass pytest arguments after `--`."""
    _install(session, "dev")
    args = session.posargs or ["-q", "-m", "not slow", "-n", "2", "--dist", "loadfile"]
    session.run("python", "-m", "pytest", *args)


@nox.session(venv_backend=BACKEND, default=False)
def bench(session: nox.Session) -> None:
    """Speed benchmarks, each side by side with its baseline; results in benchmarks/results/."""
    _install(session, "dev")
    quick = ["--quick"] if "--quick" in session.posargs else []
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *quick)


@nox.session(venv_backend=BACKEND, default=False)
def study(session: nox.Session) -> None:
    """The full default studies and their verdicts (long): results/verify_full[_PREFIX].json.

    ``nox -s study -- moe`` runs one paper's claims (results/verify_full_moe.json). Finished
    units are kept in the store (theorylab-results/results.sqlite), so an interrupted run resumes.
    """
    _install(session, "dev")
    prefixes = session.posargs or []
    out = "results/verify_full" + "".join(f"_{p}" for p in prefixes) + ".json"
    session.run("theorylab", "verify", "--json", out, *prefixes, success_codes=[0, 1])


@nox.session(venv_backend=BACKEND, default=False)
def plots(session: nox.Session) -> None:
    """Rebuild every figure from the store into book/figures (no recomputation)."""
    _install(session, "dev")
    session.run("theorylab", "plot", "all", "--outdir", "book/figures")


@nox.session(venv_backend=BACKEND, default=False)
def book(session: nox.Session) -> None:
    """Build the Jupyter Book offline (MathJax served from the book, not a CDN), then check 3
    pages in headless Chromium (< 2 MiB loaded, no console error, formulas rendered; see
    book/check_pages.py). `nox -s book -- --no-check` builds only (no Chromium needed)."""
    _install(session, "dev,book")
    session.run("python", "book/ship_mathjax.py")
    session.run("python", "book/render_tables.py")
    session.run("jupyter-book", "build", "book", "--warningiserror", "--keep-going")
    if "--no-check" not in session.posargs:
        session.run("python", "book/check_pages.py", "--pages", "intro", "moe", "papers")


@nox.session(venv_backend=BACKEND, default=False)
def gpu(session: nox.Session) -> None:
    """The device checks (ESM pipeline at the 8M shape on CUDA). Prepare here with
    `bash scripts/gpu_check.sh --prepare`; run there as `bash scripts/gpu_check.sh OUTDIR`."""
    session.run("bash", "scripts/gpu_check.sh", *session.posargs, external=True)
