"""A toy paper for CLI tests: one claim and one figure on :class:`~support.toy.ToyStudy`.

``register()`` adds them to the registries and returns a function that removes them again;
``python tests/support/toy_cli.py ARGS`` runs the CLI with them (for subprocess tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from support.toy import ToyStudy
from theorylab.claims import REGISTRY, Verdict, claim
from theorylab.constraints import Str
from theorylab.criteria import Equality
from theorylab.plotting import FIGURES, figure, savefig, style

PAPER = "TOY"
CLAIM_ID = "_toy.fig_input"
FIGURE = "_toy-means"


@dataclass(frozen=True)
class MarkedToyStudy(ToyStudy):
    """The toy study whose units first leave an empty file ``<marks>/<pid>`` (a test sees which
    workers are busy)."""

    name = "_toy_marked"
    marks: str = ""

    constraints: ClassVar = {**ToyStudy.constraints, "marks": Str()}

    def run_unit(self, unit, *args):
        if self.marks:
            Path(self.marks, str(os.getpid())).touch()
        return super().run_unit(unit, *args)


def figure_study(quick: bool) -> ToyStudy:
    """The figure's input: not the default nor the quick form of the toy study (ns differ)."""
    study = ToyStudy(ns=(10, 20))
    return study.quick().replace(ns=(10, 20)) if quick else study


def register():
    @claim(CLAIM_ID, paper=PAPER, kind="simulation", statement="toy means are finite")
    def _(ctx):
        t = ctx.run(figure_study(ctx.quick))
        return Verdict(measured=len(t),
                       criterion=Equality(len(figure_study(ctx.quick).units())))

    @figure(FIGURE, paper=PAPER)
    def _(ctx):
        import matplotlib.pyplot as plt
        t = ctx.load(figure_study(ctx.quick))
        with style():
            fig, ax = plt.subplots()
            ax.plot(t["n"], t["mean"], "o")
            return savefig(fig, ctx.figdir / FIGURE)

    def unregister():
        REGISTRY.pop(CLAIM_ID, None)
        FIGURES.pop(FIGURE, None)

    return unregister
