r"""Full-graph GCN training on ``torch.distributed`` with halo exchange, and its single-process twin.

Model (Kipf & Welling's GCN, L layers): H⁰ = X,
H^{l+1} = σ(Â H^l W_l + b_l), Â = D̃^{-1/2}(A + I)D̃^{-1/2}, D̃ = diag(deg + 1), σ = ReLU except
after the last layer; the loss is the mean cross-entropy over the training nodes.

**Distribution** (Lin et al., Proc. IEEE 2023: full-graph training, partition-based). Worker p owns
the rows V_p of a partition. Per layer it receives the halo features H^l[R_p] from their owners
(one ``all_to_all``: to worker q it sends its rows that lie in R_q), aggregates
(Â H^l)[V_p] = Σ_j Â_ij H^l_j over its rows' neighbours — Â from the global degrees — and applies
W_l. The backward pass of the exchange sends the halo gradients back to their owners (one
``all_to_all`` per layer l ≥ 1: X needs no gradient). The loss of worker p is its training rows'
cross-entropy divided by the *global* number of training nodes, so the sum over workers of the
gradients — one ``all_reduce`` per parameter — is the single-process gradient, and every worker
takes the same Adam step: P workers and one process follow the same trajectory up to
floating-point summation order.

**Bytes** are counted at the calls (the tensors handed to ``all_to_all`` for other workers, the
gradients handed to ``all_reduce``). The survey's cost model per epoch, with 4-byte floats:
forward Σ_p |R_p| · Σ_{l<L} d_l · 4, backward Σ_p |R_p| · Σ_{1≤l<L} d_l · 4, all-reduce
P · (number of parameters) · 4 (the payload; gloo's ring moves about 2(P − 1)/P of it per worker).

**Devices.** Under an nccl process group every worker computes on its GPU, cuda:rank, and hands
CUDA tensors to the collectives (nccl takes no others); under gloo, on the CPU
(:func:`worker_device`; the launcher picks the backend,
:func:`~theorylab.empirical.distributed.choose_device`). A process without a group computes on
``device`` (default the CPU). Returned parameters are on the CPU.

**Staleness** (PipeGCN-style, ``stale=True``): layers l ≥ 1 aggregate the halo features of the
previous epoch (no gradient flows to their owners); the exchange of this epoch's features runs
anyway, for the next epoch. Epoch 0 uses fresh features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from theorylab.empirical.distributed import rank_and_world
from theorylab.empirical.gnn.graphs import Graph
from theorylab.empirical.gnn.partition import halo
from theorylab.seeding import rng_for, torch_seed

__all__ = ["GCN", "HaloPlan", "make_plan", "gcn_edges", "propagate", "train_mask", "worker_device",
           "train_full_graph", "cost_model_bytes", "rank_main", "rank_variants"]

BYTES = 4  # float32


def gcn_edges(graph: Graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src, dst, w) of Â: every edge and a self-loop per node, w = (d̃_src d̃_dst)^{-1/2}."""
    loops = torch.arange(graph.n)
    src = torch.cat([graph.edge_index[0], loops])
    dst = torch.cat([graph.edge_index[1], loops])
    dinv = (graph.degrees() + 1).to(torch.float32).rsqrt()
    return src, dst, dinv[src] * dinv[dst]


def propagate(h: torch.Tensor, src, dst, w, n_out: int) -> torch.Tensor:
    """Σ over edges (src → dst) of w · h[src], rows 0..n_out−1."""
    return torch.zeros(n_out, h.shape[1], dtype=h.dtype, device=h.device).index_add_(
        0, dst, h[src] * w[:, None])


def worker_device(device: str | torch.device | None = None) -> torch.device:
    """cuda:<this rank's GPU> under an nccl process group, else ``device`` (default the CPU)."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device or "cpu")


class GCN(nn.Module):
    """L linear maps ``dims[l] → dims[l+1]``; ``aggregate(h, l)`` supplies (Â H^l) for the rows."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:], strict=False))

    def forward(self, x: torch.Tensor, aggregate) -> torch.Tensor:
        h = x
        for l, lin in enumerate(self.lins):
            h = lin(aggregate(h, l))
            if l < len(self.lins) - 1:
                h = torch.relu(h)
        return h


