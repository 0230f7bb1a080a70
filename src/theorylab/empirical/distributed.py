"""Data-parallel helpers on ``torch.distributed``: a local launcher, the rank/world query, shards.

``launch(fn, P, *args)`` spawns P processes on this host (``torch.multiprocessing``), joins them
in one process group through a loopback rendezvous ``tcp://127.0.0.1:<free port>`` (backend
``gloo`` on CPU, ``nccl`` on CUDA with one GPU per rank), calls ``fn(rank, P, *args)`` in each and
returns the ranks' return values. Inside, :func:`theorylab.empirical.train.train` runs
data-parallel by itself. A :class:`~theorylab.errors.TheorylabError` raised in a rank is raised
again in the caller with its one-line message. Multi-host jobs start the ranks with ``torchrun``
instead; ``train()`` only needs an initialised process group.

Sharding (:func:`shard_bounds`): the global batch of b examples is cut into P contiguous shares of
⌊b/P⌋ or ⌈b/P⌉ examples; a share may be empty when b < P.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from theorylab import errors
from theorylab.errors import ConfigError, TheorylabError
from theorylab.validation import check_int, check_real

__all__ = ["launch", "free_port", "backend_for", "rank_and_world", "shard_bounds"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_for(device: str | torch.device) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, world: int) -> list[int]:
    """Offsets ``o`` with rank r's share ``[o[r], o[r+1])`` of n items; the first n mod P
    ranks get one item more."""
    q, r = divmod(n, world)
    out = [0]
    for k in range(world):
        out.append(out[-1] + q + (k < r))
    return out


def _worker(rank: int, fn: Callable, world: int, port: int, backend: str, outdir: str,
            timeout_s: float, args: tuple) -> None:
    from datetime import timedelta

    if backend == "nccl":
        torch.cuda.set_device(rank)
    else:  # P CPU ranks share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=timeout_s))
    try:
        out = fn(rank, world, *args)
        torch.save(out, Path(outdir) / f"result_{rank}.pt")
    except TheorylabError as exc:  # the caller raises it again with the same class and line
        torch.save({"type": type(exc).__name__, "message": str(exc)},
                   Path(outdir) / f"error_{rank}.pt")
        raise
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], world_size: int, *args: Any, device: str = "cpu",
           timeout_s: float = 300.0) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` local processes; return the values.

    ``fn`` must be a module-level function (pickled by name; ``args`` by value) and return
    what ``torch.load(..., weights_only=True)`` reads back: tensors, numbers, strings, and
    lists, tuples and dicts of them. ``device`` ``"cpu"`` uses gloo, ``"cuda"`` nccl with rank r on GPU r
    (``"auto"``: CUDA when there are ``world_size`` GPUs). A collective waiting longer than
    ``timeout_s`` (a rank died) fails.
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    world = check_int(None, "world_size", world_size, lo=1)
    check_real(None, "timeout_s", timeout_s, lo=0, lo_open=True)
    if device == "auto":
        device = "cuda" if torch.cuda.device_count() >= world else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"'device' of launch must be 'auto', 'cpu' or 'cuda'. Got {device!r}.")
    if device == "cuda" and torch.cuda.device_count() < world:
        raise ConfigError(f"launch on 'cuda' needs one GPU per rank: world_size {world}, "
                          f"GPUs here {torch.cuda.device_count()}.")
    if not dist.is_available():
        raise ConfigError("torch.distributed is not available in this torch build.")
    backend = backend_for(device)
    with tempfile.TemporaryDirectory(prefix="theorylab-ddp-") as outdir:
        try:
            mp.spawn(_worker, args=(fn, world, free_port(), backend, outdir, timeout_s, args),
                     nprocs=world, join=True)
        except ProcessException:
            for rank in range(world):
                err = Path(outdir) / f"error_{rank}.pt"
                if err.exists():
                    info = torch.load(err, weights_only=True)
                    cls = getattr(errors, info["type"], None)
                    if not (isinstance(cls, type) and issubclass(cls, TheorylabError)):
                        cls = TheorylabError
                    raise cls(f"rank {rank}: {info['message']}") from None
            raise
        return [torch.load(Path(outdir) / f"result_{r}.pt", weights_only=True)
                for r in range(world)]
