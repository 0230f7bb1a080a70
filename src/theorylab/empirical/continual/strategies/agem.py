r"""Averaged gradient episodic memory, A-GEM (Chaudhry et al., ICLR 2019): a memory strategy.

With g the current batch's gradient and g_ref the gradient of the loss on a batch drawn from the
episodic memory (a reservoir buffer, as in :mod:`.replay`), the step uses

.. math:: \tilde g = g - \frac{g^\top g_{ref}}{g_{ref}^\top g_{ref}}\, g_{ref}
          \quad \text{if } g^\top g_{ref} < 0, \qquad \tilde g = g \text{ otherwise},

so that :math:`\tilde g^\top g_{ref} \ge 0`: to first order the step does not increase the
memory's loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from theorylab.empirical.continual.strategies.base import (
    Strategy,
    masked_cross_entropy,
    register,
)
from theorylab.empirical.continual.strategies.replay import Reservoir
from theorylab.seeding import rng_for, torch_generator

__all__ = ["AGEM", "agem_project"]


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's projection of the flat gradient ``g`` given the memory gradient ``g_ref``."""
    dot = torch.dot(g, g_ref)
    ref2 = torch.dot(g_ref, g_ref)
    if dot >= 0 or ref2 == 0:
        return g
    return g - (dot / ref2) * g_ref


@register
@dataclass
class AGEM(Strategy):
    name = "agem"
    family = "memory"
    memory: int = 500
    memory_batch: int = 256
    _buffer: Reservoir | None = field(default=None, repr=False)
    _gen: torch.Generator | None = field(default=None, repr=False)
    projections: int = field(default=0, repr=False)

    def before_task(self, learner, task):
        self._setup(learner)

    def _setup(self, learner) -> None:
        if self._buffer is None:
            self._buffer = Reservoir(self.memory, rng_for(learner.seed, "reservoir"))
            self._gen = torch_generator(learner.seed, "agem")

    def after_backward(self, learner, model):
        if self._buffer is None or self._buffer.size == 0:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        bx, by, bm = self._buffer.sample(self.memory_batch, self._gen)
        ref = torch.autograd.grad(masked_cross_entropy(model(bx), by, bm), params,
                                  allow_unused=True)
        g = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                       for p in params])
        g_ref = torch.cat([(r if r is not None else torch.zeros_like(p)).reshape(-1)
                           for r, p in zip(ref, params, strict=True)])
        new = agem_project(g, g_ref)
        if new is not g:
            self.projections += 1
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = new[offset:offset + n].view_as(p).clone()
                offset += n

    def after_task(self, learner, task):
        self._buffer.add_task(task, learner.seed)

    def state(self) -> dict:
        return {"buffer": self._buffer.state(), "gen": self._gen.get_state(),
                "projections": self.projections}

    def load_state(self, learner, state):
        self._setup(learner)
        self._buffer.load_state(state["buffer"])
        self._gen.set_state(state["gen"])
        self.projections = int(state["projections"])

    def state_bytes(self) -> int:
        return self._buffer.nbytes() if self._buffer is not None else 0
