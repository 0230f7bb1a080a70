"""One figure style, and a registry of figures that are rebuilt from the results store alone.

A figure function reads its tables with ``ctx.load(study)`` (which raises if the study has not
been run, and never recomputes) and writes PNG + SVG with :func:`savefig`. matplotlib is imported
on first use (Agg backend), so registering figures is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from theorylab.errors import ConfigError

__all__ = ["Figure", "FIGURES", "figure", "savefig", "style", "select_figure"]

STYLE = {
    "figure.figsize": (6.4, 4.2), "figure.dpi": 110, "savefig.dpi": 150,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "font.size": 10, "legend.frameon": False, "svg.hashsalt": "theorylab",
    "svg.fonttype": "none",
}


@dataclass(frozen=True)
class Figure:
    name: str
    paper: str
    make: Callable[..., list[Path]]


FIGURES: dict[str, Figure] = {}


def figure(name: str, *, paper: str) -> Callable[[Callable[..., list[Path]]], Figure]:
    """Register ``make(ctx) -> list[Path]`` as figure ``name``."""
    def wrap(make: Callable[..., list[Path]]) -> Figure:
        FIGURES[name] = Figure(name, paper, make)
        return FIGURES[name]
    return wrap


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def style():
    """Context manager applying the project's figure style."""
    return _plt().rc_context(STYLE)


def savefig(fig, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` (metadata-free, so reruns are byte-stable); close fig."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    _plt().close(fig)
    return paths


def select_figure(name: str) -> Figure:
    """The registered figure ``name`` (load the papers first: :func:`theorylab.papers.load_all`)."""
    if name not in FIGURES:
        raise ConfigError(f"unknown figure '{name}'; known: {', '.join(sorted(FIGURES)) or 'none'}.")
    return FIGURES[name]
