"""Command line: ``theorylab list | verify | run | plot | store``. Thin: parse, call the library, print.

Errors that theorylab raises on purpose print as one line (``error: ...``) with exit status 2;
``verify`` exits 1 when a claim that must hold does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

from theorylab.errors import ConfigError, StoreError, TheorylabError
from theorylab.sweep import EXECUTORS

__all__ = ["main", "build_parser"]


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="the CI-sized form (fewer sizes/replicates)")
    p.add_argument("--store", type=Path, default=None,
                   help="SQLite results store (default $THEORYLAB_STORE or theorylab-results/results.sqlite)")
    p.add_argument("--executor", default="process", choices=EXECUTORS)
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="Dask scheduler address (or 'local'); implies --executor dask")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="theorylab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list claims, studies and figures")
    p.add_argument("prefixes", nargs="*", metavar="ID-PREFIX")

    p = sub.add_parser("verify", help="check claims by measurement and print a table")
    p.add_argument("prefixes", nargs="*", metavar="ID-PREFIX")
    p.add_argument("--json", type=Path, default=None, help="write one object per claim here")
    _add_run_options(p)

    p = sub.add_parser("run", help="run (or resume) one study into the store")
    p.add_argument("study")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a config field (VALUE parsed as JSON, else a string); "
                        "applied after --quick")
    p.add_argument("--device", default=None,
                   help="torch device of an empirical study (auto, cpu, cuda): --set device=...")
    p.add_argument("--data", type=Path, default=None,
                   help="the user's data file of a study that analyses one (e.g. cst-analysis): "
                        "--set data=...")
    p.add_argument("--outdir", type=Path, default=None,
                   help="report folder of a study that writes one (default: beside the store)")
    _add_run_options(p)

    p = sub.add_parser("plot", help="rebuild a figure from the store alone (no recomputation)")
    p.add_argument("name", help="figure name, or 'all'")
    p.add_argument("--quick", action="store_true", help="plot the quick form's results")
    p.add_argument("--store", type=Path, default=None)
    p.add_argument("--outdir", type=Path, default=Path("theorylab-results/figures"))

    p = sub.add_parser("store", help="what a results store holds (units, records, artifacts, "
                                     "bytes); 'prune' removes what stale study versions left")
    p.add_argument("action", nargs="?", default="list", choices=("list", "prune"))
    p.add_argument("--store", type=Path, default=None)
    return parser


def _check_output(path: Path, option: str, folder: bool) -> None:
    """Fail before any work if ``path`` cannot receive the output (a file, or a ``folder``)."""
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"'{option}' must be a folder, but '{path}' is a file.")
    if not folder and path.is_dir():
        raise ConfigError(f"'{option}' must be a file path, but '{path}' is a folder.")
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"'{option}' cannot be created: '{parent}' is a file. Got '{path}'.")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"'{option}' cannot be written: '{parent}' is read-only. Got '{path}'.")


def _context(args, figdir: Path | None = None, readonly: bool = False):
    from theorylab.claims import Context
    from theorylab.store import Store
    from theorylab.sweep import Sweeper
    store = Store(args.store, readonly=readonly)
    executor = "dask" if getattr(args, "dask", None) else getattr(args, "executor", "serial")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        raise ConfigError(f"'--workers' must be an int >= 1. Got {args.workers}.")
    sweeper = Sweeper(store, executor=executor, n_workers=getattr(args, "workers", None),
                      dask_address=getattr(args, "dask", None),
                      progress=not getattr(args, "no_progress", True))
    return Context(store, sweeper, quick=args.quick,
                   figdir=figdir or store.path.parent / "figures")


def _cmd_list(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from theorylab.claims import select
    from theorylab.papers import load_all, study_names
    from theorylab.plotting import FIGURES
    load_all()
    claims = select(args.prefixes)
    table = Table(_id_column(c.id for c in claims), "paper", "kind", "statement", title="claims")
    for c in claims:
        table.add_row(c.id, c.paper, c.kind, c.statement)
    console = Console()
    console.print(table)
    console.print("studies: " + ", ".join(study_names()))
    console.print("figures: " + ", ".join(sorted(FIGURES)))
    return 0


def _id_column(ids):
    """A table column that shows every claim id whole (never truncated, also at 80 columns)."""
    from rich.table import Column
    return Column("claim", no_wrap=True, min_width=max((len(i) for i in ids), default=5))


def _status_column():
    from rich.table import Column
    return Column("status", no_wrap=True, min_width=len("inconclusive"))


_STATUS = {"holds": "[green]holds[/]", "fails": "[red]FAILS[/]",
           "inconclusive": "[yellow]inconclusive[/]"}


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    if isinstance(x, (list, tuple)) and len(x) == 2:
        return f"[{_fmt(x[0])}, {_fmt(x[1])}]"
    return "" if x is None else str(x)


def _cmd_verify(args) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Column, Table

    from theorylab.claims import select, verify
    from theorylab.papers import load_all
    load_all()
    claims = select(args.prefixes)
    if args.json is not None:
        _check_output(args.json, "--json", folder=False)
    console = Console(stderr=False)
    ctx = _context(args)
    rows = []

    def show(res):
        j = res.to_json()
        rows.append(j)
        console.print(f"{_STATUS[j['status']]}  {j['id']}  measured={_fmt(j['measured'])} "
                      f"expected={_fmt(j['expected'])} ({j['seconds']:.1f}s)"
                      + (f"  error: {res.error}" if res.error else ""))

    try:
        results = verify(claims, ctx, on_result=show)
    finally:
        ctx.sweeper.close()
        ctx.store.close()
        if args.json is not None:  # whatever finished is written, even after Ctrl-C
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    wide = console.width >= 120  # narrower: the expected texts are in the lines above
    heads = ("expected", "measured", "CI", "s") if wide else ("measured", "CI", "s")
    table = Table(_id_column(j["id"] for j in rows), _status_column(),
                  *(Column(h, overflow="fold") for h in heads), box=None if not wide else box.HEAVY_HEAD,
                  title=f"theorylab verify{' --quick' if args.quick else ''}")
    for j in rows:
        cells = (_fmt(j["expected"]),) if wide else ()
        table.add_row(j["id"], _STATUS[j["status"]], *cells, _fmt(j["measured"]),
                      _fmt(j["ci"]), f"{j['seconds']:.1f}")
    console.print(table)
    failed = [r for r in results if r.claim.must_hold and not r.holds]
    report_only = [r for r in results if not r.claim.must_hold and not r.holds]
    note = (f" ({len(report_only)} report-only claim(s) do not hold: "
            f"{', '.join(r.claim.id for r in report_only)})" if report_only else "")
    console.print(f"{sum(r.holds for r in results)} of {len(results)} claims hold{note}; "
                  f"{sum(r.seconds for r in results):.1f} s")
    return 1 if failed else 0


def _parse_set(items: list[str]) -> dict:
    values = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"'--set' must be FIELD=VALUE. Got {item!r}.")
        key, raw = item.split("=", 1)
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return {k: _tuples(v) for k, v in values.items()}


def _tuples(value):
    """JSON lists → tuples, also nested ones, as frozen configs hold them."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _study(args):
    """The study ``run`` runs: the default config, its quick form if asked, then the --set fields."""
    from theorylab.papers import find_study
    study = find_study(args.study)()
    if args.quick:
        study = study.quick()
    overrides = _parse_set(args.set)
    if args.device is not None:
        overrides["device"] = args.device  # an unknown field for non-torch studies: one clear error
    if args.data is not None:
        overrides["data"] = str(args.data.resolve())  # likewise for studies without a data file
    return study.replace(**overrides) if overrides else study


