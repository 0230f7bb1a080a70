"""Rank functions for the distributed GNN tests (module-level: spawned workers import them)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist


def die_on_rank1(rank: int, world: int, folder: str) -> int:
    """Every rank writes its pid; rank 1 kills itself with SIGKILL while the others wait in a
    collective that can never complete."""
    Path(folder, f"pid_{rank}").write_text(str(os.getpid()))
    dist.barrier()
    if rank == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    t = torch.ones(3)
    dist.all_reduce(t)
    return int(t.sum())


def nothing(rank: int, world: int) -> int:
    return rank




def sleep_forever(rank: int, world: int, folder: str) -> int:
    """Write the pid, then sleep far longer than any test waits."""
    Path(folder, f"pid_{rank}").write_text(str(os.getpid()))
    time.sleep(300)
    return rank
