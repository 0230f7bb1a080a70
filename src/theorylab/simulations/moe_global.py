r"""Is the rate study's fit the *global* least-squares estimator? A measurement against a reference.

Nguyen, Ho, Rinaldo (arXiv 2402.02952, ICML 2024) bound the loss of the LSE
:math:`\hat G_n \in \arg\min_{G \in \Theta} \sum_i (Y_i - f_G(X_i))^2`, the global minimiser over
the compact box :math:`\Theta`. :func:`~theorylab.kernels.moe.fit_lse` is a multi-start local
search. "Objective at the fit ≤ objective at :math:`G_*`" (``lse_found`` of the rate study) is
necessary for globality, not sufficient. This study measures globality directly: on a sample of
the rate study's own problems (every expert family, exact- and over-fitted, both noise levels,
n from 10² to 10⁴), drawn with fresh seeds, it fits as the rate study does and compares with
:func:`~theorylab.kernels.moe.reference.reference_lse`, a many-start bounded
``scipy.optimize.least_squares`` (trf) over the same box, seeded also with the fit itself (so the
reference is never worse than the fit, up to trf's convergence).

One row per problem: the objectives of the fit (``obj_fit``), of the same fit without the
split–merge moves (``obj_base``, fit_lse as in rate-study version ≤ 6) and of the reference
(``obj_ref``; ``obj_ref_own``: the best of its own starts), the gaps
:math:`(S_{\text{fit}} - S_{\text{ref}})/\sigma^2` in noise variances (``gap``, ``gap_base``,
``gap_own``), D1 of the fit and of the reference, and the times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from theorylab.constraints import POSITIVE, SEED, Choice, Int, Tuple
from theorylab.kernels import moe
from theorylab.kernels.moe.reference import reference_lse
from theorylab.seeding import seed_for
from theorylab.simulations.moe_rates import case_study
from theorylab.study import Study

__all__ = ["MoEGlobalStudy"]


@dataclass(frozen=True)
class MoEGlobalStudy(Study):
    """Fits of the rate study's problems against the many-start trf reference.

    The fit settings default to the rate study's (``fit_*``; a test checks they agree); a weaker
    fitter (one start, no split starts, no moves) is how a test shows the claim can fail.
    """

    name = "moe-global"
    version = 1
    experts: tuple[str, ...] = ("sigmoid", "tanh", "linear")
    cases: tuple[str, ...] = ("exact", "over")
    noise_sds: tuple[float, ...] = (1e-5, 0.01)    # both regimes of the rate study
    ns: tuple[int, ...] = (100, 1000, 10000)
    n_reps: int = 4                                # 144 problems (see quick)
    seed: int = 1                                  # fresh: the rate studies draw from seed 0
    # the fitter under test (defaults: the rate study's, MoERateStudy and fit_lse)
    fit_n_starts: int = 20
    fit_split_starts: int = 2
    fit_move_rounds: int = 2
    # the reference: trf from ref_box box starts and ref_data data-driven starts (screened on
    # ref_screen points when n is larger, the ref_polish best rerun on all n) and from the fit
    ref_box: int = 8
    ref_data: int = 16
    ref_screen: int = 1000
    ref_polish: int = 4

    constraints: ClassVar = {
        "experts": Tuple(Choice(("sigmoid", "tanh", "linear")), min_len=1, max_len=3),
        "cases": Tuple(Choice(("exact", "over")), min_len=1, max_len=2),
        "noise_sds": Tuple(POSITIVE, min_len=1, max_len=10),
        "ns": Tuple(Int(10, 10**6), min_len=1, max_len=20),  # the reference is slow: n <= 10^6
        "n_reps": Int(1, 1000),
        "seed": SEED,
        "fit_n_starts": Int(1, 1000),
        "fit_split_starts": Int(0, 100),
        "fit_move_rounds": Int(0, 100),
        "ref_box": Int(0, 1000),
        "ref_data": Int(0, 1000),
        "ref_screen": Int(10, 10**6),
        "ref_polish": Int(1, 1000),
    }

    def units(self) -> list[dict]:
        # largest n first (the slow references start early)
        return [{"expert": e, "case": c, "noise_sd": s, "n": n, "rep": r}
                for n in sorted(self.ns, reverse=True) for e in self.experts for c in self.cases
                for s in self.noise_sds for r in range(self.n_reps)]

    def rate_study(self, expert: str, case: str, noise_sd: float):
        """The rate study whose problem a unit samples, with this study's fresh seed."""
        return case_study(expert, case).replace(noise_sd=noise_sd, seed=self.seed)

    def run_unit(self, unit: dict, ctx=None) -> dict:
        e, c, s2, n, rep = unit["expert"], unit["case"], unit["noise_sd"] ** 2, unit["n"], unit["rep"]
        study = self.rate_study(e, c, unit["noise_sd"])
        X, y = study.sample(n, rep)
        true = study.true_params()
        kw = dict(n_starts=self.fit_n_starts, split_starts=self.fit_split_starts)
        t0 = time.perf_counter()
        fit = study.fit(X, y, n, rep, move_rounds=self.fit_move_rounds, **kw)
        t1 = time.perf_counter()
        base = study.fit(X, y, n, rep, move_rounds=0, **kw)
        t2 = time.perf_counter()
        ref = reference_lse(X, y, e, study.k_fit, seed=seed_for(self.seed, "ref", e, c, unit["noise_sd"], n, rep),
                            bound=study.param_bound, degree=study.degree, n_box=self.ref_box,
                            n_data=self.ref_data, extra=[fit.theta, base.theta],
                            screen_size=self.ref_screen, n_polish=self.ref_polish)
        t3 = time.perf_counter()
        own = float(ref.objectives[:len(ref.objectives) - ref.n_extra].min()) \
            if len(ref.objectives) > ref.n_extra else float("inf")
        return {
            "obj_fit": fit.objective, "obj_base": base.objective, "obj_ref": ref.objective,
            "obj_ref_own": own, "obj_true": moe.objective(X, y, true, e, study.degree),
            "gap": (fit.objective - ref.objective) / s2,
            "gap_base": (base.objective - ref.objective) / s2,
            "gap_own": (fit.objective - own) / s2,
            "d1_fit": moe.voronoi_d1(fit.params, true), "d1_base": moe.voronoi_d1(base.params, true),
            "d1_ref": moe.voronoi_d1(ref.params, true),
            "fit_seconds": t1 - t0, "base_seconds": t2 - t1, "ref_seconds": t3 - t2,
        }

    def quick(self) -> MoEGlobalStudy:
        """CI form: the study itself, 4 replicates per (family, case, noise level, n): 144 problems.

        A smaller sample cannot decide the claim: one replicate (36 problems, the quick form until
        2026-12-01) gave 35 of 36, Wilson [0.858, 0.995], half-width 0.068 > 0.05 (inconclusive;
        the report-only claim moe.optimizer.global.sample36 keeps the verdict on replicate 0); a
        fraction of 0.96 needs about 100 problems for a lower end above 0.9, and 144 allow up to 7
        misses. The full form had 3 replicates (104 of 108); replicates 0-2 are the same draws."""
        return self
