r"""N-1 outage identification: which line is out, from the post-outage bus state.

Each case is a load/generation perturbation with one line out of service
(:func:`~theorylab.empirical.power.data.generate_outages`; draws that island a bus are counted
and skipped). A classifier sees the per-bus features of the power-flow surrogate (computed on the
*intact* grid, which is all an operator's model knows) plus the measured :math:`|V|` and
:math:`\theta` (relative to the slack; as from PMUs) and names the line that is out; scored by
accuracy on held-out cases.

* **GNN**: the encoder and interaction layers of :class:`~.models.PowerGNN` on the intact
  topology, and a symmetric line score :math:`s_k = \psi(h_i + h_j, |h_i - h_j|)` for line
  :math:`k = (i, j)`; softmax over lines, cross-entropy.
* **MLP**: flattened features → two hidden layers → one logit per line.
* **DC matching** (physics, no training): for every line :math:`\ell` whose loss keeps the grid
  connected, the DC angles :math:`\theta^{(\ell)}` of the case's injections with :math:`\ell`
  out; the prediction is :math:`\arg\min_\ell \|\theta - \theta^{(\ell)}\|_2` over the non-slack
  buses.

Records ``n1data`` (per chunk: tried, islanded, non-converged) and ``n1`` (model, seed,
accuracy, cases).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from theorylab.constraints import POSITIVE, SEED, Choice, Int, Real, Tuple
from theorylab.empirical.power.features import case_grid
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, torch_seed
from theorylab.study import Study, memory_context
from theorylab.threads import single_thread

__all__ = ["OutageGNN", "OutageMLP", "PowerOutageStudy", "dc_match"]

N1_MODELS = ("gnn", "mlp")
N_FEATURES = 12


class OutageGNN(nn.Module):
    """Interaction layers on the intact grid and a symmetric score per line."""

    def __init__(self, d_node: int, d_edge: int, edge_index, edge_attr, lines_f, lines_t,
                 hidden: int = 64, layers: int = 4):
        super().__init__()
        from theorylab.empirical.power.models import PowerGNN, mlp
        self.body = PowerGNN(d_node, d_edge, edge_index, edge_attr, hidden, layers)
        self.register_buffer("lf", torch.as_tensor(lines_f).long())
        self.register_buffer("lt", torch.as_tensor(lines_t).long())
        self.score = mlp(2 * hidden, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.body
        h = b.encode(x)
        e = b.edge_encode(b.edge_attr).unsqueeze(0)
        for layer in b.layers:
            h = layer(h, b.edge_index, e)
        hi, hj = h[:, self.lf], h[:, self.lt]
        return self.score(torch.cat([hi + hj, (hi - hj).abs()], dim=-1)).squeeze(-1)


class OutageMLP(nn.Module):
    def __init__(self, n: int, d_node: int, n_lines: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n * d_node, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_lines))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def dc_match(grid, data: dict, candidates: np.ndarray) -> np.ndarray:
    """The DC-matching prediction (module docstring): a branch position per case."""
    from theorylab.empirical.power.features import DCSolver
    from theorylab.empirical.power.grid import SLACK, specified
    p = specified(grid, data["load_p"], data["load_q"], data["gen_p"]).real
    rest = grid.bus_type != SLACK
    err = np.stack([((DCSolver(grid, drop=int(c)).theta(p) - data["va"])[:, rest] ** 2).sum(1)
                    for c in candidates], axis=1)
    return candidates[err.argmin(axis=1)]


@dataclass(frozen=True)
class PowerOutageStudy(Study):
    name: ClassVar[str] = "power-outage"
    version: ClassVar[int] = 1
    case: str = "case30"
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 500
    chunk_size: int = 250
    level: tuple[float, float] = (0.8, 1.2)
    sigma: float = 0.1
    models: tuple[str, ...] = N1_MODELS
    hidden: int = 64
    layers: int = 4
    mlp_hidden: int = 256
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    n_seeds: int = 5
    seed: int = 0

    constraints: ClassVar = {
        "case": Choice(("case14", "case30", "case57", "case118")),
        "n_train": Int(10, 200_000), "n_val": Int(1, 50_000), "n_test": Int(1, 50_000),
        "chunk_size": Int(1, 10_000),
        "level": Tuple(Real(0, 10, lo_open=True), min_len=2, max_len=2),
        "sigma": Real(0, 0.9), "models": Tuple(Choice(N1_MODELS), min_len=1, max_len=2),
        "hidden": Int(1, 1024), "layers": Int(1, 32), "mlp_hidden": Int(1, 8192),
        "epochs": Int(1, 10_000), "batch_size": Int(1, 65_536), "lr": POSITIVE,
        "n_seeds": Int(1, 100), "seed": SEED,
    }

    def check(self) -> None:
        if self.level[0] > self.level[1]:
            raise ConfigError(f"'level' of PowerOutageStudy must be (lo, hi) with lo <= hi. "
                              f"Got {self.level}.")

    def quick(self) -> PowerOutageStudy:
        return self.replace(n_train=800, n_val=100, n_test=300, epochs=30, n_seeds=3)

    def _n_chunks(self) -> int:
        # islanding draws are skipped: draw 25 % more than needed
        need = int(np.ceil(1.25 * (self.n_train + self.n_val + self.n_test)))
        return -(-need // self.chunk_size)

    def units(self) -> list[dict]:
        return ([{"part": "data", "chunk": k} for k in range(self._n_chunks())]
                + [{"part": "fit", "model": m, "seed": r} for m in self.models
                   for r in range(self.n_seeds)] + [{"part": "fit", "model": "dc", "seed": 0}])

    def chunk(self, k: int, ctx=None) -> dict:
        def build():
            from theorylab.empirical.power.data import generate_outages
            net, grid, _ = case_grid(self.case)
            d = generate_outages(net, grid, self.chunk_size, rng_for(self.seed, "n1", k),
                                 self.level, self.sigma, self.case)
            return {key: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v)
                    for key, v in d.items()}
        return memory_context(self, ctx).artifact(
            "data", k, build, depends_on=("case", "chunk_size", "level", "sigma", "seed"))

    def splits(self, ctx=None) -> dict[str, dict]:
        keys = ("load_p", "load_q", "gen_p", "vm", "va", "outage")
        parts = [self.chunk(k, ctx) for k in range(self._n_chunks())]
        a = {key: torch.cat([p[key] for p in parts]).numpy() for key in keys}
        need = self.n_train + self.n_val + self.n_test
        if len(a["vm"]) < need:
            raise ConfigError(f"only {len(a['vm'])} of the {need} N-1 cases of {self.case} "
                              "were solved; raise 'chunk_size'.")
        cut = np.cumsum([0, self.n_train, self.n_val, self.n_test])
        return {name: {key: a[key][cut[i]:cut[i + 1]] for key in keys}
                for i, name in enumerate(("train", "val", "test"))}

    def features(self, grid, dc, data: dict) -> np.ndarray:
        from theorylab.empirical.power.grid import SLACK
        from theorylab.empirical.power.surrogate import raw
        x, _, _ = raw(grid, data, dc)
        slack = grid.theta_set[grid.bus_type == SLACK][0]
        return np.concatenate([x, data["vm"][..., None], (data["va"] - slack)[..., None]], -1)

    def _fit(self, model: str, seed: int, ctx) -> dict:
        from theorylab.empirical.power.features import N_EDGE_FEATURES, edge_features
        from theorylab.empirical.train import TrainConfig, train
        _, grid, dc = case_grid(self.case)
        sp = self.splits(ctx)
        lines = np.flatnonzero(grid.kind == 0)
        pos = {int(b): i for i, b in enumerate(lines)}
        X = {k: self.features(grid, dc, v) for k, v in sp.items()}
        flat = X["train"].reshape(-1, N_FEATURES)
        mu, sd = flat.mean(0), np.where(flat.std(0) > 1e-12, flat.std(0), 1.0)
        T = {k: torch.from_numpy((v - mu) / sd).float() for k, v in X.items()}
        Y = {k: torch.tensor([pos[int(o)] for o in v["outage"]]) for k, v in sp.items()}
        torch.manual_seed(torch_seed(self.seed, "n1-init", model, seed))
        if model == "gnn":
            ei, e = edge_features(grid)
            e = (e - e.mean(0)) / np.where(e.std(0) > 1e-12, e.std(0), 1.0)
            m = OutageGNN(N_FEATURES, N_EDGE_FEATURES, torch.from_numpy(ei),
                          torch.from_numpy(e).float(), grid.f[lines], grid.t[lines],
                          self.hidden, self.layers)
        else:
            m = OutageMLP(grid.n, N_FEATURES, len(lines), self.mlp_hidden)
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                          device="cpu", seed=torch_seed(self.seed, "n1-order", model, seed),
                          val_mode="max")

        def acc(mm, split):
            with torch.no_grad():
                return float((mm(T[split]).argmax(-1) == Y[split]).float().mean())

        t0 = time.process_time()
        res = train(m, lambda mm, b: nn.functional.cross_entropy(mm(b[0]), b[1]),
                    torch.utils.data.TensorDataset(T["train"], Y["train"]), cfg,
                    val_fn=lambda mm: acc(mm, "val"))
        return {"accuracy": acc(m, "test"), "cpu_seconds": time.process_time() - t0,
                "best_epoch": res.best_epoch}

    def run_unit(self, unit, ctx=None):
        with single_thread():
            if unit["part"] == "data":
                c = self.chunk(int(unit["chunk"]), ctx)
                return [{"record": "n1data", "chunk": int(unit["chunk"]),
                         "n_tried": c["n_tried"], "n_islanded": c["n_islanded"],
                         "n_failed": c["n_failed"], "n_solved": int(len(c["vm"]))}]
            model, seed = unit["model"], int(unit["seed"])
            if model == "dc":
                from theorylab.empirical.power.data import islands
                _, grid, _ = case_grid(self.case)
                test = self.splits(ctx)["test"]
                cand = np.array([b for b in np.flatnonzero(grid.kind == 0)
                                 if not islands(grid, int(b))])
                t0 = time.process_time()
                pred = dc_match(grid, test, cand)
                r = {"accuracy": float((pred == test["outage"]).mean()),
                     "cpu_seconds": time.process_time() - t0, "best_epoch": -1}
            else:
                r = self._fit(model, seed, ctx)
            _, grid, _ = case_grid(self.case)
            return [{"record": "n1", "model": model, "seed": seed, "n_test": self.n_test,
                     "n_lines": int((grid.kind == 0).sum()), **r}]
