r"""Power-flow samples: random load and generation perturbations solved by pandapower.

Sample :math:`k` draws a load level :math:`\alpha_k \sim U(\alpha_\text{lo}, \alpha_\text{hi})`
and scales every load :math:`\ell` by :math:`\alpha_k (1 + \varepsilon_{k\ell})` (P and Q alike:
the power factor is kept) and every generator's active power by :math:`\alpha_k (1 +
\eta_{kg})`, with :math:`\varepsilon, \eta \sim U(-\sigma, \sigma)` independent; the slack takes
up the balance. Voltage set-points stay. Each case is solved by pandapower's Newton–Raphson
(``pp.runpp``, flat start, its default tolerance 1e-8 MVA), the ground truth. A case that does
not converge is counted and skipped, never used.

``n_minus_1`` (for the outage task) takes one line out of service per sample instead: a case that
islands a bus (pandapower cannot solve it) is counted as islanded and skipped.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np

from theorylab.errors import ConfigError

__all__ = ["draw_factors", "solve", "generate", "generate_outages", "islands", "SOLVER_OPTIONS"]

#: Options of every ``pp.runpp`` call here (flat start: a case's solution does not depend on the
#: case solved before it in the same process).
SOLVER_OPTIONS = {"init": "flat", "numba": True}


def draw_factors(n_loads: int, n_gens: int, n: int, rng: np.random.Generator,
                 level: tuple[float, float], sigma: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α (n,), load factors (n, n_loads), generator factors (n, n_gens)), module docstring."""
    lo, hi = level
    if not (0 < lo <= hi):
        raise ConfigError(f"'level' must satisfy 0 < lo <= hi. Got {level}.")
    alpha = rng.uniform(lo, hi, size=n)
    fl = alpha[:, None] * (1 + rng.uniform(-sigma, sigma, size=(n, n_loads)))
    fg = alpha[:, None] * (1 + rng.uniform(-sigma, sigma, size=(n, n_gens)))
    return alpha, fl, fg


def solve(net) -> bool:
    """Run ``pp.runpp`` on ``net`` in place; True if it converged (its warnings are silenced)."""
    import pandapower as pp
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            pp.runpp(net, **SOLVER_OPTIONS)
    except pp.LoadflowNotConverged:
        return False
    return bool(net.converged)


def case_solver(net):
    """``runpp`` on one generated case at a time, for timing: a private copy of ``net`` with
    scalings 1 (solved once to warm pandapower's numba kernels) and ``run(data, i)`` that sets
    case ``i``'s loads and generation from a data set of :func:`generate` and solves it."""
    import copy
    work = copy.deepcopy(net)
    work.load.scaling, work.gen.scaling = 1.0, 1.0
    solve(work)

    def run(data: dict, i: int) -> bool:
        work.load.p_mw, work.load.q_mvar = data["load_p"][i], data["load_q"][i]
        work.gen.p_mw = data["gen_p"][i]
        return solve(work)
    return run


def generate(net, n: int, rng: np.random.Generator, level=(0.8, 1.2), sigma: float = 0.1,
             name: str = "grid", on_solved=None) -> dict:
    """``n`` perturbed cases of ``net`` solved by ``runpp``; returns only the converged ones.

    Keys: ``load_p``, ``load_q`` (MW/Mvar per load), ``gen_p`` (MW per gen), ``vm`` (p.u.),
    ``va`` (degrees; bus order of ``net.bus``), ``level`` (the draw's α), ``n_tried``,
    ``n_failed`` and ``message`` (how many were skipped and why). ``net`` is left unchanged;
    ``on_solved(net)`` is called on the solved copy after each converged case.
    """
    net, p0, q0, g0 = _unscaled_copy(net)
    alpha, fl, fg = draw_factors(len(p0), len(g0), n, rng, level, sigma)
    out = {k: [] for k in ("load_p", "load_q", "gen_p", "vm", "va", "level")}
    failed = 0
    for k in range(n):
        lp, lq, gp = p0 * fl[k], q0 * fl[k], g0 * fg[k]
        net.load.p_mw, net.load.q_mvar, net.gen.p_mw = lp, lq, gp
        if not solve(net):
            failed += 1
            continue
        if on_solved is not None:
            on_solved(net)
        for key, v in (("load_p", lp), ("load_q", lq), ("gen_p", gp),
                       ("vm", net.res_bus.vm_pu.to_numpy(float)),
                       ("va", net.res_bus.va_degree.to_numpy(float)), ("level", alpha[k])):
            out[key].append(v)
    res = _stacked(out, len(p0), len(g0), len(net.bus))
    res.update(n_tried=n, n_failed=failed,
               message=_message(name, n, failed, "did not converge (pandapower Newton-Raphson, "
                                "flat start) and were skipped"))
    return res