@dataclass
class HaloPlan:
    """Worker ``rank``'s view: its rows, its halo (ordered by owner, then id), what it sends to
    each worker, and the local edges of Â (``src`` indexes [local rows, halo rows])."""

    rank: int
    world: int
    local: torch.Tensor
    halo: torch.Tensor
    send_idx: list[torch.Tensor]
    recv_counts: list[int]
    src: torch.Tensor
    dst: torch.Tensor
    w: torch.Tensor

    def to(self, device: torch.device) -> HaloPlan:
        """The plan with its index and weight tensors on ``device``."""
        return HaloPlan(self.rank, self.world, self.local.to(device), self.halo.to(device),
                        [i.to(device) for i in self.send_idx], self.recv_counts,
                        self.src.to(device), self.dst.to(device), self.w.to(device))


def make_plan(graph: Graph, parts: torch.Tensor, rank: int, world: int) -> HaloPlan:
    local = torch.nonzero(parts == rank).flatten()
    halos = [halo(graph, parts, q) for q in range(world)]
    mine = halos[rank]
    mine = mine[torch.argsort(parts[mine], stable=True)]      # by owner, then id
    recv_counts = [int((parts[mine] == q).sum()) for q in range(world)]
    pos = torch.full((graph.n,), -1, dtype=torch.int64)
    pos[local] = torch.arange(len(local))
    send_idx = [pos[halos[q][parts[halos[q]] == rank]] if q != rank
                else torch.empty(0, dtype=torch.int64) for q in range(world)]
    col = pos.clone()
    col[mine] = len(local) + torch.arange(len(mine))
    src, dst, w = gcn_edges(graph)
    keep = parts[dst] == rank
    return HaloPlan(rank, world, local, mine, send_idx, recv_counts, col[src[keep]],
                    pos[dst[keep]], w[keep])


def _all_to_all(chunks: list[torch.Tensor], counts: list[int], dim: int, counter: dict,
                phase: str, rank: int) -> list[torch.Tensor]:
    """One ``all_to_all_single`` with uneven splits (gloo's list form wants equal sizes)."""
    counter[phase] = counter.get(phase, 0) + sum(
        c.numel() * c.element_size() for q, c in enumerate(chunks) if q != rank)
    out = torch.empty(sum(counts), dim, device=chunks[0].device)
    dist.all_to_all_single(out, torch.cat(chunks).contiguous(), output_split_sizes=counts,
                           input_split_sizes=[len(c) for c in chunks])
    return list(torch.split(out, counts))


class _HaloExchange(torch.autograd.Function):
    """H^l[R_p] from the owners; backward: the halo gradients back to them, summed per row."""

    @staticmethod
    def forward(ctx, h, plan: HaloPlan, counter: dict):
        ctx.plan, ctx.counter, ctx.n = plan, counter, h.shape[0]
        got = _all_to_all([h[i] for i in plan.send_idx], plan.recv_counts, h.shape[1], counter,
                          "forward", plan.rank)
        return torch.cat(got)

    @staticmethod
    def backward(ctx, g):
        plan = ctx.plan
        got = _all_to_all(list(torch.split(g, plan.recv_counts)),
                          [len(i) for i in plan.send_idx], g.shape[1], ctx.counter, "backward",
                          plan.rank)
        grad = torch.zeros(ctx.n, g.shape[1], dtype=g.dtype, device=g.device)
        for idx, gq in zip(plan.send_idx, got, strict=True):
            grad.index_add_(0, idx, gq)
        return grad, None, None


def train_mask(n: int, fraction: float, seed: int) -> torch.Tensor:
    """A seeded set of ⌈fraction · n⌉ training nodes (bool mask)."""
    idx = rng_for(seed, "train-mask").permutation(n)[:int(np.ceil(fraction * n))]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.from_numpy(idx)] = True
    return mask


