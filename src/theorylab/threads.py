"""Thread-count control for many tiny torch computations (a shared leaf; torch is imported
only when the context is entered)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["single_thread"]


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread (restored after): tiny units on a loaded 2-core machine ran ~25x
    slower with torch's default thread pool (measured 40 s vs 1.6 s)."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
