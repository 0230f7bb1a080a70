"""A worked example of a staged study: OLS excess risk E‖β̂ − β‖² = σ² d / (n − d − 1)."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from theorylab.claims import Verdict, claim
from theorylab.constraints import POSITIVE, SEED, Int, Tuple
from theorylab.criteria import RateBand
from theorylab.stats import loglog_slope
from theorylab.study import Study, memory_context


@dataclass(frozen=True)
class OLSStudy(Study):
    name: ClassVar[str] = "example-ols"
    ns: tuple[int, ...] = (50, 100, 200, 400, 800)
    d: int = 5
    noise_sd: float = 1.0
    n_reps: int = 100
    seed: int = 0
    constraints: ClassVar = {"ns": Tuple(Int(2, 10**6)), "d": Int(1, 100), "noise_sd": POSITIVE,
                             "n_reps": Int(1, 10_000), "seed": SEED}

    def units(self):
        return [{"rep": r} for r in range(self.n_reps)]

    def quick(self):  # the CI-sized form: fewer replicates, the same criterion
        return self.replace(n_reps=60)

    def make_data(self, rep: int) -> dict:  # a stage: one data set per replicate
        rng = np.random.default_rng([self.seed, rep])
        X, beta = rng.standard_normal((max(self.ns), self.d)), rng.standard_normal(self.d)
        y = X @ beta + self.noise_sd * rng.standard_normal(len(X))
        return {"X": torch.from_numpy(X), "y": torch.from_numpy(y), "beta": torch.from_numpy(beta)}

    def run_unit(self, unit, ctx=None):
        data = memory_context(self, ctx).artifact(
            "data", unit["rep"], lambda: self.make_data(unit["rep"]),
            depends_on=("ns", "d", "noise_sd", "seed"))  # more replicates reuse the stored ones
        X, y, beta = (data[k].numpy() for k in ("X", "y", "beta"))
        return [{"n": n, "excess": float(np.sum((np.linalg.lstsq(X[:n], y[:n])[0] - beta) ** 2))}
                for n in self.ns]  # long records: one row per n


@claim("example.ols.rate", paper="EXAMPLE", kind="simulation", register=False,
       statement="OLS excess risk decays as n^-1 (exactly: d σ² / (n − d − 1))")
def ols_rate(ctx) -> Verdict:
    study = ctx.sized(OLSStudy())
    table = ctx.run(study)
    fit = loglog_slope(table.n, table.excess)
    exact = np.polyfit(np.log(study.ns), -np.log(np.array(study.ns) - study.d - 1), 1)[0]
    return Verdict(measured=fit.slope, ci=fit.ci,
                   criterion=RateBand((-1.0, exact), max_half_width=0.1))
