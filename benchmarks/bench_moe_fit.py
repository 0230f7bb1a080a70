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

Every start is timed on its own (CPU time of this process). Reported per n:

* *per start*: the time ratios scipy / ours summed over all starts; each start's objective
  verdict (scipy "same" when within 1e-9 relative of ours, else "better" / "worse"; "outside"
  for lm results outside the box), tallied; and the ratio over the starts where both reached
  the *same* optimum — the cleanest speed comparison, same problem, start and end point;
* *per LSE*: our whole estimator, ``fit_lse`` given the same starts
  (screened for 100 iterations on a subsample of at most 2,000 points, then every start
  polished on growing subsamples, the ones within 50 noise variances of the best going on to
  all n points, to the same tolerance), against scipy's best of those starts, each run to
  convergence on all n points: time ratio, objective tally and the objective gaps in units of
  the noise variance sigma^2 (the statistical resolution of the objective);
* *to scipy's LSE* (the acceptance measure: speed at the same objective or better): our
  estimator's time until its objective is at or below scipy's LSE — fit_lse on the identical
  starts, then, while still above, fit_lse on batches of fresh random starts
  (:func:`time_to_target`), every batch timed — against scipy's time for its LSE; with the
  batches used and the problems reached;
* iterations (ours) and Jacobian evaluations (scipy), and the per-iteration speed ratio.

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


def _ours(X, y, th):
    f = lm_fit(X, y, "sigmoid", K_FIT, th, tol=TOL, max_iter=MAX_ITER, bound=BOUND)
    return f.objective, f.n_iter


def _scipy(X, y, th, method):
    """Objective (inf when an lm result left the box: it solved another problem), Jacobians."""
    bounds = (-BOUND, BOUND) if method == "trf" else (-np.inf, np.inf)
    res = least_squares(numpy_residuals, np.clip(th, -BOUND, BOUND), jac=numpy_jacobian,
                        args=(X, y, K_FIT), bounds=bounds, method=method, ftol=TOL, xtol=TOL,
                        gtol=TOL, max_nfev=2 * MAX_ITER)
    obj = 2.0 * res.cost if np.all(np.abs(res.x) <= BOUND) else np.inf  # cost = r^T r / 2
    return obj, res.njev if res.njev is not None else res.nfev


SOLVERS = {"ours": _ours, "lm": lambda X, y, th: _scipy(X, y, th, "lm"),
           "trf": lambda X, y, th: _scipy(X, y, th, "trf")}


def run_starts(X, y, starts):
    """Every solver from every start: {solver: (objectives, seconds, iterations)} per start."""
    out = {name: ([], [], []) for name in SOLVERS}
    for th in starts:
        for name, solve in SOLVERS.items():
            t0 = time.process_time()
            obj, it = solve(X, y, th)
            out[name][1].append(time.process_time() - t0)
            out[name][0].append(obj)
            out[name][2].append(it)
    return out


def run_fit_lse(X, y, starts):
    """Our whole estimator from the same starts (no split starts: scipy gets no (k-1)-fit either),
    every start polished as scipy runs every start, converged to the same tolerance."""
    t0 = time.process_time()
    fit = fit_lse(X, y, "sigmoid", K_FIT, seed=0, starts=starts, split_starts=0, tol=TOL,
                  max_iter=MAX_ITER, bound=BOUND, n_polish=len(starts))
    return fit.objective, time.process_time() - t0


def verdict(theirs, ours):
    if not np.isfinite(theirs):
        return "outside"
    if abs(theirs - ours) <= 1e-9 * abs(ours):
        return "same"
    return "worse" if theirs > ours else "better"


VERDICTS = ("same", "worse", "better", "outside")


MAX_BATCHES = 16


def time_to_target(X, y, first, target, rng):
    """Our estimator's CPU time to an objective at or below scipy's LSE ``target`` (verdict not
    "better"): ``first`` = (objective, seconds) of fit_lse on the identical starts; while above
    the target, fit_lse again on N_STARTS fresh random starts (the estimator's own search, paid
    for in the time), up to MAX_BATCHES batches. Returns (seconds, batches, reached)."""
    obj, sec = first
    batches = 1
    while verdict(target, obj) == "better" and batches < MAX_BATCHES:
        starts = [random_start(rng, X, y, "sigmoid", K_FIT) for _ in range(N_STARTS)]
        o, t = run_fit_lse(X, y, starts)
        obj, sec, batches = min(obj, o), sec + t, batches + 1
    return sec, batches, verdict(target, obj) != "better"


def tally(v):
    """'3s/1w' from a list of verdicts or a {verdict: count} dict."""
    counts = v if isinstance(v, dict) else {w: v.count(w) for w in VERDICTS}
    return "/".join(f"{counts[w]}{w[0]}" for w in VERDICTS if counts[w])


def ratio(x):
    return "-" if x is None else f"{x:.1f}"


