r"""The continual-learning study: every strategy × setting × seed on one image stream.

Streams (:mod:`.streams`): Split Fashion-MNIST, five tasks of two classes — (0,1), (2,3), (4,5),
(6,7), (8,9) — in the task- and class-incremental settings, and Permuted Fashion-MNIST
(domain-incremental). Each seed draws its own class-balanced subset of the training and test
images (an artifact shared by every strategy of that seed, so strategies are compared on the same
data: a paired design), its own initialisation and its own batch order. The backbone is a
two-hidden-layer ReLU MLP; every strategy trains with the same :class:`TrainConfig` (AdamW,
``epochs`` per task). ``dataset="digits"`` runs the same study on scikit-learn's 8×8 digits, and
``dataset=<folder>`` on a user's images (:func:`source_images`; labels 0..9, split as above).

Records per unit (setting, method, seed): ``R`` (one row per (i, j) of the accuracy matrix, and
the accuracy ``b`` at initialisation as i = -1) and ``summary`` (ACC, BWT, FWT, forgetting, seconds
of training per task, the strategy's memory in bytes, the model's parameters).

Stages (``ctx.artifact``): ``subset`` per seed (indices of its images), and ``task`` per (setting, method, seed, task i):
the model's parameters after task i, the strategy's state (:meth:`Strategy.state`: Fisher and
anchors, buffers, generator...), the row R[i], the seconds and memory. A rerun, or a run with more
seeds, methods or settings, loads them; a run stopped mid-stream resumes after its last finished
task; a change of any field in :meth:`ContinualStudy.task_fields` builds new ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from theorylab.constraints import POSITIVE, SEED, Choice, Int, Str, Tuple
from theorylab.empirical.continual import metrics
from theorylab.empirical.continual.learner import mlp, run_stream
from theorylab.empirical.continual.strategies import make_strategy
from theorylab.empirical.continual.streams import SETTINGS, permuted_stream, split_stream
from theorylab.empirical.train import TrainConfig
from theorylab.errors import ConfigError, DataFormatError
from theorylab.seeding import rng_for
from theorylab.study import Study, memory_context
from theorylab.threads import single_thread

__all__ = ["ContinualStudy", "SPLITS", "METHODS", "TASK_ID_ONLY", "TASK_FIELDS", "METHOD_FIELDS",
           "source_images"]

SPLITS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
DATASETS = ("fashion-mnist", "digits")
METHODS = ("naive", "joint", "ewc", "si", "lwf", "replay", "agem", "generative", "packnet")
TASK_ID_ONLY = ("packnet",)   # need the task's identity at test time: task-incremental only
#: the fields every task's model (artifact stage ``task``) depends on; the method's own
#: hyper-parameter is added per method (:data:`METHOD_FIELDS`), and ``permuted_tasks`` in the
#: domain-incremental setting. ``settings``, ``methods`` and ``n_seeds`` only add units.
TASK_FIELDS = ("dataset", "train_per_class", "test_per_class", "hidden", "epochs", "batch_size",
               "lr", "seed")
METHOD_FIELDS = {"ewc": ("ewc_lambda",), "si": ("si_c",), "lwf": ("lwf_lambda",),
                 "replay": ("memory",), "agem": ("memory",)}


@functools.lru_cache(maxsize=1)
def source_images(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)) of the whole data set ``name``, read-only: one of
    :data:`DATASETS`, or a user's folder holding the four IDX files of Fashion-MNIST's format
    (``train-images-idx3-ubyte.gz`` ...) or ``train/`` and ``test/`` folders of class folders of
    images (:func:`~theorylab.empirical.data.images.read_image_folder`).

    A per-process cache of one data set, on purpose: every seed's ``data`` artifact draws its
    subset from the same files (read-only system data, 0.75 CPU-s per read of Fashion-MNIST),
    and a worker builds several. The arrays are marked read-only, so no caller can change what
    another one sees; ``source_images.cache_clear()`` frees them.
    """
    from theorylab.empirical.data import images
    if name not in DATASETS:     # a user's folder: IDX files, or train/ and test/ image folders
        root = Path(name)
        if (root / "train").is_dir() and (root / "test").is_dir():
            (xtr, ytr, ctr), (xte, yte, cte) = (images.read_image_folder(root / s)
                                                for s in ("train", "test"))
            if ctr != cte:
                raise DataFormatError(f"train/ has classes {list(ctr)}, test/ has {list(cte)}",
                                      root)
            out = (xtr, ytr), (xte, yte)
        else:
            out = images.load_fashion_mnist("train", root), images.load_fashion_mnist("test", root)
    elif name == "digits":
        X, y = images.load_digits()
        rng = np.random.default_rng(0)          # a fixed train/test split of the 1,797 images
        idx = rng.permutation(len(y))
        cut = int(0.7 * len(y))
        out = (X[idx[:cut]], y[idx[:cut]]), (X[idx[cut:]], y[idx[cut:]])
    elif name == "fashion-mnist":
        out = images.load_fashion_mnist("train"), images.load_fashion_mnist("test")
    for part in out:
        for a in part:
            a.setflags(write=False)
    return out


def _balanced(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(idx))


