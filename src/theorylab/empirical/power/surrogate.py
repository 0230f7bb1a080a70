r"""From solved cases to tensors, training by the shared loop, prediction and scores.

The residual targets are :math:`r_V = (V - V^\text{DC}) / s_V` at PQ buses and :math:`r_\theta =
(\theta - \theta^\text{DC}) / s_\theta` at non-slack buses; the loss is their mean squared error
over exactly those entries. Node features are standardised with the training split's mean and
standard deviation (per feature; constant features are left unscaled), edge features likewise.

Scores (:func:`scores`): MAE of V over PQ buses (p.u.), MAE of θ over non-slack buses (degrees),
and the mean absolute AC mismatch :math:`\overline{|\Delta P|}`, :math:`\overline{|\Delta Q|}`
(p.u., :func:`theorylab.empirical.power.grid.mismatch`) of the predicted state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from theorylab.empirical.power.features import (
    DCSolver,
    Targets,
    edge_features,
    node_features,
)
from theorylab.empirical.power.grid import Grid, mismatch, specified
from theorylab.empirical.train import TrainConfig, TrainResult, train

__all__ = ["Norm", "Prepared", "prepare", "fit", "predict", "scores"]


@dataclass(frozen=True)
class Norm:
    """Feature means/stds and residual scales, from the training split."""

    x_mean: np.ndarray
    x_std: np.ndarray
    e_mean: np.ndarray
    e_std: np.ndarray
    s_v: float
    s_theta: float


@dataclass
class Prepared:
    """One split: standardised features, DC baseline, truth, specified injections."""

    x: torch.Tensor
    dc_vm: np.ndarray
    dc_va: np.ndarray
    vm: np.ndarray
    va: np.ndarray
    s_spec: np.ndarray

    def __len__(self) -> int:
        return len(self.vm)


def _std(a: np.ndarray, axis) -> tuple[np.ndarray, np.ndarray]:
    mean, std = a.mean(axis=axis), a.std(axis=axis)
    return mean, np.where(std > 1e-12, std, 1.0)


def raw(grid: Grid, data: dict, dc: DCSolver) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(node features before scaling, DC angles, specified injections) of solved cases."""
    s_spec = specified(grid, data["load_p"], data["load_q"], data["gen_p"])
    s_load = -specified(grid, data["load_p"], data["load_q"], np.zeros_like(data["gen_p"]))
    p_gen = specified(grid, np.zeros_like(data["load_p"]), np.zeros_like(data["load_q"]),
                      data["gen_p"]).real
    theta_dc = dc.theta(s_spec.real)
    return node_features(grid, s_load, p_gen, theta_dc), theta_dc, s_spec


def make_norm(grid: Grid, data: dict, dc: DCSolver) -> Norm:
    """Standardisation statistics of a training split."""
    x, theta_dc, _ = raw(grid, data, dc)
    t = Targets.of(grid)
    xm, xs = _std(x.reshape(-1, x.shape[-1]), 0)
    _, e = edge_features(grid)
    em, es = _std(e, 0)
    rv = (data["vm"] - dc.vm(len(x)))[:, t.v_mask]
    rt = (data["va"] - theta_dc)[:, t.theta_mask]
    return Norm(xm, xs, em, es, float(max(rv.std(), 1e-9)), float(max(rt.std(), 1e-9)))


def prepare(grid: Grid, data: dict, dc: DCSolver, norm: Norm) -> Prepared:
    x, theta_dc, s_spec = raw(grid, data, dc)
    x = (x - norm.x_mean) / norm.x_std
    return Prepared(torch.from_numpy(x).float(), dc.vm(len(x)), theta_dc,
                    np.asarray(data["vm"]), np.asarray(data["va"]), s_spec)


def edge_tensors(grid: Grid, norm: Norm) -> tuple[torch.Tensor, torch.Tensor]:
    ei, e = edge_features(grid)
    return torch.from_numpy(ei).long(), torch.from_numpy((e - norm.e_mean) / norm.e_std).float()


def _residuals(p: Prepared, norm: Norm) -> torch.Tensor:
    r = np.stack([(p.vm - p.dc_vm) / norm.s_v, (p.va - p.dc_va) / norm.s_theta], axis=-1)
    return torch.from_numpy(r).float()


def fit(model: torch.nn.Module, grid: Grid, train_split: Prepared, val_split: Prepared,
        norm: Norm, config: TrainConfig) -> TrainResult:
    """Train ``model`` by :func:`theorylab.empirical.train.train`; early stopping on the
    validation loss (the same masked MSE)."""
    t = Targets.of(grid)
    mask = torch.from_numpy(np.stack([t.v_mask, t.theta_mask], axis=-1)).float()
    denom = mask.sum()

    def loss(m, batch):
        x, r = batch
        return (((m(x) - r) ** 2) * mask).sum() / (denom * len(x))

    data = torch.utils.data.TensorDataset(train_split.x, _residuals(train_split, norm))
    xv, rv = val_split.x, _residuals(val_split, norm)
    return train(model, loss, data, config, val_fn=lambda m: float(loss(m, (xv, rv))))


@torch.no_grad()
def predict(model: torch.nn.Module, grid: Grid, split: Prepared, norm: Norm,
            batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(V̂, θ̂) of every case of ``split``; known entries are the set-points."""
    model.eval()
    out = torch.cat([model(split.x[i:i + batch_size])
                     for i in range(0, len(split), batch_size)]).double().numpy()
    return compose(grid, split.dc_vm, split.dc_va, out, norm)


def compose(grid: Grid, dc_vm, dc_va, out: np.ndarray, norm: Norm):
    t = Targets.of(grid)
    vm = np.where(t.v_mask, dc_vm + norm.s_v * out[..., 0], dc_vm)
    va = np.where(t.theta_mask, dc_va + norm.s_theta * out[..., 1], dc_va)
    return vm, va


def scores(grid: Grid, split: Prepared, vm: np.ndarray, va: np.ndarray) -> dict[str, float]:
    """V MAE (PQ buses), θ MAE (non-slack buses) and mean |ΔP|, |ΔQ| of the state (vm, va)."""
    t = Targets.of(grid)
    dp, dq = mismatch(grid, grid.ybus(), vm, va, split.s_spec)
    return {"v_mae": float(np.abs(vm - split.vm)[:, t.v_mask].mean()),
            "theta_mae": float(np.abs(va - split.va)[:, t.theta_mask].mean()),
            "dp_mae": float(np.abs(dp).mean()), "dq_mae": float(np.abs(dq).mean())}
