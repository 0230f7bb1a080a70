r"""MoE least-squares fit: our numba Levenberg–Marquardt vs ``scipy.optimize.least_squares``.

Identical problems and identical starts. The problems are the rate study's own
(:func:`theorylab.simulations.moe_rates.case_study` ``("sigmoid", "over")``: k* = 2 true
sigmoid atoms, k = 3 fitted, X ~ U[-3, 3], its noise level and its parameter box
:math:`|\theta_p| \le 10`); the starts are :func:`theorylab.kernels.moe.random_start` draws.
For each n in (100, 1000, 10000) every solver runs from each start on all n points:

* ``ours``: :func:`theorylab.kernels.moe.lm_fit` (one-pass J^T J accumulation, numba), in the box;
* ``scipy-trf``: ``least_squares(method="trf")`` with the analytic Jacobian (numpy) in the same
  box — the same problem, so its objective is the reference;
* ``scipy-lm``: ``least_squares(method="lm")`` (MINPACK) with the same Jacobian. MINPACK takes
  no bounds, so it solves the problem without the box; a start whose result leaves the box is
  counted as "outside" rather than compared.

Tolerances: ours stops on a relative SSE decrease < 1e-10 (twice, with the Gauss–Newton model
predicting no more) or 500 iterations; scipy on ftol = xtol = gtol = 1e-10 or 1000 evaluations.

A *fit* is the best of the starts of one problem (the LSE as multi-start computes it). Reported:
fits per second of each solver (CPU time of this process), the ratio ours / scipy, each
problem's objective verdict (scipy "same" when within 1e-9 relative of ours, else "better" /
"worse"; "outside" for lm results outside the box), the iterations (ours) and Jacobian
evaluations (scipy), and the per-iteration speed ratio.

*Per LSE* (the acceptance measure): our whole estimator, ``fit_lse`` given the same starts
(screened for 100 iterations on a subsample of at most 2,000 points, then every start polished
on growing subsamples, the ones within 50 noise variances of the best going on to all n points,
to the same tolerance), against scipy's best of those starts, each run to convergence on all n
points.
Prints a table and writes ``benchmarks/results/moe_fit.json``. ``--quick``: fewer problems/starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
from scipy.optimize import least_squares

from theorylab.kernels.moe import fit_lse, lm_fit, random_start, residuals_jacobian
from theorylab.simulations.moe_rates import case_study

STUDY = case_study("sigmoid", "over")
K_FIT = STUDY.k_fit
TOL = 1e-10
BOUND = STUDY.param_bound  # the study's box, for ours and trf (MINPACK lm has no bounds)
MAX_ITER = 500


def _numpy_parts(theta, X, k):
    """Gates pi (n, k), experts h (n, k) and f for sigmoid experts, d = 1, vectorised numpy."""
    x = X[:, 0]
    g1 = k - 1
    b1 = np.append(theta[:g1], 0.0)
    b0 = np.append(theta[g1:2 * g1], 0.0)
    eta = theta[2 * g1:].reshape(k, 2)
    logits = np.outer(x, b1) + b0
    logits -= logits.max(axis=1, keepdims=True)
    pi = np.exp(logits)
    pi /= pi.sum(axis=1, keepdims=True)
    with np.errstate(over="ignore"):  # exp overflow -> inf -> h = 0, the exact limit
        h = 1.0 / (1.0 + np.exp(-(np.outer(x, eta[:, 0]) + eta[:, 1])))
    return x, pi, h, (pi * h).sum(axis=1)


def numpy_residuals(theta, X, y, k):
    """r = f - y (scipy's ``fun``: evaluated at every trial point, so without the Jacobian)."""
    return _numpy_parts(theta, X, k)[3] - y


def numpy_jacobian(theta, X, y, k):
    """The analytic Jacobian of r (scipy's ``jac``: evaluated at accepted points)."""
    x, pi, h, f = _numpy_parts(theta, X, k)
    g1 = k - 1
    c = pi * (h - f[:, None])
    hp = pi * h * (1.0 - h)
    J = np.empty((x.size, theta.size))
    J[:, :g1] = c[:, :g1] * x[:, None]
    J[:, g1:2 * g1] = c[:, :g1]
    J[:, 2 * g1::2] = hp * x[:, None]
    J[:, 2 * g1 + 1::2] = hp
    return J


def make_problem(n, rep):
    """Replicate ``rep`` of the study's data at size n, and N_STARTS random starts."""
    X, y = STUDY.sample(n, rep)
    rng = np.random.default_rng([n, rep])
    starts = [random_start(rng, X, y, "sigmoid", K_FIT) for _ in range(N_STARTS)]
    return X, y, starts


def run_ours(X, y, starts):
    fits = [lm_fit(X, y, "sigmoid", K_FIT, th, tol=TOL, max_iter=MAX_ITER, bound=BOUND) for th in starts]
    return min(f.objective for f in fits), sum(f.n_iter for f in fits)


def run_scipy(X, y, starts, method):
    """Best objective over the starts (inf when every lm result left the box), Jacobians used."""
    best, iters = np.inf, 0
    bounds = (-BOUND, BOUND) if method == "trf" else (-np.inf, np.inf)
    for th in starts:
        th = np.clip(th, -BOUND, BOUND)
        res = least_squares(numpy_residuals, th, jac=numpy_jacobian, args=(X, y, K_FIT), bounds=bounds,
                            method=method, ftol=TOL, xtol=TOL, gtol=TOL, max_nfev=2 * MAX_ITER)
        if np.all(np.abs(res.x) <= BOUND):  # a result outside the box solves another problem
            best = min(best, 2.0 * res.cost)  # cost = 0.5 * sum r^2
        iters += res.njev if res.njev is not None else res.nfev
    return best, iters


def run_fit_lse(X, y, starts):
    """Our whole estimator from the same starts (no split starts: scipy gets no (k-1)-fit either),
    every start polished as scipy runs every start, converged to the same tolerance."""
    fit = fit_lse(X, y, "sigmoid", K_FIT, seed=0, starts=starts, split_starts=0, tol=TOL,
                  max_iter=MAX_ITER, bound=BOUND, n_polish=len(starts))
    return fit.objective, 0


def timed(fn, problems, *extra):
    t0 = time.process_time()
    out = [fn(X, y, starts, *extra) for X, y, starts in problems]
    return time.process_time() - t0, [o for o, _ in out], sum(i for _, i in out)


def verdict(theirs, ours):
    if not np.isfinite(theirs):
        return "outside"
    if abs(theirs - ours) <= 1e-9 * abs(ours):
        return "same"
    return "worse" if theirs > ours else "better"


N_STARTS = 5


def main(argv=None):
    global N_STARTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer problems and starts (CI)")
    ap.add_argument("--out", default=None,
                    help="default: results/moe_fit.json (results/moe_fit_quick.json with --quick)")
    args = ap.parse_args(argv)
    if args.out is None:  # a quick run never overwrites the full run's numbers
        args.out = str(Path(__file__).parent / "results" / ("moe_fit_quick.json" if args.quick else "moe_fit.json"))
    n_problems, N_STARTS = (2, 4) if args.quick else (5, 8)
    ns = (100, 1000, 10000)
    warm = make_problem(100, 99)  # compile numba outside the timings
    r_ref, J_ref = residuals_jacobian(warm[2][0], warm[0], warm[1], "sigmoid", 1, K_FIT)
    np.testing.assert_allclose(numpy_residuals(warm[2][0], warm[0], warm[1], K_FIT), r_ref, atol=1e-12)
    np.testing.assert_allclose(numpy_jacobian(warm[2][0], warm[0], warm[1], K_FIT), J_ref, atol=1e-12)
    run_ours(*warm)
    run_fit_lse(*warm)
    rows = []
    header = (f"{'n':>6} {'ours fit/s':>11} {'lm fit/s':>9} {'trf fit/s':>10} {'x lm':>7} {'x trf':>7} "
              f"{'fit_lse/s':>10} {'lm obj':>6} {'trf obj':>7} {'it ours/lm/trf':>16} {'x/it lm':>8} "
              f"{'x/it trf':>8}")
    print(header)
    for n in ns:
        problems = [make_problem(n, p) for p in range(n_problems)]
        t_ours, o_ours, i_ours = timed(run_ours, problems)
        t_lm, o_lm, i_lm = timed(run_scipy, problems, "lm")
        t_trf, o_trf, i_trf = timed(run_scipy, problems, "trf")
        t_lse, o_lse, _ = timed(run_fit_lse, problems)
        row = {
            "n": n, "problems": n_problems, "starts": N_STARTS,
            "ours_fits_per_s": n_problems / t_ours, "scipy_lm_fits_per_s": n_problems / t_lm,
            "scipy_trf_fits_per_s": n_problems / t_trf, "fit_lse_fits_per_s": n_problems / t_lse,
            "ratio_vs_lm": t_lm / t_ours, "ratio_vs_trf": t_trf / t_ours,
            "iterations_ours": i_ours, "jacobians_scipy_lm": i_lm, "jacobians_scipy_trf": i_trf,
            "us_per_iteration_ours": 1e6 * t_ours / i_ours, "us_per_jacobian_scipy_lm": 1e6 * t_lm / i_lm,
            "us_per_jacobian_scipy_trf": 1e6 * t_trf / i_trf,
            "per_iteration_ratio_vs_lm": (t_lm / i_lm) / (t_ours / i_ours),
            "per_iteration_ratio_vs_trf": (t_trf / i_trf) / (t_ours / i_ours),
            "objective_ours": o_ours, "objective_scipy_lm": o_lm, "objective_scipy_trf": o_trf,
            "objective_fit_lse": o_lse,
            "scipy_lm_vs_ours": [verdict(a, b) for a, b in zip(o_lm, o_ours, strict=True)],
            "scipy_trf_vs_ours": [verdict(a, b) for a, b in zip(o_trf, o_ours, strict=True)],
            # The whole estimator: fit_lse (screen on a subsample, staged polish) vs scipy's
            # best-of-starts on all n points, same number of starts; objective compared too.
            "lse_ratio_vs_lm": t_lm / t_lse, "lse_ratio_vs_trf": t_trf / t_lse,
            "scipy_lm_vs_fit_lse": [verdict(a, b) for a, b in zip(o_lm, o_lse, strict=True)],
            "scipy_trf_vs_fit_lse": [verdict(a, b) for a, b in zip(o_trf, o_lse, strict=True)],
        }
        rows.append(row)

        def tally(v):
            return "/".join(f"{v.count(w)}{w[0]}" for w in ("same", "worse", "better", "outside")
                        if v.count(w))
        print(f"{n:>6} {row['ours_fits_per_s']:>11.2f} {row['scipy_lm_fits_per_s']:>9.2f} "
              f"{row['scipy_trf_fits_per_s']:>10.2f} {row['ratio_vs_lm']:>7.1f} {row['ratio_vs_trf']:>7.1f} "
              f"{row['fit_lse_fits_per_s']:>10.2f} {tally(row['scipy_lm_vs_ours']):>6} "
              f"{tally(row['scipy_trf_vs_ours']):>7} {f'{i_ours}/{i_lm}/{i_trf}':>16} "
              f"{row['per_iteration_ratio_vs_lm']:>8.1f} {row['per_iteration_ratio_vs_trf']:>8.1f}"
              f"  | LSE x lm {row['lse_ratio_vs_lm']:.1f} ({tally(row['scipy_lm_vs_fit_lse'])}), "
              f"x trf {row['lse_ratio_vs_trf']:.1f} ({tally(row['scipy_trf_vs_fit_lse'])})", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": "moe_fit", "quick": args.quick, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "timer": "process_time",
            "problem": f"moe-rates sigmoid over-fitted (k*={STUDY.k_true}, k={K_FIT}, d=1, "
                       f"noise sd {STUDY.noise_sd:g}, box {BOUND:g})"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}  (objective column: s=same, w=scipy worse, b=scipy better than ours, "
          f"o=lm left the box)")


if __name__ == "__main__":
    main()
