"""Every registered figure, built from stand-in tables, follows the figure rules of
:func:`theorylab.plotting.layout_problems` (labelled axes, legends outside the data, human names,
log axes with enough ticks, text readable at the book's column width).

The stand-in tables (tests/support/figure_tables/FIGURE-I.csv.gz, the I-th table FIGURE loads)
are subsampled results; ``python tests/support/dump_figure_tables.py STORE tests/support/figure_tables``
rewrites them from a results store (after a study's row schema changes, or for a new figure).
"""

import importlib
from pathlib import Path

import pandas as pd
import pytest

from theorylab.papers import load_all
from theorylab.plotting import FIGURES, layout_problems

TABLES = Path(__file__).parent / "support" / "figure_tables"
load_all()


class _StandIn:
    """A check context whose ``load`` returns the figure's stand-in tables in call order."""

    quick = False

    def __init__(self, name: str, figdir: Path):
        self.name, self.figdir, self.calls = name, figdir, 0

    def sized(self, study):
        return study

    def load(self, study):
        path = TABLES / f"{self.name}-{self.calls}.csv.gz"
        self.calls += 1
        return pd.read_csv(path)


def test_every_registered_figure_has_stand_in_tables():
    assert sorted(FIGURES) == sorted({p.name.rsplit("-", 1)[0] for p in TABLES.glob("*.csv.gz")})


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_follows_the_rules(name, tmp_path, monkeypatch):
    fig_def = FIGURES[name]
    module = importlib.import_module(fig_def.make.__module__)
    seen = []
    real = module.savefig

    def check_then_save(fig, stem):
        seen.append(layout_problems(fig))
        return real(fig, stem)

    monkeypatch.setattr(module, "savefig", check_then_save)
    paths = fig_def.make(_StandIn(name, tmp_path))
    assert {p.suffix for p in paths} == {".png", ".svg"}
    assert seen == [[]]


def test_layout_problems_flags_an_inside_legend_and_missing_labels():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from theorylab.plotting import legend_beside, style
    with style():
        fig, ax = plt.subplots()
        ax.loglog([1, 1e3], [1, 1e-3], label="dpo_rw")
        ax.legend(loc="center")
        problems = layout_problems(fig)
        assert any("no x-label" in p for p in problems) and any("no y-label" in p for p in problems)
        assert any("overlaps axes 0" in p for p in problems)
        assert any("code name 'dpo_rw'" in p for p in problems)
        ax.set(xlabel="n", ylabel="error")
        ax.lines[0].set_label("DPO (reward)")
        legend_beside(ax)
        assert layout_problems(fig) == []
        fig.set_figwidth(12)  # shown 700 px wide: 9.5 pt legend text is 7.7 px
        assert any("'DPO (reward)' is 7.7 px" in p for p in layout_problems(fig))
        plt.close(fig)
