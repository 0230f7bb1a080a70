r"""PackNet (Mallya & Lazebnik, CVPR 2018): a parameter-isolation strategy.

Every weight of a linear layer is owned by at most one task. Task t trains only the free weights
(gradients of the weights owned by earlier tasks are zeroed, and those weights restored after
every step); then, per layer, the ``prune`` fraction of the free weights that the task moved,
those of smallest magnitude, is left free, the rest become task t's (every free weight not
kept is set to zero), and task t's weights are
re-trained for ``retrain_epochs`` with the pruned ones held at zero. Biases are trained on the
first task only. At test time task j uses the weights of tasks 0..j (later ones zeroed), so
task j's accuracy cannot change once it is learnt (BWT = 0 exactly). It needs the task's
identity at test time: task-incremental only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch

from theorylab.empirical.continual.strategies.base import (
    Batches,
    Strategy,
    as_is,
    masked_cross_entropy,
    register,
)
from theorylab.empirical.train import train
from theorylab.errors import ConfigError
from theorylab.seeding import torch_seed

__all__ = ["PackNet"]


def _weights(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(k, p) for k, p in model.named_parameters() if p.dim() > 1]


@register
@dataclass
class PackNet(Strategy):
    name = "packnet"
    family = "parameter isolation"
    prune: float = 0.5
    retrain_epochs: int = 1
    carried = ("_owner",)   # _frozen and _start are rebuilt by before_task
    _owner: dict = field(default_factory=dict, repr=False)    # weight name -> int tensor (-1 free)
    _frozen: dict = field(default_factory=dict, repr=False)   # name -> (mask, values) held fixed
    _start: dict = field(default_factory=dict, repr=False)    # weights at the task's start

    def before_task(self, learner, task):
        if task.setting != "task":
            raise ConfigError("PackNet needs the task's identity at test time: use the "
                              f"task-incremental setting, not {task.setting!r}.")
        if not self._owner:
            self._owner = {k: torch.full_like(p, -1, dtype=torch.long) for k, p in _weights(learner.model)}
        self._freeze(learner.model, lambda own: own >= 0, biases=task.index > 0)
        self._start = {k: p.detach().clone() for k, p in _weights(learner.model)}

    def _freeze(self, model, which, biases: bool) -> None:
        self._frozen = {}
        for k, p in model.named_parameters():
            if k in self._owner:
                mask = which(self._owner[k])
            elif biases:
                mask = torch.ones_like(p, dtype=torch.bool)
            else:
                continue
            self._frozen[k] = (mask, p.detach()[mask].clone())

    def after_backward(self, learner, model):
        for k, p in model.named_parameters():
            if k in self._frozen and p.grad is not None:
                p.grad[self._frozen[k][0]] = 0

    def after_step(self, learner, model):
        with torch.no_grad():
            for k, p in model.named_parameters():
                if k in self._frozen:
                    mask, values = self._frozen[k]
                    p[mask] = values

    def after_task(self, learner, task):
        model = learner.model
        with torch.no_grad():
            for k, p in _weights(model):
                own = self._owner[k]
                # a weight the task never moved (e.g. an output row of another task's class,
                # masked out) is not the task's: it stays free for later tasks
                free = (own < 0) & (p.detach() != self._start[k])
                n_keep = int(round((1 - self.prune) * int(free.sum())))
                mags = p.detach().abs().masked_fill(~free, -1).flatten()
                keep = torch.zeros_like(free).flatten()
                keep[torch.topk(mags, n_keep).indices] = True
                keep = keep.view_as(free) & free
                own[keep] = task.index
                p[(own < 0) & ~keep] = 0
        if self.retrain_epochs > 0:  # re-train task t's weights, the pruned ones held at zero
            self._freeze(model, lambda own: own != task.index, biases=task.index > 0)
            data = Batches(*self.train_data(learner, task))
            cfg = replace(learner.config, epochs=self.retrain_epochs,
                          seed=torch_seed(learner.seed, "packnet-retrain", task.index))
            train(model, lambda m, b: masked_cross_entropy(m(b[0]), b[1], b[2]), data, cfg, collate=as_is,
                  after_backward=lambda m: self.after_backward(learner, m),
                  after_step=lambda m: self.after_step(learner, m))

    def evaluation_model(self, learner, task):
        if not self._owner:
            return learner.model
        model = copy.deepcopy(learner.model)
        with torch.no_grad():
            for k, p in _weights(model):
                own = self._owner[k]
                p[(own > task.index) | (own < 0)] = 0
        return model

    def state_bytes(self) -> int:
        return sum(v.numel() for v in self._owner.values())  # one byte per weight suffices
