"""One module per paper, registering that paper's claims and figures.

The papers are listed explicitly in :data:`MODULES`; installed packages may add theirs through the
entry-point group ``theorylab.papers`` (each entry point's value a module path). The CLI and the
book call :func:`load_all`; :mod:`theorylab.claims` (the registry) knows no paper.

A paper module imports only light modules at import time (its heavy studies inside its checks and
figures) and names the studies it uses in ``STUDIES``, so that ``theorylab list`` stays fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

__all__ = ["MODULES", "ENTRY_POINT_GROUP", "modules", "load_all", "study_names"]

MODULES = ("theorylab.papers.moe", "theorylab.papers.beb", "theorylab.papers.exo",
           "theorylab.papers.esm")
ENTRY_POINT_GROUP = "theorylab.papers"


def modules() -> tuple[str, ...]:
    """:data:`MODULES` followed by the modules of the ``theorylab.papers`` entry points."""
    extra = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return MODULES + tuple(m for m in extra if m not in MODULES)


def load_all() -> dict:
    """Import every paper module (each registers its claims and figures); the claim registry."""
    from theorylab.claims import REGISTRY
    for name in modules():
        importlib.import_module(name)
    return REGISTRY


def study_names() -> list[str]:
    """Names of the studies the papers use (their ``STUDIES``), without importing the studies."""
    return sorted({s for name in modules()
                   for s in getattr(importlib.import_module(name), "STUDIES", ())})
