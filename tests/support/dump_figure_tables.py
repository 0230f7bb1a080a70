"""Rewrite the stand-in tables of tests/test_plotting.py from a results store.

``python tests/support/dump_figure_tables.py STORE tests/support/figure_tables`` builds every
registered figure from STORE (a study not yet complete there is read as far as it goes) and
writes the I-th table FIGURE loads, subsampled to 3 replicates/prompts/seeds, as FIGURE-I.csv.gz.
"""

import sys
import tempfile
from pathlib import Path

from theorylab.claims import Context
from theorylab.errors import StoreError
from theorylab.papers import load_all
from theorylab.plotting import FIGURES
from theorylab.store import Store


class _Recorder(Context):
    def __init__(self, store, figure: str, out: Path):
        super().__init__(store, sweeper=None, figdir=tempfile.mkdtemp())
        self.figure, self.out, self.calls = figure, out, 0

    def load(self, study):
        try:
            t = self.store.table(study, require_complete=True)
        except StoreError:
            t = self.store.table(study, require_complete=False)
        for col in ("rep", "prompt"):
            if col in t.columns and t[col].nunique() > 3:
                t = t[t[col] < 3]
        if {"seed", "method"} <= set(t.columns) and "record" not in t.columns:
            t = t[t.seed < 3]
        t = t.drop(columns=[c for c in ("unit_seconds",) if c in t.columns])
        t.to_csv(self.out / f"{self.figure}-{self.calls}.csv.gz", index=False, float_format="%.6g")
        self.calls += 1
        return t


def main(store_path: str, out: str) -> None:
    load_all()
    store, out_dir = Store(store_path), Path(out)
    for name in sorted(FIGURES):
        FIGURES[name].make(_Recorder(store, name, out_dir))


if __name__ == "__main__":
    main(*sys.argv[1:3])
