r"""The AC power mismatch in torch (differentiable), and the physics loss built on it.

With :math:`Y = G + jB` (:meth:`~theorylab.empirical.power.grid.Grid.ybus`), :math:`e =
|V|\cos\theta`, :math:`f = |V|\sin\theta`, the injected current is :math:`I = YV`,
:math:`\operatorname{Re} I = Ge - Bf`, :math:`\operatorname{Im} I = Gf + Be`, and the injection
:math:`S = V\bar I` has :math:`P = e\operatorname{Re} I + f\operatorname{Im} I`, :math:`Q =
f\operatorname{Re} I - e\operatorname{Im} I`. The mismatch is :math:`\Delta P = P - P^\text{sp}`
at non-slack buses and :math:`\Delta Q = Q - Q^\text{sp}` at PQ buses: the same quantity as
:func:`~theorylab.empirical.power.grid.mismatch` (checked against pandapower), in real
arithmetic so that autograd differentiates it.

**Physics loss** :math:`\mathcal L_\text{phys} = \overline{\Delta P^2} + \overline{\Delta Q^2}`
(means over the non-slack, resp. PQ, entries and the cases), p.u.²; zero exactly at a power-flow
solution. Computed in float64.
"""

from __future__ import annotations

import numpy as np
import torch

from theorylab.empirical.power.grid import PQ, SLACK, Grid

__all__ = ["TorchMismatch"]


class TorchMismatch:
    """:math:`(\\Delta P, \\Delta Q)` of batched states of one grid (module docstring)."""

    def __init__(self, grid: Grid, drop: int | None = None, device="cpu"):
        Y = grid.ybus(drop).tocoo()
        idx = torch.from_numpy(np.stack([Y.row, Y.col])).long()
        self.G = torch.sparse_coo_tensor(idx, torch.from_numpy(Y.data.real), Y.shape,
                                         check_invariants=True).coalesce().to(device)
        self.B = torch.sparse_coo_tensor(idx, torch.from_numpy(Y.data.imag), Y.shape,
                                         check_invariants=True).coalesce().to(device)
        self.p_rows = torch.from_numpy(np.flatnonzero(grid.bus_type != SLACK)).to(device)
        self.q_rows = torch.from_numpy(np.flatnonzero(grid.bus_type == PQ)).to(device)

    def __call__(self, vm: torch.Tensor, va_degree: torch.Tensor, p_spec: torch.Tensor,
                 q_spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ΔP (B, non-slack), ΔQ (B, PQ)), p.u.; inputs (B, n), cast to float64."""
        vm, va = vm.double(), torch.deg2rad(va_degree.double())
        e, f = vm * torch.cos(va), vm * torch.sin(va)
        # sparse (n, n) @ dense (n, B): the batch is the column axis
        ir = (self.G @ e.T - self.B @ f.T).T
        ii = (self.G @ f.T + self.B @ e.T).T
        p = e * ir + f * ii - p_spec.double()
        q = f * ir - e * ii - q_spec.double()
        return p[:, self.p_rows], q[:, self.q_rows]

    def loss(self, vm, va_degree, p_spec, q_spec) -> torch.Tensor:
        """:math:`\\overline{\\Delta P^2} + \\overline{\\Delta Q^2}` (p.u.², float64)."""
        dp, dq = self(vm, va_degree, p_spec, q_spec)
        return (dp ** 2).sum() / max(dp.numel(), 1) + (dq ** 2).sum() / max(dq.numel(), 1)
