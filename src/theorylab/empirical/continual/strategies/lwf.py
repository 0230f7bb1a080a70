r"""Learning without forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2018): a distillation strategy.

Before task t the model is copied (the teacher, frozen). On task t's batches the loss adds
:math:`\lambda\, T^2\, \mathrm{KL}\big(\mathrm{softmax}(z^{old}_{S}/T) \,\|\, \mathrm{softmax}(z_{S}/T)\big)`
over the logits S of the classes seen before task t (all classes in the domain-incremental
setting), z^old the teacher's logits on the same inputs. No old data is stored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from theorylab.empirical.continual.strategies.base import Strategy, register

__all__ = ["LwF"]


@register
@dataclass
class LwF(Strategy):
    name = "lwf"
    family = "distillation"
    lam: float = 1.0
    temperature: float = 2.0
    _teacher: torch.nn.Module | None = field(default=None, repr=False)
    _old: list = field(default_factory=list, repr=False)

    def before_task(self, learner, task):
        if learner.done:
            self._teacher = copy.deepcopy(learner.model).eval()
            for p in self._teacher.parameters():
                p.requires_grad_(False)
            self._old = sorted({c for t in learner.done for c in t.classes})

    def penalty(self, learner, model, x, y):
        if self._teacher is None:
            return None
        T = self.temperature
        with torch.no_grad():
            old = self._teacher(x)[:, self._old] / T
        new = model(x)[:, self._old] / T
        kl = F.kl_div(F.log_softmax(new, -1), F.log_softmax(old, -1), log_target=True,
                      reduction="batchmean")
        return self.lam * T * T * kl

    def state_bytes(self) -> int:
        if self._teacher is None:
            return 0
        return sum(p.numel() * p.element_size() for p in self._teacher.parameters())
