r"""From solved cases to tensors, training by the shared loop, prediction and scores.

The residual targets are :math:`r_V = (V - V^\text{DC}) / s_V` at PQ buses and :math:`r_\theta =
(\theta - \theta^\text{DC}) / s_\theta` at non-slack buses; the loss is their mean squared error
over exactly those entries; with ``physics_weight`` λ > 0 the loss adds λ times the physics loss
:math:`\overline{\Delta P^2} + \overline{\Delta Q^2}` of the predicted state
(:mod:`.physics`, p.u.²). Node features are standardised with the training split's mean and
standard deviation (per feature; constant features are left unscaled), edge features likewise.

Scores (:func:`scores`): MAE of V over PQ buses (p.u.), MAE of θ over non-slack buses (degrees),
and the mean absolute AC mismatch :math:`\overline{|\Delta P|}`, :math:`\overline{|\Delta Q|}`
(p.u., :func:`theorylab.empirical.power.grid.mismatch`) of the predicted state.

**Another grid** (:func:`on_grid`): the GNN's weights act per bus and per branch, so the trained
model runs on any topology, with the target grid's edge list and edge features standardised by
the *source's* statistics (and its node features likewise, by :func:`prepare` with the source's
:class:`Norm`); the MLP's first layer is sized for one grid's n·F inputs and cannot.
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
from theorylab.empirical.train import TrainConfig, TrainResult, pick_device, train
from theorylab.errors import ConfigError

__all__ = ["Norm", "Prepared", "prepare", "fit", "predict", "scores", "on_grid"]


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
        norm: Norm, config: TrainConfig, physics_weight: float = 0.0) -> TrainResult:
    """Train ``model`` by :func:`theorylab.empirical.train.train`; early stopping on the
    validation loss (the same loss: masked MSE, plus λ × physics loss if ``physics_weight``)."""
    t = Targets.of(grid)
    device = pick_device(config.device)
    mask = torch.from_numpy(np.stack([t.v_mask, t.theta_mask], axis=-1)).float().to(device)
    denom = mask.sum()

    def supervised(out, r):
        return (((out - r) ** 2) * mask).sum() / (denom * len(out))

    if physics_weight <= 0:
        def loss(m, batch):
            x, r = batch
            return supervised(m(x), r)

        data = torch.utils.data.TensorDataset(train_split.x, _residuals(train_split, norm))
        val = tuple(v.to(device) for v in (val_split.x, _residuals(val_split, norm)))
    else:
        from theorylab.empirical.power.physics import TorchMismatch
        phys = TorchMismatch(grid, device=device)
        vmask, tmask = (torch.from_numpy(a).to(device) for a in (t.v_mask, t.theta_mask))
        dc_vm = torch.from_numpy(np.ascontiguousarray(train_split.dc_vm[0])).to(device)

        def loss(m, batch):
            x, r, dc_va, p_spec, q_spec = batch
            out = m(x)
            o = out.double()
            vm = torch.where(vmask, dc_vm + norm.s_v * o[..., 0], dc_vm)
            va = torch.where(tmask, dc_va + norm.s_theta * o[..., 1], dc_va)
            return supervised(out, r) + physics_weight * phys.loss(vm, va, p_spec, q_spec)

        def tensors(p: Prepared):
            return (p.x, _residuals(p, norm), torch.from_numpy(p.dc_va),
                    torch.from_numpy(p.s_spec.real.copy()), torch.from_numpy(p.s_spec.imag.copy()))

        data = torch.utils.data.TensorDataset(*tensors(train_split))
        val = tuple(v.to(device) for v in tensors(val_split))
    return train(model, loss, data, config, val_fn=lambda m: float(loss(m, val)))


def on_grid(model: torch.nn.Module, grid: Grid, norm: Norm) -> torch.nn.Module:
    """The trained GNN ``model`` on another ``grid`` (module docstring): a copy with the target's
    edge list and edge features (standardised by the source's ``norm``), the same weights."""
    from theorylab.empirical.power.models import PowerGNN
    if not isinstance(model, PowerGNN):
        raise ConfigError("'model' of on_grid must be a PowerGNN (an MLP's input layer is "
                          f"sized for one grid's buses). Got {type(model).__name__}.")
    ei, ea = edge_tensors(grid, norm)
    out = PowerGNN(model.encode[0].in_features, ea.shape[1], ei, ea,
                   model.readout.in_features, len(model.layers))
    state = {k: v for k, v in model.state_dict().items() if k not in ("edge_index", "edge_attr")}
    missing, unexpected = out.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"edge_index", "edge_attr"}:
        raise ConfigError(f"'model' of on_grid does not match a PowerGNN's layout: missing "
                          f"{missing}, unexpected {unexpected}.")
    return out.eval()


@torch.no_grad()
def predict(model: torch.nn.Module, grid: Grid, split: Prepared, norm: Norm,
            batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(V̂, θ̂) of every case of ``split``; known entries are the set-points."""
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([model(split.x[i:i + batch_size].to(device))
                     for i in range(0, len(split), batch_size)]).double().cpu().numpy()
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
