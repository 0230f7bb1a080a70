"""A tiny study for testing the store and the sweep (importable by spawned workers)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from theorylab.seeding import rng_for
from theorylab.study import Study
from theorylab.validation import check_int, check_real


@dataclass(frozen=True)
class ToyStudy(Study):
    """Mean of ``n`` standard normals per (n, rep); each unit sleeps ``sleep`` seconds."""

    name = "_toy"
    ns: tuple[int, ...] = (10, 100)
    n_reps: int = 3
    sleep: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_int("ToyStudy", "n_reps", self.n_reps, lo=1)
        check_real("ToyStudy", "sleep", self.sleep, lo=0)

    def units(self):
        return [{"n": n, "rep": r} for n in self.ns for r in range(self.n_reps)]

    def run_unit(self, unit):
        time.sleep(self.sleep)
        x = rng_for(self.seed, unit["n"], unit["rep"]).standard_normal(unit["n"])
        return {"mean": float(x.mean()), "pid": os.getpid()}

    def quick(self):
        return self.replace(ns=(10,), n_reps=2)