def _message(name: str, n: int, failed: int, what: str) -> str:
    if failed == 0:
        return f"all {n} perturbed cases of {name} converged."
    return f"{failed} of {n} perturbed cases of {name} {what}."


def _unscaled_copy(net):
    """``(copy, p0, q0, g0)``: a copy of ``net`` whose load and generation scalings are 1, and
    the base injections (MW / Mvar per load, MW per gen) with the old scalings folded in."""
    import copy
    net = copy.deepcopy(net)
    p0 = (net.load.p_mw * net.load.scaling).to_numpy(float)
    q0 = (net.load.q_mvar * net.load.scaling).to_numpy(float)
    g0 = (net.gen.p_mw * net.gen.scaling).to_numpy(float)
    net.load.scaling = 1.0
    net.gen.scaling = 1.0
    return net, p0, q0, g0


def _stacked(out: dict, n_loads: int, n_gens: int, n_bus: int) -> dict:
    """The per-case lists of :func:`generate` as arrays: (cases, width) for the injections and
    the bus results, (cases,) for the scalars."""
    width = {"load_p": n_loads, "load_q": n_loads, "gen_p": n_gens, "vm": n_bus, "va": n_bus}
    return {k: np.asarray(v, float).reshape(-1, width[k]) if k in width else np.asarray(v, float)
            for k, v in out.items()}


def islands(grid, drop: int) -> bool:
    """True if taking branch ``drop`` out of service splits the grid's buses into islands."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    keep = np.arange(len(grid.f)) != drop
    a = sp.coo_matrix((np.ones(keep.sum()), (grid.f[keep], grid.t[keep])),
                      shape=(grid.n, grid.n))
    return connected_components(a, directed=False)[0] > 1


def generate_outages(net, grid, n: int, rng: np.random.Generator, level=(0.8, 1.2),
                     sigma: float = 0.1, name: str = "grid") -> dict:
    """``n`` N-1 cases: a perturbation as in :func:`generate` and one in-service line, drawn
    uniformly, out of service. A draw that islands a bus is counted (``n_islanded``) and skipped
    without a solve; a non-converged case is counted (``n_failed``) and skipped. Keys as in
    :func:`generate`, plus ``outage`` (the line's branch position in ``grid``, lines first)."""
    net, p0, q0, g0 = _unscaled_copy(net)
    lines = np.flatnonzero(grid.kind == 0)
    line_rows = net.line.index[net.line.in_service.astype(bool)].to_numpy()
    alpha, fl, fg = draw_factors(len(p0), len(g0), n, rng, level, sigma)
    which = rng.integers(0, len(lines), size=n)
    out = {k: [] for k in ("load_p", "load_q", "gen_p", "vm", "va", "level", "outage")}
    failed = islanded = 0
    for k in range(n):
        b = int(lines[which[k]])
        if islands(grid, b):
            islanded += 1
            continue
        lp, lq, gp = p0 * fl[k], q0 * fl[k], g0 * fg[k]
        net.load.p_mw, net.load.q_mvar, net.gen.p_mw = lp, lq, gp
        net.line.loc[line_rows[which[k]], "in_service"] = False
        ok = solve(net)
        net.line.loc[line_rows[which[k]], "in_service"] = True
        if not ok:
            failed += 1
            continue
        for key, v in (("load_p", lp), ("load_q", lq), ("gen_p", gp),
                       ("vm", net.res_bus.vm_pu.to_numpy(float)),
                       ("va", net.res_bus.va_degree.to_numpy(float)), ("level", alpha[k]),
                       ("outage", b)):
            out[key].append(v)
    res = _stacked(out, len(p0), len(g0), len(net.bus))
    res["outage"] = res["outage"].astype(np.int64)
    res.update(n_tried=n, n_failed=failed, n_islanded=islanded,
               message=f"{name}: of {n} N-1 draws {islanded} islanded a bus and {failed} did "
                       "not converge; both were skipped.")
    return res
