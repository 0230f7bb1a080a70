"""One module per paper, registering that paper's claims and figures.

The papers are listed explicitly in :data:`MODULES`; installed packages may add theirs through the
entry-point group ``theorylab.papers`` (each entry point's value a module path). The CLI and the
book call :func:`load_all`; :mod:`theorylab.claims` (the registry) knows no paper.

A paper module imports only light modules at import time (its heavy studies inside its checks and
figures) and maps the studies it uses to their modules in ``STUDIES`` (name → module path), so
that ``theorylab list`` and the CLI's errors stay fast; :func:`find_study` imports one on demand.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from theorylab.errors import ConfigError

__all__ = ["MODULES", "ENTRY_POINT_GROUP", "modules", "load_all", "study_names", "find_study",
           "load_studies"]

MODULES = ("theorylab.papers.moe", "theorylab.papers.beb", "theorylab.papers.exo",
           "theorylab.papers.esm", "theorylab.papers.cst", "theorylab.papers.ner",
           "theorylab.papers.cl", "theorylab.papers.power", "theorylab.papers.gnn",
           "theorylab.papers.nmt", "theorylab.papers.ad")
ENTRY_POINT_GROUP = "theorylab.papers"


def modules() -> tuple[str, ...]:
    """:data:`MODULES` followed by the modules of the ``theorylab.papers`` entry points."""
    extra = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return MODULES + tuple(dict.fromkeys(m for m in extra if m not in MODULES))


def load_all() -> dict:
    """Import every paper module (each registers its claims and figures); the claim registry."""
    from theorylab.claims import REGISTRY
    for name in modules():
        importlib.import_module(name)
    return REGISTRY


def _study_modules() -> dict[str, str]:
    return {s: mod for name in modules()
            for s, mod in getattr(importlib.import_module(name), "STUDIES", {}).items()}


def study_names() -> list[str]:
    """Names of the studies the papers use (their ``STUDIES``), without importing the studies."""
    return sorted(_study_modules())


def find_study(name: str) -> type:
    """The study class registered as ``name``, importing its module (from a paper's ``STUDIES``)
    only if it is not registered yet; an unknown name is a one-line ConfigError."""
    from theorylab.study import STUDIES
    if name not in STUDIES:
        module = _study_modules().get(name)
        if module is not None:
            importlib.import_module(module)
    if name not in STUDIES:
        known = sorted(set(STUDIES) | set(_study_modules()))
        raise ConfigError(f"unknown study '{name}'; known: {', '.join(known)}.")
    return STUDIES[name]


def load_studies() -> dict[str, type]:
    """Import every study the papers use (all of ``study.STUDIES``; heavy: torch, numba)."""
    from theorylab.study import STUDIES
    for module in dict.fromkeys(_study_modules().values()):
        importlib.import_module(module)
    return STUDIES
