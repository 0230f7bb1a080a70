r"""The power-flow surrogate study: data, training over seeds, scores and speed on one grid.

Units, run by the sweep in this order (the long ones first):

* ``data`` chunks: ``chunk_size`` perturbed cases each (:mod:`.data`), solved by ``pp.runpp``;
  chunk k < n_in is drawn in the training load range ``level``, the rest in ``ood_level`` (held
  out, for generalisation). Each chunk is an artifact; its record counts the non-converged cases
  and checks the AC mismatch against pandapower on every solved case
  (:func:`~theorylab.empirical.power.grid.mismatch_vs_pandapower`).
* ``tdata`` chunks: ``n_transfer`` cases of every grid in ``transfer_cases`` (not seen in
  training), drawn in the training load range, made and checked like the ``data`` chunks.
* ``fit`` (model, seed): the GNN, the MLP and the GNN with the physics loss (``gnn-phys``,
  weight ``physics_weight``; :mod:`.physics`) are trained on the first ``n_train`` in-range cases
  (validation: the next ``n_val``; early stopping restores the best epoch) with their
  initialisation and batch order from the seed, and scored on the next ``n_test`` (``test``) and
  on every out-of-range case (``ood``); DC power flow is scored once (seed 0, no training). The
  data are the same for every seed: a paired design. Seed 0 also records the per-bus test
  errors (record ``bus``: mean |error| of V and θ at every bus), for the error map.
* ``transfer`` (grid, model, seed): every GNN of the fit units, unchanged, on each transfer grid
  (:func:`~theorylab.empirical.power.surrogate.on_grid`: the target's topology and branch
  admittances, the source's feature statistics), and DC power flow there; the MLP cannot run on
  a grid with other buses and is not scored.
* ``speed``: per-case time of ``pp.runpp`` (the same call that made the data) on ``speed_cases``
  test cases, one by one, against the seed-0 GNN and MLP on the whole test set in batches of
  ``infer_batch`` (DC power flow and features included), and their single-case latency, and
  DC power flow alone (the whole test set in one batch, and one case); all on
  one thread, in CPU seconds (the work done, robust on a shared machine) and wall seconds
  (medians of the repeats).

Records: ``data``, ``score`` (model, seed, split — ``test``, ``ood`` or ``transfer:<grid>`` —,
``grid``, ``v_mae``, ``theta_mae``, ``dp_mae``, ``dq_mae``), ``bus`` and ``speed``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from theorylab.constraints import POSITIVE, SEED, Choice, Int, Real, Str, Tuple
from theorylab.empirical.power.features import case_grid
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, torch_seed
from theorylab.study import Study, memory_context
from theorylab.threads import single_thread

__all__ = ["PowerFlowStudy", "MODELS"]

MODELS = ("gnn", "mlp", "gnn-phys")
GNNS = ("gnn", "gnn-phys")   # the models that run on any grid


@dataclass(frozen=True)
class PowerFlowStudy(Study):
    name: ClassVar[str] = "power-flow"
    version: ClassVar[int] = 2
    case: str = "case118"
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 500
    n_ood: int = 200
    chunk_size: int = 250
    level: tuple[float, float] = (0.8, 1.2)
    ood_level: tuple[float, float] = (1.2, 1.3)
    sigma: float = 0.1
    models: tuple[str, ...] = MODELS
    physics_weight: float = 0.1
    transfer_cases: tuple[str, ...] = ("case57", "case30", "case300")
    n_transfer: int = 500
    hidden: int = 64
    layers: int = 6
    mlp_hidden: int = 256
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-3
    n_seeds: int = 5
    speed_cases: int = 50
    infer_batch: int = 64
    seed: int = 0

    constraints: ClassVar = {
        "case": Str(), "n_train": Int(10, 200_000), "n_val": Int(1, 50_000),
        "n_test": Int(1, 50_000), "n_ood": Int(0, 50_000), "chunk_size": Int(1, 10_000),
        "level": Tuple(Real(0, 10, lo_open=True), min_len=2, max_len=2),
        "ood_level": Tuple(Real(0, 10, lo_open=True), min_len=2, max_len=2),
        "sigma": Real(0, 0.9), "models": Tuple(Choice(MODELS), min_len=1, max_len=3),
        "physics_weight": Real(0, 1e6, lo_open=True), "transfer_cases": Tuple(Str(), min_len=0, max_len=8),
        "n_transfer": Int(1, 50_000),
        "hidden": Int(1, 1024), "layers": Int(1, 32), "mlp_hidden": Int(1, 8192),
        "epochs": Int(1, 10_000), "batch_size": Int(1, 65_536), "lr": POSITIVE,
        "n_seeds": Int(1, 100), "speed_cases": Int(1, 10_000), "infer_batch": Int(1, 65_536),
        "seed": SEED,
    }

    def check(self) -> None:
        from theorylab.empirical.power.grid import CASES
        for f in ("level", "ood_level"):
            lo, hi = getattr(self, f)
            if lo > hi:
                raise ConfigError(f"'{f}' of PowerFlowStudy must be (lo, hi) with lo <= hi. "
                                  f"Got {getattr(self, f)}.")
        for field, case in [("case", self.case)] + [("transfer_cases", c)
                                                    for c in self.transfer_cases]:
            if case.endswith(".json"):
                case_grid(case)   # reads and checks the file now: a bad one is a one-line error
            elif case not in CASES:
                raise ConfigError(f"'{field}' of PowerFlowStudy must be one of "
                                  f"{', '.join(CASES)} or a pandapower JSON file ending in "
                                  f".json. Got {case!r}.")
        if self.case in self.transfer_cases:
            raise ConfigError(f"'transfer_cases' of PowerFlowStudy must not contain the training "
                              f"grid 'case'. Got {self.transfer_cases}.")

    def quick(self) -> PowerFlowStudy:
        """The CI size; without ``gnn-phys`` (its three trainings would nearly double the time)
        and with the first transfer grid only."""
        return self.replace(n_train=600, n_val=100, n_test=200, n_ood=100, epochs=30,
                            n_seeds=3, speed_cases=20, n_transfer=200,
                            models=tuple(m for m in self.models if m != "gnn-phys"),
                            transfer_cases=self.transfer_cases[:1])

    # -- layout ---------------------------------------------------------------------------------
    def _chunks(self) -> tuple[int, int]:
        """(chunks in the training range, out-of-range chunks)."""
        n_in = -(-(self.n_train + self.n_val + self.n_test) // self.chunk_size)
        return n_in, -(-self.n_ood // self.chunk_size)

    def units(self) -> list[dict]:
        n_in, n_out = self._chunks()
        fits = [{"part": "fit", "model": m, "seed": r} for r in range(self.n_seeds)
                for m in self.models]   # seed by seed: a partial run has paired seeds
        n_t = -(-self.n_transfer // self.chunk_size)
        tdata = [{"part": "tdata", "case": c, "chunk": k} for c in self.transfer_cases
                 for k in range(n_t)]
        transfer = [{"part": "transfer", "case": c, "model": m, "seed": r}
                    for c in self.transfer_cases for m in self.models if m in GNNS
                    for r in range(self.n_seeds)]
        transfer += [{"part": "transfer", "case": c, "model": "dc", "seed": 0}
                     for c in self.transfer_cases]
        return ([{"part": "data", "chunk": k} for k in range(n_in + n_out)] + tdata + fits
                + [{"part": "fit", "model": "dc", "seed": 0}] + transfer + [{"part": "speed"}])

    # -- stages ---------------------------------------------------------------------------------
    def _build_chunk(self, k: int, transfer: str | None = None) -> dict:
        """Chunk ``k`` of the training grid, or of the transfer grid ``transfer``."""
        from theorylab.empirical.power.data import generate
        from theorylab.empirical.power.grid import mismatch_vs_pandapower
        case = transfer or self.case
        net, grid, _ = case_grid(case)
        n_in, _ = self._chunks()
        level = self.level if (k < n_in or transfer) else self.ood_level
        checks = []
        tag = () if transfer is None else ("transfer", transfer)
        rng_check = rng_for(self.seed, "mismatch", *tag, k)
        size = self.chunk_size if transfer is None else \
            min(self.chunk_size, self.n_transfer - k * self.chunk_size)
        t0 = time.process_time()
        d = generate(net, size, rng_for(self.seed, "data", *tag, k), level=level,
                     sigma=self.sigma, name=case,
                     on_solved=lambda n: checks.append(mismatch_vs_pandapower(grid, n, rng_check)))
        out = {key: torch.from_numpy(v) for key, v in d.items() if isinstance(v, np.ndarray)}
        c = np.asarray(checks).reshape(-1, 2)
        out.update(n_tried=int(d["n_tried"]), n_failed=int(d["n_failed"]), message=d["message"],
                   cpu_seconds=time.process_time() - t0,
                   mismatch_at_solution=float(c[:, 0].max(initial=0.0)),
                   mismatch_gap=float(c[:, 1].max(initial=0.0)))
        return out

    def chunk(self, k: int, ctx=None) -> dict:
        return memory_context(self, ctx).artifact(
            "data", k, lambda: self._build_chunk(k),
            depends_on=("case", "chunk_size", "level", "ood_level", "sigma", "seed", "n_train",
                        "n_val", "n_test"))

    def transfer_chunk(self, case: str, k: int, ctx=None) -> dict:
        return memory_context(self, ctx).artifact(
            "transfer-data", {"case": case, "chunk": k}, lambda: self._build_chunk(k, case),
            depends_on=("chunk_size", "level", "sigma", "seed", "n_transfer"))

    def transfer_split(self, case: str, ctx=None) -> dict:
        """The solved cases of transfer grid ``case`` (converged ones, in chunk order)."""
        keys = ("load_p", "load_q", "gen_p", "vm", "va", "level")
        parts = [self.transfer_chunk(case, k, ctx)
                 for k in range(-(-self.n_transfer // self.chunk_size))]
        return {key: torch.cat([p[key] for p in parts]).numpy() for key in keys}

    def splits(self, ctx=None) -> dict[str, dict]:
        """``train``, ``val``, ``test`` (in range, in chunk order) and ``ood`` sample dicts."""
        n_in, n_out = self._chunks()
        keys = ("load_p", "load_q", "gen_p", "vm", "va", "level")

        def pool(ks):
            parts = [self.chunk(k, ctx) for k in ks]
            return {key: torch.cat([p[key] for p in parts]).numpy() for key in keys}

        a = pool(range(n_in))
        need = self.n_train + self.n_val + self.n_test
        if len(a["vm"]) < need:
            raise ConfigError(f"only {len(a['vm'])} of the {need} cases {self.case} needs in "
                              f"the load range {self.level} converged; lower 'sigma' or the "
                              "level, or raise the sample counts.")
        cut = np.cumsum([0, self.n_train, self.n_val, self.n_test])
        out = {name: {key: a[key][cut[i]:cut[i + 1]] for key in keys}
               for i, name in enumerate(("train", "val", "test"))}
        if n_out:
            b = pool(range(n_in, n_in + n_out))
            out["ood"] = {key: b[key][:self.n_ood] for key in keys}
        return out

    def prepared(self, ctx=None):
        from theorylab.empirical.power import surrogate as S
        _, grid, dc = case_grid(self.case)
        sp = self.splits(ctx)
        norm = S.make_norm(grid, sp["train"], dc)
        return grid, dc, norm, {k: S.prepare(grid, v, dc, norm) for k, v in sp.items()}

    def make_model(self, model: str, grid, norm):
        from theorylab.empirical.power import surrogate as S
        from theorylab.empirical.power.features import N_EDGE_FEATURES, N_NODE_FEATURES
        from theorylab.empirical.power.models import PowerGNN, PowerMLP
        if model in GNNS:
            ei, ea = S.edge_tensors(grid, norm)
            return PowerGNN(N_NODE_FEATURES, N_EDGE_FEATURES, ei, ea, self.hidden, self.layers)
        return PowerMLP(grid.n, N_NODE_FEATURES, self.mlp_hidden)

    def _train(self, model: str, seed: int, ctx=None) -> dict:
        from theorylab.empirical.power import surrogate as S
        from theorylab.empirical.train import TrainConfig
        grid, _, norm, p = self.prepared(ctx)
        torch.manual_seed(torch_seed(self.seed, "init", model, seed))
        m = self.make_model(model, grid, norm)
        cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                          device="cpu", seed=torch_seed(self.seed, "order", model, seed))
        t0 = time.process_time()
        res = S.fit(m, grid, p["train"], p["val"], norm, cfg,
                    physics_weight=self.physics_weight if model == "gnn-phys" else 0.0)
        return {"state": m.state_dict(), "cpu_seconds": time.process_time() - t0,
                "best_epoch": res.best_epoch, "best_val": res.best_val,
                "epochs_run": len(res.train_loss)}

    def trained(self, model: str, seed: int, ctx=None):
        """(the trained module, its training record): an artifact per (model, seed)."""
        art = memory_context(self, ctx).artifact(
            "model", {"model": model, "seed": seed}, lambda: self._train(model, seed, ctx),
            depends_on=("case", "chunk_size", "level", "ood_level", "sigma", "seed", "n_train",
                        "n_val", "n_test", "hidden", "layers", "mlp_hidden", "epochs",
                        "batch_size", "lr", "physics_weight"))
        grid, _, norm, _ = self.prepared(ctx)
        m = self.make_model(model, grid, norm)
        m.load_state_dict(art["state"])
        m.eval()
        return m, art

    # -- units ----------------------------------------------------------------------------------
    def run_unit(self, unit, ctx=None):
        with single_thread():
            if unit["part"] == "data":
                return self._data_unit(int(unit["chunk"]), ctx)
            if unit["part"] == "tdata":
                return self._data_unit(int(unit["chunk"]), ctx, unit["case"])
            if unit["part"] == "fit":
                return self._fit_unit(unit["model"], int(unit["seed"]), ctx)
            if unit["part"] == "transfer":
                return self._transfer_unit(unit["case"], unit["model"], int(unit["seed"]), ctx)
            return self._speed_unit(ctx)

    def _data_unit(self, k: int, ctx, transfer: str | None = None) -> list[dict]:
        c = self.chunk(k, ctx) if transfer is None else self.transfer_chunk(transfer, k, ctx)
        n_in, _ = self._chunks()
        split = f"transfer:{transfer}" if transfer else ("in" if k < n_in else "ood")
        return [{"record": "data", "chunk": k, "split": split, "grid": transfer or self.case,
                 "n_tried": c["n_tried"], "n_failed": c["n_failed"],
                 "n_solved": int(len(c["vm"])), "message": c["message"],
                 "cpu_seconds": float(c["cpu_seconds"]),
                 "mismatch_at_solution": c["mismatch_at_solution"],
                 "mismatch_gap": c["mismatch_gap"]}]

    def _fit_unit(self, model: str, seed: int, ctx) -> list[dict]:
        from theorylab.empirical.power import surrogate as S
        grid, _, norm, p = self.prepared(ctx)
        info = {"cpu_seconds": 0.0, "best_epoch": -1, "epochs_run": 0}
        if model != "dc":
            m, art = self.trained(model, seed, ctx)
            info = {k: art[k] for k in info}
        rows = []
        for split in [s for s in ("test", "ood") if s in p]:
            if model == "dc":
                vm, va = p[split].dc_vm, p[split].dc_va
            else:
                vm, va = S.predict(m, grid, p[split], norm)
            rows.append({"record": "score", "model": model, "seed": seed, "split": split,
                         "grid": self.case, "n": len(p[split]),
                         **S.scores(grid, p[split], vm, va),
                         "train_cpu_seconds": float(info["cpu_seconds"]),
                         "best_epoch": int(info["best_epoch"]),
                         "epochs_run": int(info["epochs_run"])})
            if seed == 0 and split == "test":
                rows += _bus_rows(grid, p[split], vm, va, model)
        return rows

    def _transfer_unit(self, case: str, model: str, seed: int, ctx) -> list[dict]:
        from theorylab.empirical.power import surrogate as S
        _, _, norm, _ = self.prepared(ctx)
        _, grid, dc = case_grid(case)
        p = S.prepare(grid, self.transfer_split(case, ctx), dc, norm)
        if model == "dc":
            vm, va = p.dc_vm, p.dc_va
        else:
            m, _ = self.trained(model, seed, ctx)
            vm, va = S.predict(S.on_grid(m, grid, norm), grid, p, norm)
        return [{"record": "score", "model": model, "seed": seed, "split": f"transfer:{case}",
                 "grid": case, "n": len(p), **S.scores(grid, p, vm, va)}]

    def _speed_unit(self, ctx) -> list[dict]:
        from theorylab.empirical.power import surrogate as S
        from theorylab.empirical.power.data import case_solver
        net, grid, dc = case_grid(self.case)
        test = self.splits(ctx)["test"]
        _, _, norm, _ = self.prepared(ctx)
        run = case_solver(net)   # warmed: pandapower compiles its numba kernels on the first call
        k = min(self.speed_cases, len(test["vm"]))
        wall, cpu = [], []
        for i in range(k):
            w, c = _timed(lambda i=i: run(test, i))
            wall.append(w)
            cpu.append(c)
        runpp_wall, runpp_cpu = statistics.median(wall), statistics.median(cpu)
        n = len(test["vm"])
        one = {key: v[:1] for key, v in test.items()}
        rows = []
        from theorylab.empirical.power.grid import specified

        def dc_flow(data):
            """DC power flow alone (the baseline), all cases in one batch."""
            s = specified(grid, data["load_p"], data["load_q"], data["gen_p"])
            return dc.vm(len(s)), dc.theta(s.real)

        # gnn-phys has the gnn's architecture, hence its cost
        for model in [m for m in self.models if m != "gnn-phys"] + ["dc"]:
            m = None if model == "dc" else self.trained(model, 0, ctx)[0]

            def infer(data, m=m):
                """DC power flow, features and the model, ``infer_batch`` cases at a time."""
                if m is None:
                    return dc_flow(data)
                with torch.no_grad():
                    p = S.prepare(grid, data, dc, norm)
                    out = torch.cat([m(p.x[i:i + self.infer_batch])
                                     for i in range(0, len(p), self.infer_batch)])
                    return S.compose(grid, p.dc_vm, p.dc_va, out.double().numpy(), norm)

            infer(test)
            batched = [_timed(lambda f=infer: f(test)) for _ in range(3)]
            single = [_timed(lambda f=infer: f(one)) for _ in range(20)]
            b_wall, b_cpu = (statistics.median(x) / n for x in zip(*batched, strict=True))
            s_wall, s_cpu = (statistics.median(x) for x in zip(*single, strict=True))
            rows.append({"record": "speed", "model": model, "batch_size": self.infer_batch,
                         "cases": n, "runpp_cases": k, "threads": 1,
                         "runpp_cpu_s": runpp_cpu, "runpp_wall_s": runpp_wall,
                         "batched_cpu_s": b_cpu, "batched_wall_s": b_wall,
                         "single_cpu_s": s_cpu, "single_wall_s": s_wall,
                         "speedup_batched": runpp_cpu / b_cpu,
                         "speedup_batched_wall": runpp_wall / b_wall,
                         "speedup_single": runpp_cpu / s_cpu})
        return rows


def _bus_rows(grid, p, vm, va, model: str) -> list[dict]:
    """Per-bus mean |error| of V and θ over a split (0 where the quantity is a set-point)."""
    ev, et = np.abs(vm - p.vm).mean(axis=0), np.abs(va - p.va).mean(axis=0)
    return [{"record": "bus", "model": model, "bus": i, "bus_type": int(grid.bus_type[i]),
             "v_err": float(ev[i]), "theta_err": float(et[i])} for i in range(grid.n)]


def _timed(fn) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c
