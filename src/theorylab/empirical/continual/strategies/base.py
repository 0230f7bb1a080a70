r"""The strategy interface: hooks around the shared training loop.

A run over a stream (:func:`theorylab.empirical.continual.learner.run_stream`) calls, for each
task t: ``before_task`` → ``train_data`` → :func:`theorylab.empirical.train.train` with the loss
``CE(masked logits) + penalty(model, batch)`` and the loop's ``after_backward`` / ``after_step``
hooks → ``after_task``. A strategy overrides only the hooks it needs; the base class is naive
fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from theorylab.empirical.continual.learner import Learner
    from theorylab.empirical.continual.streams import Task

__all__ = ["STRATEGIES", "Strategy", "register", "masked_cross_entropy", "task_masks", "cloned",
           "Batches", "as_is"]

STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available by its ``name`` to :func:`make_strategy`."""
    STRATEGIES[cls.name] = cls
    return cls


class Batches(torch.utils.data.TensorDataset):
    """A ``TensorDataset`` whose batches are gathered at once (``__getitems__``: one index per
    tensor instead of one per example, then a stack): the same batches, a third of the
    per-step time of the loop on small models."""

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(idx, dtype=torch.long)
        return tuple(t[index] for t in self.tensors)


def as_is(batch):
    """The collate function of :class:`Batches` (its batches come stacked)."""
    return batch


def cloned(obj):
    """A deep copy of nested dicts / lists / tuples of tensors (other leaves as they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: cloned(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cloned(v) for v in obj)
    return obj


def masked_cross_entropy(logits: torch.Tensor, y: torch.Tensor,
                         mask: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy over the logits allowed by ``mask`` (per class, or per example × class)."""
    if mask is not None:
        logits = logits.masked_fill(~mask.to(logits.device), float("-inf"))
    return torch.nn.functional.cross_entropy(logits, y)


def task_masks(task: Task, n: int) -> torch.Tensor:
    """One output-mask row per example of ``task`` (all True when the task has no mask)."""
    mask = task.output_mask()
    row = mask if mask is not None else torch.ones(task.n_classes, dtype=torch.bool)
    return row.expand(n, -1)


@dataclass
class Strategy:
    """Naive fine-tuning: train on each task in turn, nothing else (the lower bound)."""

    name: ClassVar[str] = "naive"
    family: ClassVar[str] = "baseline"
    #: attributes carried from one task to the next (tensors, or dicts / lists / tuples of them):
    #: what :meth:`state` saves by default
    carried: ClassVar[tuple[str, ...]] = ()

    def before_task(self, learner: Learner, task: Task) -> None:
        """Called before training on ``task``."""

    def train_data(self, learner: Learner, task: Task
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (x, y, mask) trained on for ``task``: the task's own data, one output-mask row
        per example (:func:`task_masks`)."""
        return task.x_train, task.y_train, task_masks(task, len(task.y_train))

    def penalty(self, learner: Learner, model: torch.nn.Module, x: torch.Tensor,
                y: torch.Tensor) -> torch.Tensor | None:
        """A term added to the batch's loss (regulariser, distillation, replayed examples)."""
        return None

    def after_backward(self, learner: Learner, model: torch.nn.Module) -> None:
        """Called with the batch's gradients in ``.grad``, before clipping and the step."""

    def after_step(self, learner: Learner, model: torch.nn.Module) -> None:
        """Called after each optimiser step."""

    def after_task(self, learner: Learner, task: Task) -> None:
        """Called after training on ``task``."""

    def evaluation_model(self, learner: Learner, task: Task) -> torch.nn.Module:
        """The network that answers for ``task`` at test time (parameter isolation masks it)."""
        return learner.model

    def state_bytes(self) -> int:
        """Bytes of memory the strategy keeps across tasks (buffers, anchors, importances)."""
        return 0

    def state(self) -> dict:
        """Everything the strategy carries into the next task, as tensors, numbers, strings and
        dicts / lists of them (saved with each task's model, so that a run resumes after any
        finished task). Default: a copy of the :attr:`carried` attributes."""
        return {k: cloned(getattr(self, k)) for k in self.carried}

    def load_state(self, learner: Learner, state: dict) -> None:
        """Restore :meth:`state` (``learner.model`` already holds the task's parameters)."""
        for k in self.carried:
            setattr(self, k, cloned(state[k]))


register(Strategy)