def train_full_graph(graph: Graph, parts: torch.Tensor | None, *, hidden: int = 16,
                     layers: int = 2, epochs: int = 5, lr: float = 0.01,
                     train_fraction: float = 0.5, seed: int = 0, stale: bool = False,
                     device: str | None = None) -> dict:
    """Train the GCN for ``epochs`` full-batch Adam steps; in a process group of P workers when
    one is initialised (``parts`` then assigns the rows), else in this process alone.

    Returns the parameters, the loss per epoch (global), the test accuracy (nodes outside the
    training mask), the seconds per epoch and the bytes this worker handed to each kind of call.
    """
    rank, world = rank_and_world()
    if parts is None or world == 1:
        parts = torch.zeros(graph.n, dtype=torch.int64)
    dev = worker_device(device)
    cpu_plan = make_plan(graph, parts, rank, world)
    plan = cpu_plan.to(dev)
    counter: dict[str, int] = {}
    mask = train_mask(graph.n, train_fraction, seed)[cpu_plan.local].to(dev)
    x, y = graph.x[cpu_plan.local].to(dev), graph.y[cpu_plan.local].to(dev)
    n_train = int(train_mask(graph.n, train_fraction, seed).sum())
    torch.manual_seed(torch_seed(seed, "gcn-init"))
    model = GCN([graph.x.shape[1]] + [hidden] * (layers - 1) + [graph.n_classes]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n_local = len(plan.local)
    previous: dict[int, torch.Tensor] = {}

    def aggregate(h, l):
        if world == 1:
            return propagate(h, plan.src, plan.dst, plan.w, n_local)
        fresh = _HaloExchange.apply(h, plan, counter)
        use = previous.get(l, fresh) if stale and l > 0 else fresh
        if stale:
            previous[l] = fresh.detach()
        return propagate(torch.cat([h, use]), plan.src, plan.dst, plan.w, n_local)

    losses, seconds = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(x, aggregate)
        loss = nn.functional.cross_entropy(out[mask], y[mask], reduction="sum") / n_train
        loss.backward()
        if world > 1:
            for p in model.parameters():
                counter["allreduce"] = counter.get("allreduce", 0) + p.grad.numel() * BYTES
                dist.all_reduce(p.grad)
        opt.step()
        losses.append(float(loss.detach()))       # waits for the device
        seconds.append(time.perf_counter() - t0)
    with torch.no_grad():
        phase = dict(counter)
        pred = model(x, aggregate).argmax(1)
        test = ~mask
        stats = torch.tensor([losses + [float((pred[test] == y[test]).sum()), float(test.sum())]],
                             dtype=torch.float64, device=dev)
        if world > 1:
            dist.all_reduce(stats)
    stats = stats.flatten().tolist()
    return {"params": [p.detach().cpu().clone() for p in model.parameters()],
            "loss": stats[:epochs], "accuracy": stats[epochs] / max(stats[epochs + 1], 1.0),
            "seconds": seconds, "bytes": {k: int(phase.get(k, 0))
                                          for k in ("forward", "backward", "allreduce")},
            "halo": len(plan.halo), "rows": n_local}


def cost_model_bytes(graph: Graph, parts: torch.Tensor, dims: list[int], epochs: int,
                     n_params: int) -> dict:
    """The survey's communication volume of ``epochs`` epochs of full-graph training, from the
    partition alone (module docstring): forward, backward and all-reduce bytes."""
    P = int(parts.max()) + 1
    remote = sum(len(halo(graph, parts, p)) for p in range(P)) if P > 1 else 0
    layers = len(dims) - 1
    return {"forward": epochs * remote * sum(dims[:layers]) * BYTES,
            "backward": epochs * remote * sum(dims[1:layers]) * BYTES,
            "allreduce": epochs * P * n_params * BYTES if P > 1 else 0}


def rank_main(rank: int, world: int, graph: dict, parts: torch.Tensor, options: dict) -> dict:
    """What :func:`~theorylab.empirical.distributed.launch` runs in each worker."""
    return train_full_graph(Graph.from_dict(graph), parts, **options)


def rank_variants(rank: int, world: int, graph: dict, parts: torch.Tensor, options: dict,
                  variants: tuple[str, ...] = ("sync", "stale")) -> dict:
    """:func:`rank_main` once per variant (``"sync"``, ``"stale"``) in one process group."""
    return {v: rank_main(rank, world, graph, parts, {**options, "stale": v == "stale"})
            for v in variants}
