"""One figure style, and a registry of figures that are rebuilt from the results store alone.

A figure function reads its tables with ``ctx.load(study)`` (which raises if the study has not
been run, and never recomputes) and writes PNG + SVG with :func:`savefig`. matplotlib is imported
on first use (Agg backend), so registering figures is cheap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from theorylab.errors import ConfigError

__all__ = ["Figure", "FIGURES", "figure", "savefig", "style", "select_figure", "legend_beside",
           "legend_below", "log_ticks", "layout_problems"]

# Sized for the book's ~700 px column: figures at most ~8 in wide (1200 px at 150 dpi, shown at
# ~0.6x), so 11 pt text is >= ~12 px on screen; constrained layout keeps outside legends in frame.
STYLE = {
    "figure.figsize": (6.4, 4.2), "figure.dpi": 110, "savefig.dpi": 150,
    "figure.constrained_layout.use": True,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "legend.fontsize": 9.5,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "lines.linewidth": 1.8, "lines.markersize": 5,
    "legend.frameon": False, "svg.hashsalt": "theorylab", "svg.fonttype": "none",
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


def legend_beside(ax, **kw):
    """The legend of ``ax`` to the right of its axes, top-aligned (outside the data)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kw)


def legend_below(fig, axes=None, ncol: int = 3, **kw):
    """One legend for ``fig`` below all its axes, from the unique labels of ``axes`` (default all)."""
    seen: dict[str, object] = {}
    for ax in fig.axes if axes is None else axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    return fig.legend(list(seen.values()), list(seen), loc="outside lower center", ncol=ncol, **kw)


_CODE_NAME = re.compile(r"\b[A-Za-z]{2,}_[A-Za-z]{2,}\b")  # dpo_rw, rl_exact; not π_sft


def _has_data(ax) -> bool:
    """``ax`` plots data (a colorbar's axes does not count: its label is the colorbar's)."""
    is_colorbar = getattr(ax, "_colorbar", None) is not None
    return not is_colorbar and bool(ax.lines or ax.collections or ax.patches or ax.images)


def _siblings(ax, axis: str) -> list:
    """``ax`` and the axes sharing its ``axis`` ('x' or 'y')."""
    return (ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()).get_siblings(ax)


def _labelled(ax, axis: str) -> bool:
    """``ax`` has an ``axis`` label, or an axes sharing that axis does (a shared grid)."""
    return any((a.get_xlabel() if axis == "x" else a.get_ylabel()).strip()
               for a in _siblings(ax, axis))


def _ticks_shown(ax, axis: str) -> int:
    """Number of labelled major ticks of ``ax``'s ``axis`` inside its view limits."""
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    ticks = (ax.xaxis if axis == "x" else ax.yaxis).get_majorticklabels()
    return sum(1 for t in ticks if t.get_text() and t.get_visible()
               and lo <= t.get_position()[axis == "y"] <= hi)


def log_ticks(ax, axis: str = "both") -> None:
    """Label 1, 2, 5 × 10^k on the log ``axis`` of ``ax`` ('x', 'y' or 'both') when it spans
    under ~2.5 decades (plain numbers: 0.2, 0.5, 1, 2), so a narrow log axis still shows >= 3 labelled ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    for a in ("x", "y") if axis == "both" else (axis,):
        lo, hi = sorted(ax.get_xlim() if a == "x" else ax.get_ylim())
        target = ax.xaxis if a == "x" else ax.yaxis
        if target.get_scale() == "log" and lo > 0 and hi / lo < 300:
            target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


COLUMN_PX = 700   # the book's column width; a figure is shown scaled to it
MIN_TEXT_PX = 10  # smallest readable text there


def _small_text(fig) -> list[str]:
    """Texts of ``fig`` under MIN_TEXT_PX when the figure is shown COLUMN_PX wide: a text of
    s pt in a figure w inches wide is s · COLUMN_PX / (72 w) px there."""
    from matplotlib.text import Text
    scale = COLUMN_PX / (72 * fig.get_figwidth())
    small = {t.get_text(): t.get_fontsize() * scale for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < MIN_TEXT_PX}
    return [f"text {text!r} is {px:.1f} px at {COLUMN_PX} px width" for text, px in small.items()]


def layout_problems(fig) -> list[str]:
    """What breaks the figure rules in ``fig`` (draws it): an axes with data lacking an x or y
    label, a legend overlapping an axes with data or showing a code name (``dpo_rw``), a log axis
    with < 3 labelled ticks in view, text unreadable at the book's column width."""
    fig.canvas.draw()
    data_axes = [ax for ax in fig.axes if _has_data(ax)]
    problems = []
    for i, ax in enumerate(data_axes):
        name = f"axes {i} ({ax.get_title() or 'untitled'})"
        problems += [f"{name}: no {a}-label" for a in "xy" if not _labelled(ax, a)]
        for a, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if axis.get_scale() in ("log", "symlog"):
                shown = max(_ticks_shown(s, a) for s in _siblings(ax, a))
                if shown < 3:
                    problems.append(f"{name}: {a} log axis with {shown} labelled ticks")
    problems += _small_text(fig)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + fig.legends
    for leg in legends:
        problems += [f"legend shows code name {t.get_text()!r}" for t in leg.get_texts()
                     if _CODE_NAME.search(t.get_text())]
        box = leg.get_window_extent()
        for i, ax in enumerate(data_axes):
            if box.overlaps(ax.get_window_extent()):
                problems.append(f"legend ({len(leg.get_texts())} entries) overlaps axes {i} "
                                f"({ax.get_title() or 'untitled'})")
    return problems


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
