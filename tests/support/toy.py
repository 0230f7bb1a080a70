"""A tiny study for testing the store and the sweep (importable by spawned workers)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from theorylab.constraints import NONNEGATIVE, SEED, Int, Real, Str, Tuple
from theorylab.seeding import rng_for
from theorylab.study import Study


@dataclass(frozen=True)
class ToyStudy(Study):
    """Mean of ``n`` standard normals per (n, rep); each unit sleeps ``sleep`` seconds."""

    name = "_toy"
    ns: tuple[int, ...] = (10, 100)
    n_reps: int = 3
    sleep: float = 0.0
    seed: int = 0

    constraints: ClassVar = {"ns": Tuple(Int(1, 10**6), max_len=100), "n_reps": Int(1),
                             "sleep": NONNEGATIVE, "seed": SEED}

    def units(self):
        return [{"n": n, "rep": r} for n in self.ns for r in range(self.n_reps)]

    def run_unit(self, unit, ctx=None):
        time.sleep(self.sleep)
        x = rng_for(self.seed, unit["n"], unit["rep"]).standard_normal(unit["n"])
        return {"mean": float(x.mean()), "pid": os.getpid()}

    def quick(self):
        return self.replace(ns=(10,), n_reps=2)


@dataclass(frozen=True)
class StagedToyStudy(Study):
    """A two-stage toy: every unit needs the stage ``base`` (a tensor bundle, built once per
    config of ``dim`` and ``seed``; each build appends a line to ``log``), and returns long
    records (one per coordinate of base · rep)."""

    name = "_staged_toy"
    dim: int = 3
    n_reps: int = 4
    offset: float = 0.0        # not a dependency of the stage: changing it reuses ``base``
    sleep: float = 0.0
    log: str = ""
    seed: int = 0

    constraints: ClassVar = {"dim": Int(1, 100), "n_reps": Int(1, 1000), "offset": Real(),
                             "sleep": NONNEGATIVE, "log": Str(), "seed": SEED}

    def units(self):
        return [{"rep": r} for r in range(self.n_reps)]

    def build_base(self):
        import torch
        if self.log:
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        time.sleep(self.sleep)
        x = rng_for(self.seed, "base").standard_normal(self.dim)
        return {"x": torch.from_numpy(x), "note": "base", "n": self.dim}

    def run_unit(self, unit, ctx=None):
        from theorylab.study import memory_context
        base = memory_context(self, ctx).artifact("base", 0, self.build_base,
                                                  depends_on=("dim", "seed", "log"))
        return [{"coord": i, "value": float(base["x"][i]) * unit["rep"] + self.offset}
                for i in range(base["n"])]
