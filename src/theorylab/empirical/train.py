"""The one training loop of theorylab's empirical layer.

``train(model, loss_fn, train_data, config)`` runs mini-batch AdamW with gradient clipping, AMP
on CUDA (bfloat16 autocast), optional early stopping on a validation function, a progress bar,
and resumable checkpoints (model, optimiser, RNG state, epoch, history; saved at every epoch end
and loaded with ``weights_only=True``). On CPU a fixed ``seed`` makes a run bit-reproducible.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from theorylab.constraints import (
    NONNEGATIVE,
    POSITIVE,
    Bool,
    Constrained,
    Device,
    Int,
    Optional,
    Str,
)
from theorylab.errors import ConfigError, InputError

__all__ = ["TrainConfig", "TrainResult", "pick_device", "train", "seed_everything"]


def pick_device(pref: str = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else CPU; ``"cuda"`` fails clearly when there is none."""
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"'device' {pref!r} was asked for but CUDA is not available here.")
    if pref not in ("cpu",) and not pref.startswith("cuda"):
        raise ConfigError(f"'device' must be 'auto', 'cpu' or 'cuda[:i]'. Got {pref!r}.")
    return torch.device(pref)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (dropout, init) and return a generator for data shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class TrainConfig(Constrained):
    """Training hyper-parameters (defaults suit the small models trained here)."""

    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    device: str = "auto"
    amp: bool = True             # bfloat16 autocast, on CUDA only
    patience: int | None = None  # epochs without val improvement before stopping
    checkpoint: str | None = None  # path: saved every epoch, resumed from if present
    seed: int = 0
    progress: bool = False
    max_steps: int | None = None
    grad_clip: float | None = 1.0
    shuffle: bool = True

    constraints: ClassVar = {
        "epochs": Int(1, 100_000),
        "lr": POSITIVE,
        "batch_size": Int(1, 1 << 20),        # one batch is held on the device
        "weight_decay": NONNEGATIVE,
        "device": Device(),
        "amp": Bool(),
        "patience": Optional(Int(1, 100_000)),
        "checkpoint": Optional(Str()),
        "seed": Int(0, 2**64 - 1),           # torch.manual_seed takes [0, 2^64) (+1 of a torch_seed)
        "progress": Bool(),
        "max_steps": Optional(Int(1, 10**12)),
        "grad_clip": Optional(POSITIVE),
        "shuffle": Bool(),
    }


@dataclass
class TrainResult:
    """History (per-epoch mean train loss and val score), best val, steps, seconds, device."""

    train_loss: list[float] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = -1
    steps: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    examples: int = 0
    stopped_early: bool = False

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else float("nan")


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        return _batch_len(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0])
    return 1


def train(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
          train_data: Sequence, config: TrainConfig = TrainConfig(), *,
          val_fn: Callable[[torch.nn.Module], float] | None = None,
          collate: Callable | None = None) -> TrainResult:
    """Train ``model`` in place on ``train_data``; return the history.

    ``loss_fn(model, batch)`` returns the scalar loss of a batch already on the device;
    ``val_fn(model)`` returns a validation score (lower is better) used for early stopping and
    for restoring the best weights at the end.
    """
    if len(train_data) == 0:
        raise InputError("'train_data' is empty.")
    device = pick_device(config.device)
    gen = seed_everything(config.seed)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=config.shuffle,
                        generator=gen, collate_fn=collate)
    use_amp = config.amp and device.type == "cuda"
    result = TrainResult(device=str(device))
    best_state = None
    start_epoch = 0
    ckpt = Path(config.checkpoint) if config.checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"]) + 1
        for key in ("train_loss", "val"):
            getattr(result, key).extend(state[key])
        result.best_val, result.best_epoch = float(state["best_val"]), int(state["best_epoch"])
        result.steps = int(state["steps"])
        best_state = state.get("best_model")
    t0 = time.perf_counter()
    bad_epochs = 0
    for epoch in range(start_epoch, config.epochs):
        model.train()
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=not config.progress)
        for batch in bar:
            batch = _to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise InputError(f"training loss became non-finite ({loss.item()}) at step "
                                 f"{result.steps}; lower 'lr' or check the data.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            n = _batch_len(batch)
            total += float(loss.detach()) * n
            count += n
            result.steps += 1
            result.examples += n
            bar.set_postfix(loss=f"{total / count:.4f}")
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
        result.train_loss.append(total / max(count, 1))
        if val_fn is not None:
            model.eval()
            with torch.no_grad():
                score = float(val_fn(model))
            result.val.append(score)
            if score < result.best_val:
                result.best_val, result.best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
        if ckpt is not None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optim": opt.state_dict(),
                        "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "epoch": epoch, "train_loss": result.train_loss, "val": result.val,
                        "best_val": result.best_val, "best_epoch": result.best_epoch,
                        "steps": result.steps, "best_model": best_state,
                        "config": asdict(config)}, ckpt)
        if config.patience is not None and bad_epochs >= config.patience:
            result.stopped_early = True
            break
        if config.max_steps is not None and result.steps >= config.max_steps:
            break
    result.seconds = time.perf_counter() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result
