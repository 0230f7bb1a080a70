r"""Graph samples of a grid, and DC power flow (the physics baseline and an input feature).

**DC power flow** (lossless, flat voltages): every branch :math:`k = (i, j)` has the susceptance
:math:`b_k = 1 / x_k`, :math:`x_k = \operatorname{Im}(-1/Y_{ij})` (for a line its reactance, for
a transformer :math:`x\tau`, MATPOWER's convention) and phase shift :math:`\varphi_k`;
:math:`B = C^\top \operatorname{diag}(b)\, C` and, with the slack angles fixed, the other angles
solve :math:`B_{rr}\theta_r = P_r - P^\text{shift}_r - G^\text{sh}_r - B_{rs}\theta_s`
(:math:`P` the specified injections in p.u., :math:`P^\text{shift} = C^\top \operatorname{diag}(b)
(-\varphi)`, :math:`G^\text{sh}` the shunt conductances). Its voltage magnitude is the set-point
at PV and slack buses and 1 at PQ buses.

**Graph sample.** Nodes are buses, with features: one-hot type (PQ, PV, slack), load P and Q,
generation P (p.u.), voltage set-point (0 at PQ buses), shunt G and B (p.u.), and the DC angle
(degrees, minus the slack's). Edges are lines and transformers, both directions, with features
:math:`(\operatorname{Re}, \operatorname{Im})` of the off-diagonal entry :math:`Y_{ij}` and of
the branch's own diagonal share :math:`Y^{(k)}_{ii}`, and a transformer flag. The targets are
:math:`|V|` (p.u.) and :math:`\theta` (degrees) from pandapower.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from theorylab.empirical.power.grid import PQ, SLACK, Grid, grid_of, load_grid

__all__ = ["DCSolver", "case_grid", "node_features", "edge_features", "Targets", "N_NODE_FEATURES",
           "N_EDGE_FEATURES"]

N_NODE_FEATURES = 10
DENSE_MAX = 2000   # buses up to which DC power flow uses a dense inverse of B_rr
N_EDGE_FEATURES = 5


class DCSolver:
    """DC power flow of ``grid`` for a batch of injections: one factorisation of :math:`B_{rr}`
    (``drop``: a branch out of service)."""

    def __init__(self, grid: Grid, drop: int | None = None):
        keep = np.ones(len(grid.f), bool)
        if drop is not None:
            keep[drop] = False
        f, t = grid.f[keep], grid.t[keep]
        tap = grid.ratio[keep] * np.exp(1j * grid.shift[keep])
        x = np.imag(-1 / (grid.y_ft[keep] * np.conj(tap)))   # the series reactance
        b = 1 / (x * grid.ratio[keep])
        shift = grid.shift[keep]
        n, m = grid.n, len(f)
        C = sp.csr_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[np.arange(m), np.arange(m)],
                                                              np.r_[f, t])), shape=(m, n))
        B = (C.T @ sp.diags(b) @ C).tocsc()
        self.p_shift = C.T @ (b * -shift)
        self.g_shunt = grid.y_shunt.real
        self.slack = grid.bus_type == SLACK
        self.rest = ~self.slack
        self.theta_slack = np.deg2rad(grid.theta_set[self.slack])
        self.B_rs = B[self.rest][:, self.slack]
        B_rr = B[self.rest][:, self.rest].tocsc()
        # small grids: one dense inverse (a batch is then one matrix product); large: sparse LU
        self.inv = np.linalg.inv(B_rr.toarray()) if B_rr.shape[0] <= DENSE_MAX else None
        self.lu = None if self.inv is not None else spla.splu(B_rr)
        self.grid = grid

    def theta(self, p_spec: np.ndarray) -> np.ndarray:
        """Angles in degrees, rows of ``p_spec`` (specified P per bus, p.u.) are cases."""
        p = np.atleast_2d(p_spec) - self.p_shift - self.g_shunt
        rhs = p[:, self.rest] - (self.B_rs @ self.theta_slack)[None, :]
        th = np.zeros_like(p)
        th[:, self.slack] = self.theta_slack
        th[:, self.rest] = (rhs @ self.inv.T if self.inv is not None
                            else self.lu.solve(np.ascontiguousarray(rhs.T)).T)
        return np.rad2deg(th)

    def vm(self, batch: int) -> np.ndarray:
        v = np.where(self.grid.bus_type == PQ, 1.0, self.grid.v_set)
        return np.broadcast_to(v, (batch, self.grid.n)).copy()


@functools.lru_cache(maxsize=4)
def case_grid(case: str):
    """``(net, grid, DCSolver)`` of a case name or pandapower JSON, read once per process (the
    studies' units all use the same grid; the objects are not modified)."""
    net = load_grid(case)
    g = grid_of(net, case)
    return net, g, DCSolver(g)


def node_features(grid: Grid, s_load: np.ndarray, p_gen: np.ndarray,
                  theta_dc: np.ndarray) -> np.ndarray:
    """(batch, n, :data:`N_NODE_FEATURES`) node features; ``s_load``/``p_gen`` per bus, p.u."""
    B = s_load.shape[0]
    onehot = np.eye(3)[grid.bus_type]
    vset = np.where(grid.bus_type == PQ, 0.0, grid.v_set)
    slack_theta = grid.theta_set[grid.bus_type == SLACK][0]
    static = np.concatenate([onehot, vset[:, None], grid.y_shunt.real[:, None],
                             grid.y_shunt.imag[:, None]], axis=1)
    dyn = np.stack([s_load.real, s_load.imag, p_gen, theta_dc - slack_theta], axis=-1)
    return np.concatenate([np.broadcast_to(static, (B, *static.shape)), dyn], axis=-1)


def edge_features(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(edge_index (2, 2m): sources then targets, features (2m, :data:`N_EDGE_FEATURES`))."""
    src = np.r_[grid.f, grid.t]
    dst = np.r_[grid.t, grid.f]
    off = np.r_[grid.y_ft, grid.y_tf]
    own = np.r_[grid.y_ff, grid.y_tt]
    trafo = np.r_[grid.kind, grid.kind].astype(float)
    feats = np.stack([off.real, off.imag, own.real, own.imag, trafo], axis=1)
    return np.stack([src, dst]), feats


@dataclass(frozen=True)
class Targets:
    """Where a quantity is unknown (predicted and scored): V at PQ buses, θ at non-slack buses."""

    v_mask: np.ndarray
    theta_mask: np.ndarray

    @classmethod
    def of(cls, grid: Grid) -> Targets:
        return cls(grid.bus_type == PQ, grid.bus_type != SLACK)

