"""A tiny study for testing the store and the sweep (importable by spawned workers)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from theorylab.constraints import NONNEGATIVE, SEED, Int, Tuple
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

    def run_unit(self, unit):
        time.sleep(self.sleep)
        x = rng_for(self.seed, unit["n"], unit["rep"]).standard_normal(unit["n"])
        return {"mean": float(x.mean()), "pid": os.getpid()}

    def quick(self):
        return self.replace(ns=(10,), n_reps=2)
