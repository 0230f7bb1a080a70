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

__all__ = ["launch", "free_port", "backend_for", "choose_device", "rank_and_world",
           "shard_bounds"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_for(device: str | torch.device) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def choose_device(world: int, device: str = "auto", gpus: int | None = None
                  ) -> tuple[str, str, str]:
    """``(device, backend, why)`` for ``world`` local ranks: ``"auto"`` takes CUDA with nccl when
    there is a GPU per rank (nccl refuses two ranks on one GPU), else the CPU with gloo;
    ``gpus`` defaults to ``torch.cuda.device_count()``. ``why`` says which, in one line."""
    gpus = torch.cuda.device_count() if gpus is None else gpus
    if device == "auto":
        device = "cuda" if 0 < world <= gpus else "cpu"
        why = (f"nccl on cuda:0..{world - 1} ({gpus} GPUs for {world} ranks)" if device == "cuda"
               else f"gloo on the CPU ({world} ranks, {gpus} GPUs: nccl needs a GPU per rank)")
    elif device == "cpu":
        why = f"gloo on the CPU ({world} ranks, as asked)"
    elif device == "cuda":
        if gpus < world:
            raise ConfigError(f"launch on 'cuda' needs one GPU per rank: world_size {world}, "
                              f"GPUs here {gpus}.")
        why = f"nccl on cuda:0..{world - 1} (as asked)"
    else:
        raise ConfigError(f"'device' of launch must be 'auto', 'cpu' or 'cuda'. Got {device!r}.")
    return device, backend_for(device), why


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


def _save_error(outdir: str, rank: int, exc: BaseException) -> None:
    """Rank ``rank``'s failure as one line for the caller: a TheorylabError keeps its class and
    message, anything else (a peer that vanished mid-collective) becomes ``Type: first line``."""
    if isinstance(exc, TheorylabError):
        info = {"type": type(exc).__name__, "message": str(exc)}
    else:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        info = {"type": "TheorylabError", "message": f"{type(exc).__name__}: {first}"[:300]}
    torch.save(info, Path(outdir) / f"error_{rank}.pt")


def _worker(rank: int, fn: Callable, world: int, init: str, backend: str, outdir: str,
            timeout_s: float, parent: int, args: tuple) -> None:
    from datetime import timedelta

    # torch's spawn wrapper asks for SIGINT when the launcher dies, which does nothing where SIGINT
    # is ignored (a job started with `&` by a script): SIGKILL, and a watcher thread, instead
    from theorylab.sweep import die_with_parent
    die_with_parent(parent, pdeathsig=True)

    if backend == "nccl":
        torch.cuda.set_device(rank)
    else:  # P CPU ranks share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        dist.init_process_group(backend, init_method=init, rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    except Exception as exc:  # noqa: BLE001 - one line for the caller, whatever torch raised
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        _save_error(outdir, rank, ConfigError(
            f"rendezvous '{init}' unreachable within {timeout_s:g} s ({first[:160]})."))
        raise SystemExit(1) from None
    try:
        out = fn(rank, world, *args)
        torch.save(out, Path(outdir) / f"result_{rank}.pt")
    except BaseException as exc:  # the caller raises it again as one line
        _save_error(outdir, rank, exc)
        raise
    finally:
        dist.destroy_process_group()


def _failure(exc: Exception, outdir: str, world: int) -> TheorylabError:
    """One line for a failed launch, in this order: a rank's own TheorylabError (bad config,
    divergence, an unreachable rendezvous); a rank that died without raising (killed,
    ``os._exit``); a rank's other error (typically a peer that vanished mid-collective)."""
    from torch.multiprocessing.spawn import ProcessExitedException
    infos = {}
    for rank in range(world):
        err = Path(outdir) / f"error_{rank}.pt"
        if err.exists():
            infos[rank] = torch.load(err, weights_only=True)
    own = {r: i for r, i in infos.items() if i["type"] != "TheorylabError"}
    if not own and isinstance(exc, ProcessExitedException):
        how = f"signal {exc.signal_name}" if exc.signal_name else f"exit code {exc.exit_code}"
        return TheorylabError(f"rank {exc.error_index} died ({how}); the other ranks were "
                              "stopped.")
    for rank, info in sorted((own or infos).items()):
        cls = getattr(errors, info["type"], None)
        if not (isinstance(cls, type) and issubclass(cls, TheorylabError)):
            cls = TheorylabError
        return cls(f"rank {rank}: {info['message']}")
    return TheorylabError(f"a rank failed: {str(exc).strip().splitlines()[-1][:200]}")


def launch(fn: Callable[..., Any], world_size: int, *args: Any, device: str = "cpu",
           timeout_s: float = 300.0, rendezvous: str | None = None) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` local processes; return the values.

    ``fn`` must be a module-level function (pickled by name; ``args`` by value) and return
    what ``torch.load(..., weights_only=True)`` reads back: tensors, numbers, strings, and
    lists, tuples and dicts of them. ``device`` ``"cpu"`` uses gloo, ``"cuda"`` nccl with rank r on GPU r
    (``"auto"``: CUDA when there are ``world_size`` GPUs; :func:`choose_device`). A collective waiting longer than
    ``timeout_s`` fails; a rank that dies stops the others at once, and the caller gets one
    line naming it. ``rendezvous`` (``tcp://HOST:PORT``; default a free loopback port) that no
    rank can reach within ``timeout_s`` is a :class:`~theorylab.errors.ConfigError`.
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    world = check_int(None, "world_size", world_size, lo=1)
    check_real(None, "timeout_s", timeout_s, lo=0, lo_open=True)
    device, backend, _ = choose_device(world, device)
    if not dist.is_available():
        raise ConfigError("torch.distributed is not available in this torch build.")
    if rendezvous is not None and not (isinstance(rendezvous, str)
                                       and rendezvous.startswith("tcp://")):
        raise ConfigError(f"'rendezvous' of launch must be 'tcp://HOST:PORT'. Got {rendezvous!r}.")
    init = rendezvous or f"tcp://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="theorylab-ddp-") as outdir:
        try:
            mp.spawn(_worker, args=(fn, world, init, backend, outdir, timeout_s, os.getpid(),
                                    args),
                     nprocs=world, join=True)
        except ProcessException as exc:
            raise _failure(exc, outdir, world) from None
        return [torch.load(Path(outdir) / f"result_{r}.pt", weights_only=True)
                for r in range(world)]
