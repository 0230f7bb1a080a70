"""The one training loop of theorylab's empirical layer.

``train(model, loss_fn, train_data, config)`` runs mini-batch AdamW with gradient clipping, AMP
on CUDA (bfloat16 autocast), optional early stopping on a validation function (``val_mode``
"min" for a loss, "max" for F1 or BLEU), a progress bar, and resumable checkpoints (model,
optimiser, RNG state, epoch, history; written atomically at every epoch end and loaded with
``weights_only=True``). On CPU a fixed ``seed`` makes a run bit-reproducible, and a run resumed
from its checkpoint equals the uninterrupted run bit for bit. A non-finite loss raises
:class:`~theorylab.errors.TrainingDivergedError`; the last checkpoint stays on disk.

**Data parallel.** When ``torch.distributed`` is initialised with P > 1 ranks (e.g. inside
:func:`theorylab.empirical.distributed.launch`; ``TrainConfig.distributed`` can force or forbid
it), every rank draws the same global batches of b = ``batch_size`` examples (same seed, same
shuffle) and takes its contiguous share of n_r examples (sizes differ by at most one, a share may
be empty: any b, P and last partial batch work). Rank r backpropagates (n_r / b)·L_r, L_r the loss
of its share, and the gradients are summed over the ranks (one all-reduce per dtype). If
``loss_fn`` is the mean over the batch's examples of a per-example loss ℓ_i, then
Σ_r (n_r / b) ∇L_r = ∇ (1/b) Σ_i ℓ_i, the single-process gradient of the same global batch; every
rank then clips and steps alike, so the parameters equal single-process training up to rounding.
Not checked, so stated: a loss averaged over tokens (not examples) gives data-parallel SGD but not
one process's gradient; layers that mix the examples of a batch (BatchNorm statistics) see only
the share and their buffers are not synchronised; each rank draws its own dropout masks. Rank 0's
parameters are broadcast at the start; ``val_fn`` runs on every rank (it may shard the evaluation
itself) and rank 0's score decides early stopping; only rank 0 writes the checkpoint (which
records P: resume it with the same P) and shows progress.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, default_collate
from tqdm.auto import tqdm

from theorylab.atomic import atomic_torch_save
from theorylab.constraints import (
    NONNEGATIVE,
    POSITIVE,
    Bool,
    Choice,
    Constrained,
    Device,
    Int,
    Optional,
    Str,
)
from theorylab.empirical.distributed import rank_and_world, shard_bounds
from theorylab.errors import ConfigError, InputError, TheorylabError, TrainingDivergedError
from theorylab.seeding import seed_for

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
    patience: int | None = None  # validations without improvement before stopping
    val_every: int = 1           # validate after every val_every-th epoch (and the last)
    checkpoint: str | None = None  # path: saved every epoch, resumed from if present
    seed: int = 0
    progress: bool = False
    max_steps: int | None = None
    grad_clip: float | None = 1.0
    shuffle: bool = True
    val_mode: str = "min"        # "min": lower val_fn is better (a loss); "max": F1, BLEU
    distributed: bool | None = None  # None: data-parallel iff torch.distributed has > 1 rank

    constraints: ClassVar = {
        "epochs": Int(1, 100_000),
        "lr": POSITIVE,
        "batch_size": Int(1, 1 << 20),        # one batch is held on the device
        "weight_decay": NONNEGATIVE,
        "device": Device(),
        "amp": Bool(),
        "patience": Optional(Int(1, 100_000)),
        "val_every": Int(1, 100_000),
        "checkpoint": Optional(Str()),
        "seed": Int(0, 2**64 - 1),           # torch.manual_seed takes [0, 2^64) (+1 of a torch_seed)
        "progress": Bool(),
        "max_steps": Optional(Int(1, 10**12)),
        "grad_clip": Optional(POSITIVE),
        "shuffle": Bool(),
        "val_mode": Choice(("min", "max")),   # F1 and BLEU are maximised, losses minimised
        "distributed": Optional(Bool()),      # None: data-parallel iff a process group is up
    }


@dataclass
class TrainResult:
    """History (per-epoch mean train loss and val score), best val, steps, seconds, device.

    ``best_val`` starts at +inf (``val_mode`` "min") or -inf ("max"); ``train`` sets it.
    """

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


def _fetch(data: Sequence, idx: list[int], collate: Callable | None) -> Any:
    """The batch a ``DataLoader`` over ``data`` would build from the indices ``idx``."""
    getitems = getattr(data, "__getitems__", None)
    items = getitems(idx) if getitems else [data[i] for i in idx]
    return (collate or default_collate)(items)


class _DataParallel:
    """Rank ``rank`` of ``world``: forward/backward on its share, gradients summed over ranks."""

    def __init__(self, model: torch.nn.Module, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device
        nccl = dist.get_backend() == "nccl"
        if nccl and device.type != "cuda":
            raise ConfigError(f"the nccl backend needs the model on CUDA, not {device}; start "
                              "the ranks with the gloo backend (launch(..., device='cpu')).")
        self.comm = device if nccl else torch.device("cpu")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.groups: dict[torch.dtype, list[int]] = defaultdict(list)
        for i, p in enumerate(self.params):
            self.groups[p.dtype].append(i)
        with torch.no_grad():  # start from rank 0's parameters and buffers
            for t in [*model.parameters(), *model.buffers()]:
                buf = t.detach().to(self.comm)
                dist.broadcast(buf, 0)
                t.copy_(buf)

    def backward(self, model, loss_fn, data, idx, collate, use_amp) -> tuple[float, int]:
        """Sum over ranks of (share loss × share size) and the global batch size; sets the
        parameters' ``.grad`` to the summed gradients (None where no rank had one)."""
        lo, hi = shard_bounds(len(idx), self.world)[self.rank:self.rank + 2]
        local = 0.0
        if hi > lo:
            batch = _to_device(_fetch(data, idx[lo:hi], collate), self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(model, batch)
            (loss * ((hi - lo) / len(idx))).backward()
            local = float(loss.detach()) * (hi - lo)
        meta = torch.tensor([local, *(float(p.grad is not None) for p in self.params)],
                            dtype=torch.float64, device=self.comm)
        dist.all_reduce(meta)
        loss_sum, *has_grad = meta.tolist()
        if not math.isfinite(loss_sum):  # every rank sees it and raises: no rank hangs
            return loss_sum, len(idx)
        for members in self.groups.values():
            ps = [self.params[i] for i in members]
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                              for p in ps]).to(self.comm)
            dist.all_reduce(flat)
            flat = flat.to(self.device)
            offset = 0
            for i, p in zip(members, ps, strict=True):
                k = p.numel()
                p.grad = flat[offset:offset + k].view_as(p) if has_grad[i] > 0 else None
                offset += k
        return loss_sum, len(idx)

    def broadcast(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        t = torch.tensor([value], dtype=torch.float64, device=self.comm)
        dist.broadcast(t, 0)
        return float(t[0])

    def save(self, state: dict, path: Path) -> None:
        """Rank 0 writes ``path``; every rank returns once it is on disk (or fails together)."""
        ok = 0.0
        try:
            if self.rank == 0:
                atomic_torch_save(state, path)
            ok = 1.0
        finally:  # also when rank 0's write raised: the others must not wait forever
            if self.broadcast(ok) == 0.0 and self.rank != 0:
                raise TheorylabError(f"rank 0 could not write the checkpoint {path}.")

    def rng_states(self) -> torch.Tensor:
        """Every rank's torch RNG state, stacked (a collective: all ranks call it)."""
        mine = torch.get_rng_state().to(self.comm)
        out = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(out, mine)
        return torch.stack(out).cpu()


def _data_parallel(config: TrainConfig) -> tuple[int, int] | None:
    """(rank, world) when ``train`` runs data-parallel, else None."""
    if config.distributed is False:
        return None
    rank, world = rank_and_world()
    if config.distributed and not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("'distributed' of TrainConfig is True but torch.distributed is not "
                          "initialised; start the ranks with theorylab.empirical.distributed."
                          "launch or torchrun.")
    return (rank, world) if (config.distributed or world > 1) else None


def _better(mode: str, score: float, best: float) -> bool:
    return score > best if mode == "max" else score < best


def train(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
          train_data: Sequence, config: TrainConfig = TrainConfig(), *,
          val_fn: Callable[[torch.nn.Module], float] | None = None,
          collate: Callable | None = None,
          after_backward: Callable[[torch.nn.Module], None] | None = None,
          after_step: Callable[[torch.nn.Module], None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``train_data``; return the history.

    ``loss_fn(model, batch)`` returns the scalar loss of a batch already on the device;
    ``val_fn(model)`` returns a validation score (lower is better for ``val_mode="min"``, higher
    for ``"max"``) used for early stopping and for restoring the best weights at the end; it
    runs after every ``val_every``-th epoch and after the last one (``patience`` counts these
    validations).
    ``after_backward(model)`` runs once the gradients are in ``.grad`` (before clipping and the
    step: e.g. a gradient projection), ``after_step(model)`` after each optimiser step (e.g. a
    path integral over the parameter updates); continual-learning strategies use both.
    Raises :class:`~theorylab.errors.TrainingDivergedError` on a non-finite loss.
    """
    if len(train_data) == 0:
        raise InputError("'train_data' is empty.")
    device = pick_device(config.device)
    gen = seed_everything(config.seed)
    par = _data_parallel(config)
    rank, world = par if par is not None else (0, 1)
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ddp = None
    if par is None:
        loader = DataLoader(train_data, batch_size=config.batch_size, shuffle=config.shuffle,
                            generator=gen, collate_fn=collate)
    else:  # the same global index batches (and generator draws) as the loader above
        loader = DataLoader(range(len(train_data)), batch_size=config.batch_size,
                            shuffle=config.shuffle, generator=gen, collate_fn=list)
        torch.manual_seed(seed_for(config.seed, "rank", rank))  # own dropout stream per rank
        ddp = _DataParallel(model, rank, world, device)
    use_amp = config.amp and device.type == "cuda"
    result = TrainResult(device=str(device),
                         best_val=-math.inf if config.val_mode == "max" else math.inf)
    best_state = None
    start_epoch = 0
    ckpt = Path(config.checkpoint) if config.checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        saved_mode = state.get("config", {}).get("val_mode", "min")
        if saved_mode != config.val_mode:
            raise ConfigError(f"checkpoint {ckpt} was written with val_mode {saved_mode!r}; "
                              f"resume it with the same val_mode, not {config.val_mode!r}.")
        saved_world = int(state.get("world_size", 1))
        if saved_world != world:
            raise ConfigError(f"checkpoint {ckpt} was written by {saved_world} rank(s); "
                              f"resume it with {saved_world}, not {world}.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        gen.set_state(state["gen"].cpu())
        if ddp is None:
            torch.set_rng_state(state["torch_rng"].cpu())
        else:  # a row of the stack is a view at an offset: set_rng_state needs its own tensor
            torch.set_rng_state(state["torch_rng_ranks"][rank].cpu().clone())
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
                   disable=None if (config.progress and rank == 0) else True)  # bars on a TTY only
        for batch in bar:
            if ddp is None:
                batch = _to_device(batch, device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise _diverged(float(loss.detach()), result, epoch, config, ckpt, t0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                n = _batch_len(batch)
                loss_sum = float(loss.detach()) * n
            else:
                opt.zero_grad(set_to_none=True)
                loss_sum, n = ddp.backward(model, loss_fn, train_data, batch, collate, use_amp)
                if not math.isfinite(loss_sum):
                    raise _diverged(loss_sum / n, result, epoch, config, ckpt, t0)
            if after_backward is not None:
                after_backward(model)
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            if after_step is not None:
                after_step(model)
            total += loss_sum
            count += n
            result.steps += 1
            result.examples += n
            bar.set_postfix(loss=f"{total / count:.4f}")
            if config.max_steps is not None and result.steps >= config.max_steps:
                break
        result.train_loss.append(total / max(count, 1))
        last = epoch + 1 == config.epochs or (config.max_steps is not None
                                              and result.steps >= config.max_steps)
        if val_fn is not None and ((epoch + 1) % config.val_every == 0 or last):
            model.eval()
            with torch.no_grad():
                score = float(val_fn(model))
            if ddp is not None:
                score = ddp.broadcast(score)
            result.val.append(score)
            if _better(config.val_mode, score, result.best_val):
                result.best_val, result.best_epoch, bad_epochs = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
        if ckpt is not None:
            state = {"model": model.state_dict(), "optim": opt.state_dict(),
                     "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                     "epoch": epoch, "train_loss": result.train_loss, "val": result.val,
                     "best_val": result.best_val, "best_epoch": result.best_epoch,
                     "steps": result.steps, "best_model": best_state, "config": asdict(config)}
            if ddp is None:
                atomic_torch_save(state, ckpt)
            else:
                state.update(world_size=world, torch_rng_ranks=ddp.rng_states())
                ddp.save(state, ckpt)
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


def _diverged(value: float, result: TrainResult, epoch: int, config: TrainConfig,
              ckpt: Path | None, t0: float) -> TrainingDivergedError:
    """The error for a non-finite loss; ``result`` (the history so far) rides along."""
    result.seconds = time.perf_counter() - t0
    kept = f"; the last checkpoint is kept at {ckpt}" if ckpt is not None and ckpt.exists() else ""
    return TrainingDivergedError(
        f"training diverged: the loss is {value} at step {result.steps + 1} (epoch {epoch + 1} "
        f"of {config.epochs}); lower 'lr' (now {config.lr:g}) or check the data{kept}.",
        step=result.steps + 1, epoch=epoch + 1, result=result)