@dataclass(frozen=True)
class ContinualStudy(Study):
    name: ClassVar[str] = "cl-vision"
    version: ClassVar[int] = 1
    dataset: str = "fashion-mnist"
    settings: tuple[str, ...] = SETTINGS
    methods: tuple[str, ...] = METHODS
    train_per_class: int = 500        # of 6,000 per class in Fashion-MNIST
    test_per_class: int = 500         # of 1,000
    permuted_tasks: int = 10
    hidden: int = 256
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    ewc_lambda: float = 100.0
    si_c: float = 1.0
    lwf_lambda: float = 1.0
    memory: int = 500                 # replay / A-GEM buffer (examples)
    n_seeds: int = 5
    seed: int = 0

    constraints: ClassVar = {
        "dataset": Str(),
        "settings": Tuple(Choice(SETTINGS), min_len=1, max_len=len(SETTINGS)),
        "methods": Tuple(Choice(METHODS), min_len=1, max_len=len(METHODS)),
        "train_per_class": Int(1, 6000), "test_per_class": Int(1, 1000),
        "permuted_tasks": Int(2, 50), "hidden": Int(1, 4096), "epochs": Int(1, 100),
        "batch_size": Int(1, 60_000), "lr": POSITIVE, "ewc_lambda": POSITIVE, "si_c": POSITIVE,
        "lwf_lambda": POSITIVE, "memory": Int(0, 60_000), "n_seeds": Int(1, 100), "seed": SEED,
    }

    def check(self) -> None:
        if self.dataset not in DATASETS and not Path(self.dataset).is_dir():
            raise ConfigError(f"'dataset' of ContinualStudy must be one of {', '.join(DATASETS)} "
                              f"or a folder of the user's images. Got {self.dataset!r}.")
        if "naive" not in self.methods:
            raise ConfigError("'methods' of ContinualStudy must include 'naive' (every claim "
                              "compares with it).")

    def quick(self) -> ContinualStudy:
        """The CI form: the full 500 training images per class (with fewer, EWC does not
        collapse in class-IL as at full size: 200 per class gave EWC +0.092 [0.070, 0.113] over
        naive, 8 seeds, hidden 128), a 64-wide MLP, 100 test images per class, two permuted
        tasks, six seeds (the claims pick seeds per setting: ``theorylab.papers.cl``)."""
        return self.replace(train_per_class=500, test_per_class=100, permuted_tasks=2,
                            hidden=64, n_seeds=6)

    def units(self) -> list[dict]:
        return [{"setting": s, "method": m, "seed": r} for s in self.settings
                for m in self.methods for r in range(self.n_seeds)
                if not (m in TASK_ID_ONLY and s != "task")]

    def _subset(self, seed: int) -> dict:
        """Seed ``seed``'s class-balanced subset: indices into the training and test images."""
        (_, ytr), (_, yte) = source_images(self.dataset)
        rng = rng_for(self.seed, "subset", seed)
        tr, te = _balanced(ytr, self.train_per_class, rng), _balanced(yte, self.test_per_class, rng)
        return {"train": torch.from_numpy(tr), "test": torch.from_numpy(te)}

    def stream(self, setting: str, seed: int, ctx=None):
        idx = memory_context(self, ctx).artifact(
            "subset", seed, lambda: self._subset(seed),
            depends_on=("dataset", "train_per_class", "test_per_class", "seed"))
        (xtr, ytr), (xte, yte) = source_images(self.dataset)
        tr, te = idx["train"].numpy(), idx["test"].numpy()
        train, test = (xtr[tr], ytr[tr]), (xte[te], yte[te])
        if setting == "domain":
            return permuted_stream(train, test, self.permuted_tasks, seed=rng_for(
                self.seed, "perm", seed).integers(2**62))
        return split_stream(train, test, SPLITS, setting)

    def strategy(self, method: str):
        params = {"ewc": {"lam": self.ewc_lambda}, "si": {"c": self.si_c},
                  "lwf": {"lam": self.lwf_lambda}, "replay": {"memory": self.memory},
                  "agem": {"memory": self.memory},
                  "generative": {"hidden": self.hidden}}.get(method, {})
        return make_strategy(method, **params)

    def task_fields(self, setting: str, method: str) -> tuple[str, ...]:
        """The config fields the model after any task of (setting, method) depends on."""
        return (*TASK_FIELDS, *METHOD_FIELDS.get(method, ()),
                *(("permuted_tasks",) if setting == "domain" else ()))

    def run_unit(self, unit, ctx=None):
        setting, method, seed = unit["setting"], unit["method"], int(unit["seed"])
        ctx = memory_context(self, ctx)
        stream = self.stream(setting, seed, ctx)
        dim, n_classes = stream[0].x_train.shape[1], stream[0].n_classes
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             device="cpu", seed=0)
        key = {"setting": setting, "method": method, "seed": seed}

        def checkpoint(i, build):   # each task's model (and strategy state) is an artifact
            return ctx.artifact("task", {**key, "task": i}, build,
                                depends_on=self.task_fields(setting, method))

        with single_thread():
            res = run_stream(lambda: mlp(dim, n_classes, self.hidden), stream,
                             self.strategy(method), config, seed=int(rng_for(
                                 self.seed, "run", seed).integers(2**62)),
                             checkpoint=checkpoint)
        T = len(stream)
        rows = [{"record": "R", **key, "i": i, "j": j, "acc": float(res.R[i, j])}
                for i in range(T) for j in range(T)]
        rows += [{"record": "R", **key, "i": -1, "j": j, "acc": float(res.b[j])} for j in range(T)]
        rows.append({"record": "summary", **key, **metrics.summary(res.R, res.b),
                     "seconds_per_task": float(np.mean(res.seconds)),
                     "state_bytes": int(res.state_bytes), "params": int(res.params),
                     "n_tasks": T})
        return rows
