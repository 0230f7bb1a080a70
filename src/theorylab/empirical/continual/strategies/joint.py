"""Joint training (the upper bound): at task t, train on the union of tasks 0..t."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from theorylab.empirical.continual.strategies.base import Strategy, register, task_masks


@register
@dataclass
class Joint(Strategy):
    """Cumulative joint training: every task's data stays available (no memory constraint)."""

    name = "joint"
    family = "baseline"

    def train_data(self, learner, task):
        tasks = [*learner.done, task]
        return (torch.cat([t.x_train for t in tasks]), torch.cat([t.y_train for t in tasks]),
                torch.cat([task_masks(t, len(t.y_train)) for t in tasks]))

    def state_bytes(self) -> int:
        return 0  # not a memory budget: the bound assumes all data is kept
