"""Seeds derived from (base seed, keys): replicate r of a study draws from its own stream.

Same ``(base_seed, *keys)`` → same integer seed → bit-identical draws, whichever process runs
the unit, so results do not depend on the sweep's scheduling.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["seed_for", "rng_for", "torch_seed", "torch_generator"]


def _key_int(key) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
        return int(key)
    digest = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seed_for(base_seed: int, *keys) -> int:
    """A 63-bit seed derived from ``base_seed`` and any hashable keys (ints, strings, floats)."""
    ss = np.random.SeedSequence([_key_int(base_seed), *(_key_int(k) for k in keys)])
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array(
        [1, 2**32], dtype=np.uint64) & np.uint64(2**63 - 1))


def rng_for(base_seed: int, *keys) -> np.random.Generator:
    """``numpy.random.Generator`` seeded by :func:`seed_for`."""
    return np.random.default_rng(seed_for(base_seed, *keys))


def torch_seed(base_seed: int, *keys) -> int:
    """A seed for ``torch.manual_seed`` / ``torch.Generator``: :func:`seed_for` (63 bits)."""
    return seed_for(base_seed, *keys)


def torch_generator(base_seed: int, *keys):
    """A CPU ``torch.Generator`` seeded by :func:`torch_seed` (torch imported lazily)."""
    import torch
    return torch.Generator().manual_seed(torch_seed(base_seed, *keys))
