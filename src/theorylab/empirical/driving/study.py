r"""The driving study: expert data from the batched simulator, LM / MLP / constant-velocity
planners open and closed loop, scenario generation, and the check against highway-env.

Stages (artifacts, shared by the units and by reruns):

* ``scenes``: the initial scenes of highway-env's ``highway`` (``lanes`` lanes, ``vehicles``
  other vehicles, the ego first), one ``reset(seed)`` per scene; the first ``n_train_scenes``
  train, the next ``n_test_scenes`` test.
* ``expert``: every scene driven by the expert (all vehicles IDM + MOBIL) for ``episode_s``
  seconds in the batched simulator (:mod:`.batched_sim`); (scene, ego future) pairs at every
  whole second (:func:`.planner.expert_pairs`) and the scenes at ``gen_times`` for scenario
  generation. A recorded data set (``data``, :func:`.sim_reference.save_dataset`) replaces the
  training pairs.
* ``model`` (kind, seed): the LM planner, the MLP, or the scene generator, trained with the one
  loop (:func:`theorylab.empirical.train.train`), initialisation and batch order from the seed;
  the data are the same for every seed (a paired design).

Units and their records:

* ``check``: ``n_check`` test scenes run ``check_s`` seconds by highway-env itself and by the
  batched simulator; ``agreement`` (largest position and speed difference, lane changes seen).
* ``fit`` (model, seed): open-loop L2 at 1/2/3 s on the test pairs, ``openloop`` (model, seed,
  horizon, l2); constant velocity once.
* ``closed`` (model, seed): the first ``n_closed`` test scenes for ``closed_s`` seconds with the
  ego driven by the planner (replanning at highway-env's policy frequency, 1 Hz) and the other
  vehicles by the expert, all in the batched simulator; ``closed`` (collisions, episodes,
  progress, planning CPU seconds per decision) and ``traj`` (scene 0, ego and neighbours).
* ``scenegen`` (seed): a generator fit to the training scenes; ``realism`` (source, feature,
  normalised W1 to the held-out test scenes) for the generated scenes, the shuffled-marginals
  baseline and a second simulator sample (the noise floor), and ``critical`` (source,
  collisions, near misses, scenes) of the expert started from each. The generated scenes are
  drawn truncated to the training support (``gen_support="train"``,
  :func:`.scenegen.sample`); source ``generated_untruncated`` is the same generator and noise
  seed drawn without truncation, the setting before 2026-12-01 (its verdicts stay registered).
  ``gen_support`` changes only this unit: every trained model is an artifact scoped to the
  fields it depends on, so the other units recompute from stored models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from theorylab.constraints import POSITIVE, SEED, Choice, Int, Str, Tuple
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, seed_for, torch_generator, torch_seed
from theorylab.study import Study, memory_context
from theorylab.threads import single_thread

__all__ = ["DrivingStudy", "PLANNERS"]

PLANNERS = ("lm", "mlp")
TRAJ_VEHICLES = 8          # scene-0 vehicles kept for the figure (the ego and the 7 nearest)


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


@dataclass(frozen=True)
class DrivingStudy(Study):
    name: ClassVar[str] = "ad-driving"
    version: ClassVar[int] = 2     # 2: the generator's training contexts one-hot the right lane
    scenario: str = "highway"
    lanes: int = 3
    vehicles: int = 20
    n_train_scenes: int = 1500
    n_test_scenes: int = 300
    episode_s: int = 20            # expert episode horizon (s)
    data: str = ""                 # a recorded data set (.npz) to train the planners on
    models: tuple[str, ...] = PLANNERS
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    mlp_hidden: int = 128
    mlp_epochs: int = 40
    n_seeds: int = 5
    n_closed: int = 300
    closed_s: int = 20
    gen_times: tuple[int, ...] = (5, 10, 15)
    gen_hidden: int = 64
    gen_epochs: int = 20
    gen_support: str = "train"     # sampled scenes truncated to the training support, or "none"
    crit_s: int = 10
    n_check: int = 4
    check_s: int = 8
    seed: int = 0

    constraints: ClassVar = {
        "scenario": Str(), "lanes": Int(2, 6), "vehicles": Int(1, 60),
        "n_train_scenes": Int(10, 100_000), "n_test_scenes": Int(2, 100_000),
        "episode_s": Int(4, 600), "data": Str(),
        "models": Tuple(Choice(PLANNERS), min_len=1, max_len=2),
        "d_model": Int(8, 1024), "n_layers": Int(1, 16), "n_heads": Int(1, 16),
        "epochs": Int(1, 1000), "batch_size": Int(1, 65_536), "lr": POSITIVE,
        "mlp_hidden": Int(1, 8192), "mlp_epochs": Int(1, 10_000), "n_seeds": Int(1, 100),
        "n_closed": Int(1, 100_000), "closed_s": Int(1, 600),
        "gen_times": Tuple(Int(0, 600), min_len=1, max_len=20), "gen_hidden": Int(1, 4096),
        "gen_epochs": Int(1, 10_000), "gen_support": Choice(("train", "none")), "crit_s": Int(1, 600), "n_check": Int(1, 1000),
        "check_s": Int(1, 600), "seed": SEED,
    }

    def check(self) -> None:
        from theorylab.empirical.driving.sim_reference import check_scenario, load_dataset
        check_scenario(self.scenario)
        if self.scenario != "highway":
            raise ConfigError(f"'scenario' of DrivingStudy must be 'highway' (the batched "
                              f"simulator covers straight lanes only). Got {self.scenario!r}.")
        if self.d_model % self.n_heads:
            raise ConfigError(f"'d_model' of DrivingStudy must be a multiple of 'n_heads' "
                              f"({self.n_heads}). Got {self.d_model}.")
        if max(self.gen_times) > self.episode_s:
            raise ConfigError(f"'gen_times' of DrivingStudy must lie within 'episode_s' "
                              f"({self.episode_s}). Got {self.gen_times}.")
        for f in ("n_closed", "n_check"):
            if getattr(self, f) > self.n_test_scenes:
                raise ConfigError(f"'{f}' of DrivingStudy must be <= 'n_test_scenes' "
                                  f"({self.n_test_scenes}). Got {getattr(self, f)}.")
        if self.data:
            load_dataset(self.data)    # a malformed file is a one-line error now

    def quick(self) -> DrivingStudy:
        return self.replace(n_train_scenes=300, n_test_scenes=100, d_model=48, epochs=5,
                            mlp_epochs=30, n_seeds=3, n_closed=100, gen_epochs=15, n_check=3)

    # -- layout ---------------------------------------------------------------------------------
    def units(self) -> list[dict]:
        fits = [{"part": "fit", "model": m, "seed": r} for m in self.models
                for r in range(self.n_seeds)]
        closed = [{"part": "closed", "model": m, "seed": r} for m in self.models
                  for r in range(self.n_seeds)]
        return (fits + closed + [{"part": "scenegen", "seed": r} for r in range(self.n_seeds)]
                + [{"part": "fit", "model": "cv", "seed": 0},
                   {"part": "closed", "model": "expert", "seed": 0},
                   {"part": "closed", "model": "cv", "seed": 0}, {"part": "check"}])

    # -- stages ---------------------------------------------------------------------------------
    _SCENE_FIELDS = ("scenario", "lanes", "vehicles", "n_train_scenes", "n_test_scenes", "seed")

    def scenes(self, ctx=None) -> list[dict]:
        def build():
            from theorylab.empirical.driving.sim_reference import initial_scenes
            n = self.n_train_scenes + self.n_test_scenes
            seeds = [seed_for(self.seed, "scene", i) for i in range(n)]
            sc = initial_scenes(self.scenario, seeds, self.lanes, self.vehicles)
            return {"scenes": [{k: _t(v) for k, v in s.items()} for s in sc]}
        art = memory_context(self, ctx).artifact("scenes", 0, build,
                                                 depends_on=self._SCENE_FIELDS)
        return [{k: v.numpy() for k, v in s.items()} for s in art["scenes"]]

    def split_state(self, split: str, ctx=None, n: int | None = None):
        from theorylab.empirical.driving import batched_sim as S
        sc = self.scenes(ctx)
        part = sc[:self.n_train_scenes] if split == "train" else sc[self.n_train_scenes:]
        return S.from_scenes(part[:n] if n is not None else part, self.lanes)

    def _build_expert(self, ctx) -> dict:
        from theorylab.empirical.driving import batched_sim as S
        from theorylab.empirical.driving import planner as P
        from theorylab.empirical.driving import scenegen as G
        from theorylab.empirical.driving.sim_reference import SIM_HZ
        out = {}
        t0 = time.process_time()
        for split in ("train", "test"):
            s = self.split_state(split, ctx)
            _, tr = S.simulate(s, self.episode_s * SIM_HZ, every=SIM_HZ)
            pairs = P.expert_pairs(tr, s.present, self.lanes)
            out.update({f"{split}.{k}": _t(v) for k, v in pairs.items()})
            att = np.concatenate([G.attributes(tr["x"][t], tr["y"][t], tr["speed"][t],
                                               s.target_speed, self.lanes)
                                  for t in self.gen_times])
            out[f"{split}.scenes"] = _t(att)
            out[f"{split}.episode_collisions"] = int(tr["crashed"][-1].any(axis=1).sum())
        out["cpu_seconds"] = time.process_time() - t0
        return out

    def expert(self, ctx=None) -> dict:
        art = memory_context(self, ctx).artifact(
            "expert", 0, lambda: self._build_expert(ctx),
            depends_on=self._SCENE_FIELDS + ("episode_s", "gen_times"))
        out = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in art.items()}
        if self.data:
            from theorylab.empirical.driving.planner import cv_plan
            from theorylab.empirical.driving.sim_reference import load_dataset
            d = load_dataset(self.data)
            out.update({f"train.{k}": v for k, v in d.items()})
            out["train.residual"] = d["future"] - cv_plan(d["speed"])
        return out

    _MODEL_FIELDS = _SCENE_FIELDS + ("episode_s", "data", "gen_times")

    def _train(self, kind: str, seed: int, ctx) -> dict:
        from theorylab.empirical.driving import planner as P
        from theorylab.empirical.train import TrainConfig, train
        e = self.expert(ctx)
        order = torch_seed(self.seed, "order", kind, seed)
        torch.manual_seed(torch_seed(self.seed, "init", kind, seed))
        t0 = time.process_time()
        if kind == "lm":
            m = P.LMPlanner(self.d_model, self.n_layers, self.n_heads)
            data = torch.utils.data.TensorDataset(P.sequences(e["train.features"],
                                                              e["train.residual"]))
            cfg = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                              device="cpu", seed=order)
            res = train(m, P.lm_loss, data, cfg)
        elif kind == "mlp":
            f = torch.tensor(e["train.features"], dtype=torch.float32)
            r = torch.tensor(e["train.residual"], dtype=torch.float32)
            m = P.MLPPlanner(f.mean(0), f.std(0) + 1e-6, self.mlp_hidden)
            cfg = TrainConfig(epochs=self.mlp_epochs, batch_size=self.batch_size, lr=self.lr,
                              device="cpu", seed=order)
            res = train(m, lambda m, b: ((m(b[0]) - b[1]) ** 2).sum((1, 2)).mean(),
                        torch.utils.data.TensorDataset(f, r), cfg)
        else:   # the scene generator
            from theorylab.empirical.driving import scenegen as G
            cfg = TrainConfig(epochs=self.gen_epochs, batch_size=256, lr=self.lr,
                              device="cpu", seed=order)
            m = G.fit(e["train.scenes"], self.lanes, cfg, torch_seed(self.seed, "init", kind, seed),
                      self.gen_hidden)
            res = None
        return {"state": m.state_dict(), "cpu_seconds": time.process_time() - t0,
                "final_loss": float(res.train_loss[-1]) if res is not None else float("nan")}

    def trained(self, kind: str, seed: int, ctx=None):
        """(the trained module, its record): an artifact per (kind, seed)."""
        from theorylab.empirical.driving import planner as P
        from theorylab.empirical.driving import scenegen as G
        deps = {"lm": ("d_model", "n_layers", "n_heads", "epochs", "batch_size", "lr"),
                "mlp": ("mlp_hidden", "mlp_epochs", "batch_size", "lr"),
                "gen": ("gen_hidden", "gen_epochs", "lr")}[kind]
        art = memory_context(self, ctx).artifact(
            "model", {"kind": kind, "seed": seed}, lambda: self._train(kind, seed, ctx),
            depends_on=self._MODEL_FIELDS + deps)
        if kind == "lm":
            m = P.LMPlanner(self.d_model, self.n_layers, self.n_heads)
        elif kind == "mlp":
            n = len(art["state"]["mean"])
            m = P.MLPPlanner(torch.zeros(n), torch.ones(n), self.mlp_hidden)
        else:
            m = G.SceneGenerator(self.lanes, self.gen_hidden)
        m.load_state_dict(art["state"])
        m.eval()
        return m, art

    def plan_fn(self, model: str, seed: int, ctx=None):
        """features (B, F) → waypoints (B, K, 2) of a planner ('cv', 'mlp', 'lm')."""
        from theorylab.empirical.driving import planner as P
        if model == "cv":
            return lambda f: P.cv_plan(f[:, 0])
        m, _ = self.trained(model, seed, ctx)
        return (lambda f: P.lm_plan(m, f)) if model == "lm" else (lambda f: P.mlp_plan(m, f))

    # -- units ----------------------------------------------------------------------------------
    def run_unit(self, unit, ctx=None):
        with single_thread():
            part = unit["part"]
            if part == "check":
                return self._check_unit(ctx)
            if part == "fit":
                return self._fit_unit(unit["model"], int(unit["seed"]), ctx)
            if part == "closed":
                return self._closed_unit(unit["model"], int(unit["seed"]), ctx)
            return self._scenegen_unit(int(unit["seed"]), ctx)

    def _check_unit(self, ctx) -> list[dict]:
        from theorylab.empirical.driving import batched_sim as S
        from theorylab.empirical.driving import sim_reference as R
        sc = self.scenes(ctx)[self.n_train_scenes:self.n_train_scenes + self.n_check]
        seeds = [seed_for(self.seed, "scene", self.n_train_scenes + i)
                 for i in range(self.n_check)]
        t0 = time.process_time()
        refs = []
        for seed in seeds:
            env = R.make_road(self.scenario, seed, self.lanes, self.vehicles)
            refs.append(R.rollout(env, self.check_s))
        ref_cpu = time.process_time() - t0
        t0 = time.process_time()
        _, tr = S.simulate(S.from_scenes(sc, self.lanes), self.check_s * R.SIM_HZ)
        sim_cpu = time.process_time() - t0
        pos = max(float(np.hypot(tr["x"][:, b] - r["x"], tr["y"][:, b] - r["y"]).max())
                  for b, r in enumerate(refs))
        spd = max(float(np.abs(tr["speed"][:, b] - r["speed"]).max()) for b, r in enumerate(refs))
        crash = sum(int((tr["crashed"][:, b] != r["crashed"]).sum()) for b, r in enumerate(refs))
        changes = sum(int((np.abs(r["y"][-1] - r["y"][0]) > 2).sum()) for r in refs)
        return [{"record": "agreement", "scenes": self.n_check, "seconds": self.check_s,
                 "vehicle_steps": int(sum(r["x"].size for r in refs)),
                 "max_position_error_m": pos, "max_speed_error": spd,
                 "crash_flag_mismatches": crash, "lane_changes": changes,
                 "highway_env_cpu_s": ref_cpu, "batched_cpu_s": sim_cpu}]

    def _fit_unit(self, model: str, seed: int, ctx) -> list[dict]:
        from theorylab.empirical.driving import planner as P
        e = self.expert(ctx)
        f, fut = e["test.features"], e["test.future"]
        info = {"train_cpu_seconds": 0.0, "final_loss": float("nan")}
        if model != "cv":
            _, art = self.trained(model, seed, ctx)
            info = {"train_cpu_seconds": float(art["cpu_seconds"]),
                    "final_loss": float(art["final_loss"])}
        t0 = time.process_time()
        pred = self.plan_fn(model, seed, ctx)(f)
        cpu = time.process_time() - t0
        l2 = P.l2_at(pred, fut)
        return [{"record": "openloop", "model": model, "seed": seed, "horizon": h,
                 "l2": float(v), "n": len(f), "n_train": len(e["train.features"]),
                 "plan_cpu_per_decision": cpu / len(f), **info}
                for h, v in zip(P.HORIZONS, l2, strict=True)]

    def _closed_unit(self, model: str, seed: int, ctx) -> list[dict]:
        from theorylab.empirical.driving import planner as P
        s = self.split_state("test", ctx, self.n_closed)
        fn = None if model == "expert" else self.plan_fn(model, seed, ctx)
        tr, cpu, decisions = P.closed_loop(s, fn, self.closed_s)
        crashed = tr["crashed"][-1, :, 0]
        progress = tr["x"][-1, :, 0] - tr["x"][0, :, 0]
        rows = [{"record": "closed", "model": model, "seed": seed, "episodes": len(crashed),
                 "collisions": int(crashed.sum()), "collision_rate": float(crashed.mean()),
                 "progress_m": float(progress.mean()), "seconds": self.closed_s,
                 "others_collisions": int(tr["crashed"][-1, :, 1:].any(axis=1).sum()),
                 "plan_cpu_per_decision": cpu / decisions if decisions else float("nan")}]
        if seed == 0:   # scene 0 for the figure: the ego and its nearest vehicles
            near = np.argsort(np.abs(tr["x"][0, 0] - tr["x"][0, 0, 0]))[:TRAJ_VEHICLES]
            for k in range(tr["x"].shape[0]):
                for v in near:
                    rows.append({"record": "traj", "model": model, "seed": seed, "step": k,
                                 "t": k * 5 / 15, "vehicle": int(v),
                                 "x": float(tr["x"][k, 0, v]), "y": float(tr["y"][k, 0, v]),
                                 "crashed": bool(tr["crashed"][k, 0, v])})
        return rows

    def _scenegen_unit(self, seed: int, ctx) -> list[dict]:
        from theorylab.empirical.driving import scenegen as G
        e = self.expert(ctx)
        train_a, test_a = e["train.scenes"], e["test.scenes"]
        m, art = self.trained("gen", seed, ctx)
        n, N = test_a.shape[:2]
        box = G.support(train_a) if self.gen_support == "train" else None
        sources = {
            "generated": G.sample(m, n, N, torch_generator(self.seed, "sample", seed), box),
            "generated_untruncated": G.sample(m, n, N, torch_generator(self.seed, "sample", seed)),
            "shuffled": G.shuffled(train_a, rng_for(self.seed, "shuffle", seed))[:n],
            "simulator": train_a[rng_for(self.seed, "pick", seed).choice(len(train_a), n,
                                                                           replace=False)],
        }
        rows = []
        for src, a in sources.items():
            for feat, w in G.realism(a, test_a, self.lanes).items():
                rows.append({"record": "realism", "seed": seed, "source": src, "feature": feat,
                             "w1": w})
        crit_sources = {"simulator": test_a, "generated": sources["generated"],
                        "shuffled": sources["shuffled"],
                        "generated_untruncated": sources["generated_untruncated"]}
        for src, a in crit_sources.items():
            # both generated forms take the same lane-change timers (the earlier runs' stream)
            key = "generated" if src.startswith("generated") else src
            c = G.criticality(a, self.lanes, self.crit_s, rng_for(self.seed, "crit", key, seed))
            rows.append({"record": "critical", "seed": seed, "source": src, "scenes": len(a),
                         "collisions": int(c["collision"].sum()),
                         "near_misses": int(c["near_miss"].sum()),
                         "gen_cpu_seconds": float(art["cpu_seconds"])})
        return rows