def _cmd_run(args) -> int:
    from theorylab.study import config_hash
    study = _study(args)
    if args.outdir is not None:
        _check_output(args.outdir, "--outdir", folder=True)
    ctx = _context(args)
    try:
        table = ctx.run(study)
    finally:
        ctx.sweeper.close()
        ctx.store.close()
    print(f"{study.name} (config {config_hash(study)}): {len(table)} units in {ctx.store.path}")
    if hasattr(study, "report"):  # a study of the user's data writes a report (table + figure)
        outdir = args.outdir or ctx.store.path.parent / "reports" / f"{study.name}-{config_hash(study)}"
        for path in study.report(table, outdir):
            print(path)
    return 0


def _cmd_plot(args) -> int:
    from theorylab.papers import load_all
    from theorylab.plotting import FIGURES, select_figure
    load_all()  # the papers register their figures (light: studies are imported on use)
    figures = [select_figure(name) for name in (sorted(FIGURES) if args.name == "all"
                                                 else [args.name])]
    _check_output(args.outdir, "--outdir", folder=True)
    ctx = _context(args, figdir=args.outdir, readonly=True)  # plots only read the store
    for fig in figures:
        try:
            paths = fig.make(ctx)
        except StoreError as exc:
            raise StoreError(f"figure '{fig.name}' needs results the store lacks; "
                             f"{_verify_hint(fig.paper, args)}the first missing: {exc}") from None
        for path in paths:
            print(path)
    return 0


