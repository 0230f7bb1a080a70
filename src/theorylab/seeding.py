"""Seeds derived from (base seed, keys): replicate r of a study draws from its own stream.

Same ``(base_seed, *keys)`` → same integer seed → bit-identical draws, whichever process runs
the unit, so results do not depend on the sweep's scheduling. Torch takes the same seeds:
:func:`torch_seed` (an int for ``torch.manual_seed`` / ``TrainConfig.seed``) and
:func:`torch_generator` (a seeded ``torch.Generator``); torch is imported only when one is built.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

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
    """A seed for ``torch.manual_seed`` / ``torch.Generator.manual_seed``: :func:`seed_for` itself.

    Torch accepts any int in [-2⁶³, 2⁶⁴); :func:`seed_for` lies in [0, 2⁶³), so no reduction is
    needed (a ``% 2**31`` would merge streams whose seeds agree in the low 31 bits).
    """
    return seed_for(base_seed, *keys)


def torch_generator(base_seed: int, *keys) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by :func:`torch_seed` (same keys → same draws)."""
    import torch
    return torch.Generator().manual_seed(torch_seed(base_seed, *keys))
