"""train(): val_mode, TrainingDivergedError, atomic checkpoints, the data-parallel path."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from tqdm.auto import tqdm

import theorylab
from support.ddp import SCENARIOS, data, fit, mse, nan_on_rank1, rank_scenarios
from theorylab.empirical.distributed import launch, shard_bounds
from theorylab.empirical.train import TrainConfig, train
from theorylab.errors import ConfigError, InputError, TrainingDivergedError


def _same(m1, m2):
    return all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))


def test_default_path_equals_a_plain_adamw_loop():
    """The single-process path is exactly DataLoader + AdamW + clipping (nothing added)."""
    model, res = fit(n=30, batch_size=8, epochs=3, seed=5)
    torch.manual_seed(123)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(5)
    opt = torch.optim.AdamW(ref.parameters(), lr=3e-2, weight_decay=0.0)
    for _ in range(3):
        # tqdm.auto opens one extra iterator per epoch (one draw of g), so the reference does too
        loader = torch.utils.data.DataLoader(data(30), batch_size=8, shuffle=True, generator=g)
        for b in tqdm(loader, disable=True):
            loss = mse(ref, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
            opt.step()
    assert res.steps == 12 and _same(model, ref)


# --- val_mode ---------------------------------------------------------------------------------

def _fit_scores(scores, epochs=None, **kw):
    """Train with a scripted val_fn; return result and the weights seen at each validation."""
    seen, it = [], iter(scores)

    def val_fn(m):
        seen.append([p.detach().clone() for p in m.parameters()])
        return next(it)

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    res = train(model, mse, data(16), TrainConfig(epochs=epochs or len(scores), batch_size=8, **kw),
                val_fn=val_fn)
    return model, res, seen


def test_val_mode_max_tracks_the_largest_score_and_restores_its_weights():
    scores = [-5.0, -2.0, -3.0, -4.0, -1.0]  # all negative: a +inf start would never improve
    model, res, seen = _fit_scores(scores, val_mode="max", patience=2)
    assert res.stopped_early and res.val == scores[:4]
    assert (res.best_epoch, res.best_val) == (1, -2.0)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), seen[1], strict=True))
    _, res_min, _ = _fit_scores(scores, patience=2)  # the default "min" reads them the other way
    assert (res_min.best_epoch, res_min.best_val, res_min.stopped_early) == (0, -5.0, True)


def test_val_mode_and_distributed_are_validated():
    with pytest.raises(ConfigError, match=r"^'val_mode' of TrainConfig must be one of 'min', "
                                          r"'max'. Got 'maximise'.$"):
        TrainConfig(val_mode="maximise")
    with pytest.raises(ConfigError, match=r"'distributed' of TrainConfig must be a bool \(true "
                                          r"or false\). Got 1."):
        TrainConfig(distributed=1)
    with pytest.raises(ConfigError, match="torch.distributed is not initialised"):
        fit(distributed=True)


def test_resuming_with_another_val_mode_is_refused(tmp_path):
    fit(epochs=1, checkpoint=str(tmp_path / "ck.pt"))
    with pytest.raises(ConfigError, match="written with val_mode 'min'; resume it with the same"):
        fit(epochs=2, checkpoint=str(tmp_path / "ck.pt"), val_mode="max")


# --- divergence -------------------------------------------------------------------------------

def test_nonfinite_loss_raises_diverged_and_keeps_the_last_checkpoint(tmp_path):
    ck = tmp_path / "ck.pt"
    calls = []

    def loss_fn(m, b):  # 4 steps per epoch; the 6th step (epoch 2) blows up
        calls.append(1)
        return mse(m, b) * (float("inf") if len(calls) == 6 else 1.0)

    with pytest.raises(TrainingDivergedError) as info:
        fit(loss_fn=loss_fn, epochs=3, checkpoint=str(ck), lr=0.5)
    err = info.value
    assert not isinstance(err, (InputError, ValueError))
    msg = str(err)
    assert "\n" not in msg and "at step 6 (epoch 2 of 3)" in msg and "lower 'lr' (now 0.5)" in msg
    assert str(ck) in msg and (err.step, err.epoch) == (6, 2)
    assert len(err.result.train_loss) == 1 and err.result.steps == 5   # the history so far
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 0 and state["steps"] == 4


# --- checkpoints ------------------------------------------------------------------------------

def test_resume_after_interruption_is_bit_identical(tmp_path):
    ck = str(tmp_path / "ck.pt")
    fit(epochs=2, checkpoint=ck)
    m_res, r_res = fit(epochs=5, checkpoint=ck)
    m_full, r_full = fit(epochs=5)
    assert r_res.train_loss == r_full.train_loss and r_res.val == r_full.val
    assert r_res.steps == r_full.steps == 20 and _same(m_res, m_full)


def _tmp_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


def test_a_failed_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    ck = tmp_path / "ck.pt"
    fit(epochs=2, checkpoint=str(ck))
    before = ck.read_bytes()

    def broken_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fit(epochs=4, checkpoint=str(ck))
    monkeypatch.undo()
    assert ck.read_bytes() == before and _tmp_files(tmp_path) == []
    m_res, r_res = fit(epochs=4, checkpoint=str(ck))
    m_full, r_full = fit(epochs=4)
    assert r_res.train_loss == r_full.train_loss and _same(m_res, m_full)


_KILLED_WRITER = """
import io, sys, time, torch
sys.path.insert(0, {tests!r})
from support.ddp import fit
real = torch.save
def slow_save(obj, fh):          # write half the checkpoint, then hang until SIGKILLed
    buf = io.BytesIO(); real(obj, buf)
    fh.write(buf.getvalue()[: len(buf.getvalue()) // 2]); fh.flush()
    open({marker!r}, "w").close(); time.sleep(120)
torch.save = slow_save
fit(epochs=4, checkpoint={ck!r})
"""


def test_sigkill_during_a_checkpoint_write_then_resume(tmp_path):
    ck, marker = tmp_path / "ck.pt", tmp_path / "writing"
    fit(epochs=2, checkpoint=str(ck))
    before = ck.read_bytes()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(theorylab.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    code = _KILLED_WRITER.format(tests=str(Path(__file__).parent), marker=str(marker), ck=str(ck))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the writer never reached the checkpoint"
            time.sleep(0.05)
        assert len(_tmp_files(tmp_path)) == 1        # mid-write: the temp file is there
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert ck.read_bytes() == before
    assert torch.load(ck, weights_only=True)["epoch"] == 1
    m_res, r_res = fit(epochs=4, checkpoint=str(ck))
    m_full, r_full = fit(epochs=4)
    assert r_res.train_loss == r_full.train_loss and _same(m_res, m_full)


# --- data parallel ----------------------------------------------------------------------------

@given(st.integers(0, 200), st.integers(1, 9))
def test_shard_bounds_cut_contiguous_near_equal_shares(n, world):
    b = shard_bounds(n, world)
    sizes = [hi - lo for lo, hi in zip(b, b[1:], strict=False)]
    assert b[0] == 0 and b[-1] == n and len(sizes) == world
    assert min(sizes) >= 0 and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def _close(a, b, tol=1e-6):
    return all(torch.allclose(x, y, rtol=0, atol=tol) for x, y in zip(a, b, strict=True))


def test_two_rank_ddp_equals_single_process_training(tmp_path):
    """2 gloo ranks on loopback vs one process, same data and seeds: parameters to 1e-6, also
    for a global batch of 5 over 2 ranks (last batch 1: an empty share), val_mode max with
    early stopping, and a checkpointed run resumed under DDP."""
    t0 = time.perf_counter()
    ranks = launch(rank_scenarios, 2, str(tmp_path))
    ddp_seconds = time.perf_counter() - t0
    for name, kw in SCENARIOS.items():
        model, res = fit(**kw)
        single = [p.detach() for p in model.parameters()]
        for out in ranks:
            got = out[name]
            assert _close(got["params"], single), name
            assert got["steps"] == res.steps and got["examples"] == res.examples
            assert got["best_epoch"] == res.best_epoch
            assert got["train_loss"] == pytest.approx(res.train_loss, rel=1e-6, abs=1e-9)
            # rank 1's val_fn is off by 0.5: rank 0's score is the one every rank records
            assert got["val"] == pytest.approx(res.val, rel=1e-6, abs=1e-9)
    full = [p.detach() for p in fit(epochs=4)[0].parameters()]
    assert all(_close(out["resumed"]["params"], full) for out in ranks)
    assert ranks[0]["writes"] == [0] * 4 and ranks[1]["writes"] == []  # rank 0 alone wrote
    assert ddp_seconds < 60


def test_ddp_nan_on_one_rank_raises_on_every_rank_without_hanging():
    t0 = time.perf_counter()
    with pytest.raises(TrainingDivergedError, match=r"^rank 0: training diverged: the loss is "
                                                    r"nan at step 3 \(epoch 1 of 3\)"):
        launch(nan_on_rank1, 2, timeout_s=60)
    assert time.perf_counter() - t0 < 60


def test_launch_rejects_bad_arguments_before_spawning():
    with pytest.raises(ConfigError, match=r"^'world_size' must be an int >= 1. Got 0.$"):
        launch(nan_on_rank1, 0)
    with pytest.raises(ConfigError, match="'device' of launch must be 'auto', 'cpu' or 'cuda'"):
        launch(nan_on_rank1, 2, device="tpu")
    with pytest.raises(ConfigError, match="'timeout_s' must be a finite real > 0"):
        launch(nan_on_rank1, 2, timeout_s=0)
    n_gpu = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=f"one GPU per rank: world_size {n_gpu + 1}, GPUs"):
        launch(nan_on_rank1, n_gpu + 1, device="cuda")


def test_val_every_validates_every_kth_epoch_and_the_last():
    """epochs 7, val_every 3: validations after epochs 3, 6 and 7 (1-based); the best of those
    is restored."""
    scores = [1.0, 3.0, 2.0]
    model, res, seen = _fit_scores(scores, epochs=7, val_mode="max", val_every=3)
    assert res.val == scores and len(seen) == 3
    assert res.best_epoch == 5 and len(res.train_loss) == 7  # 0-based epoch of the 2nd check
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), seen[1], strict=True))
