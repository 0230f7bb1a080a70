"""Continual-learning strategies, one per family of the overview, as plugins.

Every module of this package is imported on first use, and each registers its strategy with
:func:`~theorylab.empirical.continual.strategies.base.register`: a new strategy is one new file.
"""

from __future__ import annotations

import importlib
import pkgutil

from theorylab.empirical.continual.strategies.base import STRATEGIES, Strategy, register

__all__ = ["STRATEGIES", "Strategy", "register", "make_strategy"]


def _load_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def make_strategy(name: str, **params) -> Strategy:
    """The strategy registered as ``name``, built with ``params`` (its dataclass fields)."""
    from theorylab.errors import ConfigError
    _load_all()
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}.")
    return STRATEGIES[name](**params)
