"""Driving speed, side by side in one run (Gao et al. survey; GPT-Driver-style planning):

1. simulated policy steps/s (1 step = 1 s of traffic at highway-env's 15 Hz): highway-env through
   gymnasium's ``env.step``, highway-env's road loop alone (``road.act(); road.step()``), and the
   batched simulator, all from the same initial scenes (target: batched >= 100x ``env.step``),
   with the batched simulator's agreement with highway-env beside it (largest position gap);
2. planner decisions/s (batched and one at a time) of the LM planner (constrained greedy decoding,
   with and without the key/value cache), the MLP and constant velocity, against the closed-loop
   requirement of one decision per ego per second (highway-env's policy frequency, 1 Hz); and the
   LM's training throughput (tokens/s).

CPU numbers are this process's CPU seconds on one thread (a shared machine's load does not
inflate them); CUDA numbers are wall seconds. Prints a table and writes
``benchmarks/results/ad.json`` (``ad_quick.json`` with ``--quick``). ``--device cuda
--planner-only`` runs part 2 on a GPU (no highway-env needed).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _torch_bench import (  # benchmarks/_torch_bench.py (run as scripts)
    torch_bench_args,
    write_results,
)

from theorylab.empirical.driving import batched_sim as S
from theorylab.empirical.driving import planner as P
from theorylab.empirical.driving import serialise as T

POLICY_HZ = 1.0   # highway-env's default policy frequency: one decision per ego per second


def _clock(dev):
    return time.perf_counter if dev.type == "cuda" else time.process_time


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def simulator(n_scenes: int, seconds: int, batch: int) -> dict:
    from theorylab.empirical.driving import sim_reference as R
    seeds = range(1000, 1000 + n_scenes)
    scenes = R.initial_scenes("highway", seeds, 3, 20)
    t0 = time.process_time()
    for seed in seeds:
        R.env_steps(R.make_road("highway", seed, 3, 20), seconds)
    gym = n_scenes * seconds / (time.process_time() - t0)
    refs, t0 = [], time.process_time()
    for seed in seeds:
        refs.append(R.rollout(R.make_road("highway", seed, 3, 20), seconds))
    road = n_scenes * seconds / (time.process_time() - t0)
    S.simulate(S.from_scenes(scenes[:2], 3), 2)               # compile the numba kernels
    _, tr = S.simulate(S.from_scenes(scenes, 3), seconds * R.SIM_HZ)
    err = max(float(np.hypot(tr["x"][:, b] - r["x"], tr["y"][:, b] - r["y"]).max())
              for b, r in enumerate(refs))
    many = S.from_scenes([scenes[i % n_scenes] for i in range(batch)], 3)
    t0 = time.process_time()
    S.simulate(many, seconds * R.SIM_HZ)
    batched = batch * seconds / (time.process_time() - t0)
    return {"scenes": n_scenes, "seconds": seconds, "vehicles": 21, "batch": batch,
            "env_step_per_s": gym, "road_loop_per_s": road, "batched_per_s": batched,
            "speedup_vs_env_step": batched / gym, "speedup_vs_road_loop": batched / road,
            "max_position_error_m": err}


def _features(n: int, rng) -> np.ndarray:
    f = np.zeros((n, T.N_FEATURES))
    f[:, 0] = rng.uniform(18, 30, n)
    f[:, 1] = rng.integers(0, 3, n)
    f[:, 4::3] = rng.random((n, 6)) < 0.7
    f[:, 5::3] = rng.uniform(-60, 60, (n, 6))
    f[:, 6::3] = rng.uniform(-5, 5, (n, 6))
    return f


def planners(dev, batch: int, repeats: int, d_model: int, train_steps: int) -> dict:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    lm = P.LMPlanner(d_model, 2, 4).to(dev).eval()
    f = _features(batch, rng)
    clock = _clock(dev)
    rows = []

    def lm_fn(x, cached=True):
        return P.decode(lm, P.prompt_batch(x).to(dev), cached=cached).cpu()

    mlp = P.MLPPlanner(torch.zeros(T.N_FEATURES), torch.ones(T.N_FEATURES)).to(dev).eval()

    def mlp_fn(x):
        with torch.no_grad():
            return mlp(torch.as_tensor(x, dtype=torch.float32, device=dev)).cpu()

    for name, fn in (("lm (cached)", lm_fn), ("lm (uncached)", lambda x: lm_fn(x, False)),
                     ("mlp", mlp_fn), ("cv", lambda x: P.cv_plan(x[:, 0]))):
        fn(f[:2])
        best_b = best_1 = float("inf")
        for _ in range(repeats):
            _sync(dev)
            t0 = clock()
            fn(f)
            _sync(dev)
            best_b = min(best_b, clock() - t0)
            t0 = clock()
            for i in range(8):
                fn(f[i:i + 1])
            _sync(dev)
            best_1 = min(best_1, (clock() - t0) / 8)
        rows.append({"planner": name, "batch": batch, "decisions_per_s": batch / best_b,
                     "single_latency_ms": 1e3 * best_1,
                     "egos_in_real_time": batch / best_b / POLICY_HZ})
    # LM training throughput (tokens/s) on sequences of the real length
    seq = P.sequences(f, rng.uniform(-3, 3, (batch, 3, 2))).to(dev)
    lm.train()
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-3)
    for _ in range(2):
        P.lm_loss(lm, (seq[:64],)).backward()
    _sync(dev)
    t0 = clock()
    for k in range(train_steps):
        opt.zero_grad()
        b = seq[(k * 64) % batch:(k * 64) % batch + 64]
        P.lm_loss(lm, (b,)).backward()
        opt.step()
    _sync(dev)
    tokens = train_steps * 64 * seq.shape[1]
    return {"rows": rows, "lm_d_model": d_model,
            "lm_params": sum(p.numel() for p in lm.parameters()),
            "lm_train_tokens_per_s": tokens / (clock() - t0), "sequence_len": seq.shape[1]}


def main():
    args, dev = torch_bench_args(__doc__, lambda ap: ap.add_argument(
        "--planner-only", action="store_true", help="skip the simulator part"))
    out = {}
    if not args.planner_only:
        sim = simulator(*((4, 3, 256) if args.quick else (8, 10, 1024)))
        out["simulator"] = sim
        print(f"policy steps/s, {sim['scenes']} highway scenes x {sim['seconds']} s, 21 vehicles:")
        print(f"  highway-env env.step   {sim['env_step_per_s']:10.1f}")
        print(f"  highway-env road loop  {sim['road_loop_per_s']:10.1f}")
        print(f"  batched ({sim['batch']} scenes)  {sim['batched_per_s']:10.1f}   "
              f"{sim['speedup_vs_env_step']:.0f}x env.step, {sim['speedup_vs_road_loop']:.0f}x "
              f"road loop (target >= 100x); agreement: largest gap "
              f"{sim['max_position_error_m']:.1e} m")
    pl = planners(dev, *((256, 1, 48, 10) if args.quick else (1024, 3, 64, 40)))
    out["planners"] = pl
    print(f"planner decisions ({dev}; requirement: {POLICY_HZ:g} per ego per second):")
    for r in pl["rows"]:
        print(f"  {r['planner']:14s} batched {r['decisions_per_s']:10.1f}/s   one at a time "
              f"{r['single_latency_ms']:8.2f} ms   egos in real time {r['egos_in_real_time']:.0f}")
    print(f"LM (d={pl['lm_d_model']}, {pl['lm_params']} parameters) training: "
          f"{pl['lm_train_tokens_per_s']:.0f} tokens/s")
    write_results(args, dev, "ad", out)


if __name__ == "__main__":
    main()
