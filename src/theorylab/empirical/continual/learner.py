r"""Run a strategy over a stream and fill the accuracy matrix R.

R[i, j] is the test accuracy on task j after training on tasks 0..i; b[j] the accuracy on task j
at initialisation (for FWT). Accuracy is over the logits of :meth:`Task.output_mask`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from theorylab.empirical.continual.strategies.base import (
    Batches,
    Strategy,
    as_is,
    cloned,
    masked_cross_entropy,
)
from theorylab.empirical.continual.streams import Task
from theorylab.empirical.train import TrainConfig, train
from theorylab.seeding import torch_seed

__all__ = ["Checkpoint", "Learner", "StreamResult", "mlp", "accuracy", "run_stream"]


def mlp(in_dim: int, n_classes: int, hidden: int = 256, layers: int = 2) -> torch.nn.Module:
    """A ReLU MLP, the usual backbone of Split/Permuted MNIST-style benchmarks."""
    mods, d = [], in_dim
    for _ in range(layers):
        mods += [torch.nn.Linear(d, hidden), torch.nn.ReLU()]
        d = hidden
    mods.append(torch.nn.Linear(d, n_classes))
    return torch.nn.Sequential(*mods)


@torch.no_grad()
def accuracy(model: torch.nn.Module, task: Task, batch: int = 4096) -> float:
    """Test accuracy of ``model`` on ``task`` (predicting among the task's allowed logits)."""
    model.eval()
    mask = task.output_mask()
    correct = 0
    for i in range(0, len(task.y_test), batch):
        logits = model(task.x_test[i:i + batch])
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        correct += int((logits.argmax(1) == task.y_test[i:i + batch]).sum())
    return correct / max(len(task.y_test), 1)


@dataclass
class Learner:
    """What the strategies see: the model, the tasks trained so far, the training config."""

    model: torch.nn.Module
    config: TrainConfig
    seed: int = 0
    done: list[Task] = field(default_factory=list)
    current: Task | None = None


@dataclass
class StreamResult:
    R: np.ndarray            # accuracy matrix, T × T
    b: np.ndarray            # accuracy at initialisation, per task
    seconds: list[float]     # training time per task
    state_bytes: int         # the strategy's memory across tasks, at the end
    params: int              # model parameters


#: ``checkpoint(i, build)``: the state after task i, built by ``build()`` or loaded if stored
Checkpoint = Callable[[int, Callable[[], dict]], dict]


def run_stream(make_model: Callable[[], torch.nn.Module], stream: list[Task], strategy: Strategy,
               config: TrainConfig, seed: int = 0,
               checkpoint: Checkpoint | None = None) -> StreamResult:
    """Train ``strategy`` on ``stream`` task by task; evaluate every task after each.

    After task i the model's parameters, :meth:`Strategy.state`, the row R[i], the training
    seconds and the strategy's memory form one dict, passed through ``checkpoint(i, build)``
    (the study's ``ctx.artifact``): a stored one is loaded instead of trained. The run always
    continues from what ``checkpoint`` returns, so a resumed run computes what an uninterrupted
    one does.
    """
    torch.manual_seed(torch_seed(seed, "init"))
    model = make_model()
    T = len(stream)
    b = np.array([accuracy(model, t) for t in stream])
    R = np.zeros((T, T))
    learner = Learner(model, config, seed)
    seconds = []
    state_bytes = 0
    for i, task in enumerate(stream):
        def build(i=i, task=task) -> dict:
            learner.done, learner.current = list(stream[:i]), task
            t0 = time.perf_counter()
            strategy.before_task(learner, task)
            data = Batches(*strategy.train_data(learner, task))

            def loss_fn(m, batch):
                bx, by, bmask = batch
                loss = masked_cross_entropy(m(bx), by, bmask)
                extra = strategy.penalty(learner, m, bx, by)
                return loss if extra is None else loss + extra

            train(model, loss_fn, data, replace(config, seed=torch_seed(seed, "task", i)),
                  collate=as_is, after_backward=lambda m: strategy.after_backward(learner, m),
                  after_step=lambda m: strategy.after_step(learner, m))
            strategy.after_task(learner, task)
            learner.done = list(stream[:i + 1])
            sec = time.perf_counter() - t0
            row = [accuracy(strategy.evaluation_model(learner, t), t) for t in stream]
            return {"model": cloned(model.state_dict()), "strategy": strategy.state(),
                    "R": torch.tensor(row, dtype=torch.float64), "seconds": sec,
                    "state_bytes": int(strategy.state_bytes())}

        out = build() if checkpoint is None else checkpoint(i, build)
        model.load_state_dict(out["model"])
        learner.done, learner.current = list(stream[:i + 1]), task
        strategy.load_state(learner, out["strategy"])
        R[i] = out["R"].numpy()
        seconds.append(float(out["seconds"]))
        state_bytes = int(out["state_bytes"])
    return StreamResult(R, b, seconds, state_bytes, sum(p.numel() for p in model.parameters()))