def _flat(runs, name, i):
    """Field i (objective, seconds, iterations) of solver ``name`` over all problems' starts."""
    return np.array([v for r in runs for v in r[name][i]], dtype=float)


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
    n_problems, N_STARTS = (2, 4) if args.quick else (10, 8)
    ns = (100, 1000, 10000)
    warm = make_problem(100, 99)  # compile numba outside the timings
    r_ref, J_ref = residuals_jacobian(warm[2][0], warm[0], warm[1], "sigmoid", 1, K_FIT)
    np.testing.assert_allclose(numpy_residuals(warm[2][0], warm[0], warm[1], K_FIT), r_ref, atol=1e-12)
    np.testing.assert_allclose(numpy_jacobian(warm[2][0], warm[0], warm[1], K_FIT), J_ref, atol=1e-12)
    _ours(warm[0], warm[1], warm[2][0])
    run_fit_lse(*warm)
    sigma2 = STUDY.noise_sd ** 2
    rows = []
    print(f"{'n':>6} {'start x lm':>10} {'x trf':>6} {'same-opt x lm':>13} {'x trf':>6} "
          f"{'objective per start vs lm':>26} {'vs trf':>18} {'LSE x lm':>9} {'x trf':>6} "
          f"{'LSE objective vs lm':>20} {'vs trf':>12} {'to scipy LSE x lm':>18} {'x trf':>6} "
          f"{'reached':>8}")
    for n in ns:
        problems = [make_problem(n, p) for p in range(n_problems)]
        runs = [run_starts(*prob) for prob in problems]
        lse = [run_fit_lse(*prob) for prob in problems]

        obj = {s_: _flat(runs, s_, 0) for s_ in SOLVERS}
        sec = {s_: _flat(runs, s_, 1) for s_ in SOLVERS}
        its = {s_: int(_flat(runs, s_, 2).sum()) for s_ in SOLVERS}
        row = {"n": n, "problems": n_problems, "starts": N_STARTS, "iterations_ours": its["ours"],
               "objective_fit_lse": [o for o, _ in lse], "seconds_fit_lse": sum(t for _, t in lse)}
        for m in ("lm", "trf"):
            v = [verdict(a, b) for a, b in zip(obj[m], obj["ours"], strict=True)]
            same = np.array([w == "same" for w in v])
            best = [min(r[m][0]) for r in runs]  # scipy's LSE: its best start per problem
            t_best = sum(sum(r[m][1]) for r in runs)
            gaps = [(b - o) / sigma2 for b, (o, _) in zip(best, lse, strict=True)]
            ttt = [time_to_target(X, y, lse[p], best[p], np.random.default_rng([7, n, p]))
                   for p, (X, y, _) in enumerate(problems)]
            row[m] = {
                "per_start_ratio": sec[m].sum() / sec["ours"].sum(),
                "per_start_verdicts": {w: v.count(w) for w in VERDICTS},
                "same_optimum_starts": int(same.sum()),
                "same_optimum_ratio": (sec[m][same].sum() / sec["ours"][same].sum()) if same.any() else None,
                "jacobians": its[m], "per_iteration_ratio": (sec[m].sum() / its[m]) / (sec["ours"].sum() / its["ours"]),
                "lse_ratio": t_best / row["seconds_fit_lse"], "lse_objective": best,
                "lse_verdicts": [verdict(b, o) for b, (o, _) in zip(best, lse, strict=True)],
                # scipy's best minus ours, in noise variances: > 0 ours lower, < 0 scipy lower
                "lse_gap_sigma2": [g if np.isfinite(g) else None for g in gaps],
                # speed at equal or better quality: ours searches on until it reaches scipy's LSE
                "to_target_ratio": t_best / sum(t for t, _, _ in ttt),
                "to_target_batches": [bt for _, bt, _ in ttt],
                "to_target_reached": sum(ok for _, _, ok in ttt),
            }
        rows.append(row)

        lm, trf = row["lm"], row["trf"]
        print(f"{n:>6} {lm['per_start_ratio']:>10.1f} {trf['per_start_ratio']:>6.1f} "
              f"{ratio(lm['same_optimum_ratio']):>13} {ratio(trf['same_optimum_ratio']):>6} "
              f"{tally(lm['per_start_verdicts']):>26} {tally(trf['per_start_verdicts']):>18} "
              f"{lm['lse_ratio']:>9.1f} {trf['lse_ratio']:>6.1f} {tally(lm['lse_verdicts']):>20} "
              f"{tally(trf['lse_verdicts']):>12} {lm['to_target_ratio']:>18.1f} "
              f"{trf['to_target_ratio']:>6.1f} {lm['to_target_reached']:>3}/{trf['to_target_reached']}",
              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"benchmark": "moe_fit", "quick": args.quick, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "timer": "process_time",
            "problem": f"moe-rates sigmoid over-fitted (k*={STUDY.k_true}, k={K_FIT}, d=1, "
                       f"noise sd {STUDY.noise_sd:g}, box {BOUND:g})"}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}  (objective columns: s=same, w=scipy worse, b=scipy better than ours, "
          f"o=lm left the box)")


if __name__ == "__main__":
    main()