def _verify_hint(paper: str, args) -> str:
    """"`theorylab verify [--quick] PREFIX` computes all of them; " for the paper's claims."""
    import shlex

    from theorylab.claims import REGISTRY
    from theorylab.store import default_store_path
    prefixes = sorted({c.id.split(".")[0] for c in REGISTRY.values() if c.paper == paper})
    if not prefixes:
        return ""
    store = ("" if args.store is None or args.store == default_store_path()
             else f" --store {shlex.quote(str(args.store))}")
    return (f"`theorylab verify{' --quick' if args.quick else ''} {' '.join(prefixes)}{store}` "
            "computes all of them (and checks the paper's claims); ")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _cmd_store(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from theorylab.papers import load_studies
    from theorylab.store import Store
    load_studies()  # the studies' current versions decide what is stale
    console = Console(width=None if sys.stdout.isatty() else 130)  # never truncate into a pipe
    with Store(args.store, readonly=args.action == "list") as store:
        if args.action == "prune":
            counts = store.prune()
            console.print(f"pruned {store.path}: {counts['configs']} stale config(s), "
                          f"{counts['units']} unit(s), {counts['artifacts']} artifact(s) "
                          f"({_size(counts['bytes'])}), {counts['temp_files']} temporary file(s)",
                          soft_wrap=True)
            return 0
        s = store.summary()
        table = Table("study", "config", "units", "records", "artifacts", "bytes", "last run",
                      "stale", title=f"{store.path}")
        for r in s.itertuples():
            table.add_row(r.study, r.config_hash, str(r.units), str(r.records), str(r.artifacts),
                          _size(r.artifact_bytes), r.last_run or "", "stale" if r.stale else "")
        console.print(table)
        db = sum(p.stat().st_size for p in store.path.parent.glob(store.path.name + "*"))
        n_stale = int(s.stale.sum())
        console.print(f"{len(s)} config(s), {int(s.units.sum())} unit(s), "
                      f"{int(s.artifacts.sum())} artifact(s) ({_size(s.artifact_bytes.sum())}); "
                      f"database {_size(db)}"
                      + (f"; {n_stale} stale: `theorylab store prune` removes them"
                         if n_stale else ""), soft_wrap=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"list": _cmd_list, "verify": _cmd_verify, "run": _cmd_run, "plot": _cmd_plot,
               "store": _cmd_store}
    try:
        return handler[args.command](args)
    except TheorylabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:  # the store failed after it opened (disk full, damaged later)
        print(f"error: results store: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished units are in the store; rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
