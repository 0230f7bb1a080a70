r"""Task streams: Split (task- and class-incremental) and Permuted (domain-incremental).

A stream is a list of :class:`Task`. In **Split** streams the label set is partitioned into
groups of classes, task t holding the examples of group t; in the *task-incremental* setting the
learner knows t at test time and predicts among the task's classes only (a multi-head output,
realised as a mask on one shared head), in the *class-incremental* setting it predicts among all
classes seen. In **Permuted** streams every task holds all classes, with the pixels of every
image permuted by the task's fixed permutation π_t (π_0 the identity); the label space is shared
(*domain-incremental*).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from theorylab.errors import ConfigError, InputError
from theorylab.seeding import rng_for

__all__ = ["SETTINGS", "Task", "split_stream", "permuted_stream"]

SETTINGS = ("task", "class", "domain")


@dataclass(frozen=True)
class Task:
    """One task: train and test tensors, the task's classes, and the stream's setting.

    ``x_*`` are float32 (N, D) (images flattened), ``y_*`` int64 (N,) global labels.
    """

    index: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[int, ...]
    setting: str
    n_classes: int

    def output_mask(self) -> torch.Tensor | None:
        """Boolean mask of the logits the learner predicts among: the task's classes in the
        task-incremental setting (a multi-head output as a mask on one head); ``None`` (every
        class, one head) in the class- and domain-incremental settings."""
        if self.setting != "task":
            return None
        mask = torch.zeros(self.n_classes, dtype=torch.bool)
        mask[list(self.classes)] = True
        return mask


def _flat(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32))


def _check_xy(x: np.ndarray, y: np.ndarray, name: str) -> None:
    if len(x) != len(y):
        raise InputError(f"'{name}' has {len(x)} images but {len(y)} labels.")
    if not np.all(np.isfinite(x)):
        raise InputError(f"'{name}' images hold a non-finite value.")


def split_stream(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                 class_splits: Sequence[Sequence[int]], setting: str = "class") -> list[Task]:
    """Split stream: task t holds the classes ``class_splits[t]``, which must partition the
    labels present (every label in exactly one task)."""
    if setting not in ("task", "class"):
        raise ConfigError(f"'setting' of a split stream must be 'task' or 'class'. Got {setting!r}.")
    (xtr, ytr), (xte, yte) = train, test
    _check_xy(xtr, ytr, "train")
    _check_xy(xte, yte, "test")
    flat = [int(c) for s in class_splits for c in s]
    labels = sorted(set(np.unique(ytr).tolist()) | set(np.unique(yte).tolist()))
    if any(len(s) == 0 for s in class_splits):
        raise ConfigError("'class_splits' has an empty task.")
    dup = sorted({c for c in flat if flat.count(c) > 1})
    if dup:
        raise ConfigError(f"'class_splits' must partition the labels: class(es) {dup} are in "
                          "more than one task.")
    if sorted(flat) != labels:
        missing, extra = sorted(set(labels) - set(flat)), sorted(set(flat) - set(labels))
        raise ConfigError(f"'class_splits' must partition the labels {labels}: missing {missing}, "
                          f"not in the data {extra}.")
    n_classes = max(labels) + 1
    tasks = []
    for t, classes in enumerate(class_splits):
        cls = tuple(int(c) for c in classes)
        tr, te = np.isin(ytr, cls), np.isin(yte, cls)
        tasks.append(Task(t, _flat(xtr[tr]), torch.from_numpy(ytr[tr]), _flat(xte[te]),
                          torch.from_numpy(yte[te]), cls, setting, n_classes))
    return tasks


def permuted_stream(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                    n_tasks: int, seed: int = 0) -> list[Task]:
    """Permuted stream of ``n_tasks`` tasks: task t applies the pixel permutation π_t (seeded;
    π_0 = identity) to every image; all classes in every task."""
    if not isinstance(n_tasks, int) or n_tasks < 1:
        raise ConfigError(f"'n_tasks' must be an int >= 1. Got {n_tasks!r}.")
    (xtr, ytr), (xte, yte) = train, test
    _check_xy(xtr, ytr, "train")
    _check_xy(xte, yte, "test")
    ftr, fte = _flat(xtr), _flat(xte)
    D = ftr.shape[1]
    n_classes = int(max(ytr.max(), yte.max())) + 1
    classes = tuple(range(n_classes))
    tasks = []
    for t in range(n_tasks):
        perm = torch.arange(D) if t == 0 else torch.from_numpy(rng_for(seed, "perm", t).permutation(D))
        tasks.append(Task(t, ftr[:, perm], torch.from_numpy(ytr), fte[:, perm],
                          torch.from_numpy(yte), classes, "domain", n_classes))
    return tasks
