r"""Experience replay with a reservoir buffer (Chaudhry et al., "On Tiny Episodic Memories in
Continual Learning", 2019): a memory strategy.

The buffer keeps ``memory`` examples, a uniform sample of every example seen so far (reservoir
sampling, Vitter's algorithm R: the n-th example replaces a random slot with probability
memory / n). Each batch of the current task is trained together with ``replay_batch`` examples
drawn from the buffer (each with its own task's output mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from theorylab.empirical.continual.strategies.base import (
    Strategy,
    masked_cross_entropy,
    register,
    task_masks,
)
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, torch_generator

__all__ = ["Reservoir", "Replay"]


class Reservoir:
    """A fixed-capacity uniform sample of a stream of (x, y, mask) examples (algorithm R)."""

    def __init__(self, capacity: int, rng: np.random.Generator):
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise ConfigError(f"'memory' (the buffer size) must be an int >= 0. Got {capacity!r}.")
        self.capacity, self.rng, self.seen = capacity, rng, 0
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.size = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
        """Offer the examples (rows of x, y; one mask row per example) in order."""
        if self.capacity == 0:
            self.seen += len(x)
            return
        if self.x is None:
            self.x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self.y = torch.empty(self.capacity, dtype=y.dtype)
            self.mask = torch.empty((self.capacity, mask.shape[1]), dtype=torch.bool)
        for i in range(len(x)):
            self.seen += 1
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            else:
                slot = int(self.rng.integers(self.seen))
                if slot >= self.capacity:
                    continue
            self.x[slot], self.y[slot], self.mask[slot] = x[i], y[i], mask[i]

    def add_task(self, task, seed: int) -> None:
        """Offer ``task``'s training examples in a seeded order: the stream the reservoir sees."""
        order = torch.randperm(len(task.x_train), generator=torch_generator(
            seed, "stream", task.index))
        self.add(task.x_train[order], task.y_train[order], task_masks(task, len(order)))

    def state(self) -> dict:
        """The buffer and the position of its random stream (numbers and tensors only)."""
        out = {"seen": self.seen, "size": self.size, "rng": self.rng.bit_generator.state}
        if self.x is not None:
            out.update(x=self.x.clone(), y=self.y.clone(), mask=self.mask.clone())
        return out

    def load_state(self, state: dict) -> None:
        self.seen, self.size = int(state["seen"]), int(state["size"])
        self.rng.bit_generator.state = state["rng"]
        if "x" in state:
            self.x, self.y, self.mask = (state[k].clone() for k in ("x", "y", "mask"))

    def sample(self, k: int, gen: torch.Generator):
        idx = torch.randint(self.size, (min(k, self.size),), generator=gen)
        return self.x[idx], self.y[idx], self.mask[idx]

    def nbytes(self) -> int:
        if self.x is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (self.x, self.y, self.mask))


@register
@dataclass
class Replay(Strategy):
    name = "replay"
    family = "memory"
    memory: int = 500
    replay_batch: int = 32
    _buffer: Reservoir | None = field(default=None, repr=False)
    _gen: torch.Generator | None = field(default=None, repr=False)

    def buffer(self, learner) -> Reservoir:
        if self._buffer is None:
            self._buffer = Reservoir(self.memory, rng_for(learner.seed, "reservoir"))
            self._gen = torch_generator(learner.seed, "replay")
        return self._buffer

    def before_task(self, learner, task):
        self.buffer(learner)

    def penalty(self, learner, model, x, y):
        buf = self.buffer(learner)
        if buf.size == 0:
            return None
        bx, by, bm = buf.sample(self.replay_batch, self._gen)
        return masked_cross_entropy(model(bx), by, bm)

    def after_task(self, learner, task):
        self.buffer(learner).add_task(task, learner.seed)

    def state(self) -> dict:
        return {"buffer": self._buffer.state(), "gen": self._gen.get_state()}

    def load_state(self, learner, state):
        self.buffer(learner).load_state(state["buffer"])
        self._gen.set_state(state["gen"])

    def state_bytes(self) -> int:
        return self._buffer.nbytes() if self._buffer is not None else 0
