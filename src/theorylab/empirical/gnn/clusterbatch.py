r"""Partition batches (Cluster-GCN, Chiang et al., KDD 2019; the survey's partition-based joint
sampling), on P workers.

**Batches.** METIS cuts the graph into C clusters V_1..V_C of about ``cluster_size`` nodes
(:func:`clusters_of`). A batch is the
union B = V_{c_1} ∪ … ∪ V_{c_q} of q clusters; the GCN trains on the subgraph induced by B
(:func:`induced_subgraph`: every edge between two chosen clusters is kept, edges leaving B are
dropped) with that subgraph's normalisation Â_B = D̃_B^{-1/2}(A_B + I)D̃_B^{-1/2}, and the loss is
the mean cross-entropy over B's training nodes.

**Distribution** (data-parallel, partitioned features). Cluster c belongs to the worker that owns
most of its nodes under the owner partition (ties: the lowest rank), so C_r clusters are worker
r's. Per epoch worker r permutes its clusters (generator of (seed, epoch, r)) and cuts them into
S = ⌈max_r C_r / q⌉ batches of ⌊C_r/S⌋ or ⌈C_r/S⌉ clusters (``shard_bounds``): every worker takes
S steps and visits each of its clusters once per epoch. Per step it fetches the features of its
batch nodes owned by other workers (:func:`~theorylab.empirical.gnn.minibatch._fetch`: counts,
ids, rows) and backpropagates its batch's mean loss divided by P; an ``all_reduce`` sums the
gradients (DDP's average of the workers' losses). The single-process twin (no process group,
``shares=P``) runs the P workers' batches in turn: the same steps.

**Bytes** counted at the calls; the cost model per epoch is Σ_steps Σ_r |B_r outside part r| ×
d × 4 for the features, × 8 for the ids, and S · P · (parameters) · 4 for the all-reduce. With
an edge-cut owner partition most clusters lie inside one part and the fetch nearly vanishes;
only the gradients travel.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from theorylab.empirical.distributed import rank_and_world, shard_bounds
from theorylab.empirical.gnn.fullgraph import GCN, gcn_edges, propagate, train_mask, worker_device
from theorylab.empirical.gnn.graphs import Graph
from theorylab.empirical.gnn.minibatch import _all_reduce_grads, _fetch, csr
from theorylab.empirical.gnn.partition import metis_membership
from theorylab.errors import ConfigError
from theorylab.seeding import torch_generator, torch_seed
from theorylab.validation import check_int

__all__ = ["clusters_of", "cluster_owners", "induced_subgraph", "cluster_batches",
           "epoch_remote_nodes", "train_clusters", "rank_clusters"]


def clusters_of(graph: Graph, cluster_size: int, seed: int = 0) -> torch.Tensor:
    """``cluster`` (n,) int64: METIS's cut of the graph into C = ⌈n / cluster_size⌉ clusters
    (seeded), numbered 0..C'−1 (C' ≤ C: METIS may leave a cluster empty on a tiny graph)."""
    check_int(None, "cluster_size", cluster_size, lo=1)
    C = -(-graph.n // cluster_size)
    if C == 1:
        return torch.zeros(graph.n, dtype=torch.int64)
    return torch.unique(metis_membership(graph, C, seed), return_inverse=True)[1]


def cluster_owners(clusters: torch.Tensor, parts: torch.Tensor, P: int) -> torch.Tensor:
    """(C,) the worker owning most nodes of each cluster (ties: the lowest rank)."""
    C = int(clusters.max()) + 1
    counts = torch.zeros(C, P, dtype=torch.int64).index_put_(
        (clusters, parts), torch.ones_like(clusters), accumulate=True)
    return counts.argmax(1) if P > 1 else torch.zeros(C, dtype=torch.int64)


def induced_subgraph(graph: Graph, nodes: torch.Tensor, x: torch.Tensor | None = None,
                     adjacency: tuple[torch.Tensor, torch.Tensor] | None = None) -> Graph:
    """The subgraph induced by ``nodes`` (sorted, distinct), relabelled 0..|nodes|−1 in their
    order; ``x`` replaces ``graph.x[nodes]`` (features fetched from their owners). Reads only
    the chosen nodes' rows of the CSR ``adjacency`` (:func:`~theorylab.empirical.gnn.minibatch.csr`,
    built when not given)."""
    rowptr, col = adjacency if adjacency is not None else csr(graph)
    pos = torch.full((graph.n,), -1, dtype=torch.int64)
    pos[nodes] = torch.arange(len(nodes))
    start, deg = rowptr[nodes], rowptr[nodes + 1] - rowptr[nodes]
    seg = torch.repeat_interleave(torch.arange(len(nodes)), deg)
    flat = start[seg] + torch.arange(int(deg.sum())) - (torch.cumsum(deg, 0) - deg)[seg]
    dst = pos[col[flat]]
    keep = dst >= 0
    # rows in node order, each row's targets sorted: the (source, target) order of edge_index
    return Graph(len(nodes), torch.stack([seg[keep], dst[keep]]),
                 graph.x[nodes] if x is None else x, graph.y[nodes], graph.n_classes)


def cluster_batches(owners: torch.Tensor, q: int, seed: int, epoch: int
                    ) -> list[list[torch.Tensor]]:
    """``batches[step][r]``: the clusters worker r trains on at each step of ``epoch``."""
    P = int(owners.max()) + 1 if len(owners) else 1
    per_worker = [torch.nonzero(owners == r).flatten() for r in range(P)]
    steps = max(1, -(-max(len(c) for c in per_worker) // q))
    out = [[] for _ in range(steps)]
    for r, mine in enumerate(per_worker):
        mine = mine[torch.randperm(len(mine), generator=torch_generator(seed, "clusters", epoch,
                                                                         r))]
        b = shard_bounds(len(mine), steps)
        for s in range(steps):
            out[s].append(mine[b[s]:b[s + 1]])
    return out


def _members(clusters: torch.Tensor) -> list[torch.Tensor]:
    """Each cluster's nodes, sorted."""
    order = torch.argsort(clusters, stable=True)
    return list(torch.split(order, torch.bincount(clusters).tolist()))


def _batch_nodes(members: list[torch.Tensor], chosen: torch.Tensor) -> torch.Tensor:
    if not len(chosen):
        return torch.empty(0, dtype=torch.int64)
    return torch.sort(torch.cat([members[c] for c in chosen.tolist()])).values


def epoch_remote_nodes(clusters: torch.Tensor, parts: torch.Tensor, q: int, seed: int = 0,
                       epoch: int = 0) -> int:
    """Σ_steps Σ_r |B_r outside part r| of one epoch: the feature rows its workers fetch."""
    P = int(parts.max()) + 1
    members = _members(clusters)
    return sum(int((parts[_batch_nodes(members, chosen)] != r).sum())
               for batch in cluster_batches(cluster_owners(clusters, parts, P), q, seed, epoch)
               for r, chosen in enumerate(batch))


def train_clusters(graph: Graph, parts: torch.Tensor | None, clusters: torch.Tensor, *,
                   clusters_per_batch: int = 2, hidden: int = 16, layers: int = 2,
                   epochs: int = 2, lr: float = 0.01, train_fraction: float = 0.5,
                   seed: int = 0, shares: int | None = None, device: str | None = None
                   ) -> dict:
    """Partition-batch training (module docstring). In a process group of P workers each runs
    its batches; without one, ``shares`` (default 1) workers' batches run here in turn: the
    P-worker twin, which counts the batch nodes outside each worker's part."""
    rank, world = rank_and_world()
    P = world if world > 1 else (shares or 1)
    if parts is None:
        parts = torch.zeros(graph.n, dtype=torch.int64)
    if len(clusters) != graph.n:
        raise ConfigError(f"'clusters' of train_clusters must give one cluster per node "
                          f"({graph.n}). Got {len(clusters)}.")
    owners = cluster_owners(clusters, parts, P)
    members = _members(clusters)
    adjacency = csr(graph)
    local = torch.nonzero(parts == rank).flatten() if world > 1 else torch.arange(graph.n)
    pos = torch.full((graph.n,), -1, dtype=torch.int64)
    pos[local] = torch.arange(len(local))
    dev = worker_device(device)
    pos, x_local = pos.to(dev), graph.x[local].to(dev)
    is_train = train_mask(graph.n, train_fraction, seed)
    torch.manual_seed(torch_seed(seed, "cluster-init"))
    model = GCN([graph.x.shape[1]] + [hidden] * (layers - 1) + [graph.n_classes]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    counter: dict[str, int] = {}
    losses, seconds, steps = [], [], 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for batch in cluster_batches(owners, clusters_per_batch, seed, epoch):
            opt.zero_grad()
            total = 0.0
            for r in ([rank] if world > 1 else range(P)):
                nodes = _batch_nodes(members, batch[r])
                if world > 1:
                    x = _fetch(nodes, x_local, parts, pos, rank, world, counter)
                else:    # what worker r would fetch: its batch nodes outside part r
                    x = graph.x[nodes].to(dev)
                    counter["remote_nodes"] = (counter.get("remote_nodes", 0)
                                               + int((parts[nodes] != r).sum()))
                mask = is_train[nodes]
                if not mask.any():
                    continue
                sub = induced_subgraph(graph, nodes, x, adjacency)
                src, dst, w = (t.to(dev) for t in gcn_edges(sub))
                out = model(sub.x, lambda h, _l, s=src, d=dst, w=w, n=sub.n:
                            propagate(h, s, d, w, n))
                mask = mask.to(dev)
                loss = nn.functional.cross_entropy(out[mask], sub.y.to(dev)[mask])
                (loss / P).backward()
                total += float(loss.detach()) / P
            if world > 1:
                _all_reduce_grads(model, counter)
            else:    # as the workers: a zero gradient (not none) where no batch had training nodes
                for p in model.parameters():
                    p.grad = torch.zeros_like(p) if p.grad is None else p.grad
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            losses.append(total)
            steps += 1
        seconds.append(time.perf_counter() - t0)
    loss_sum = torch.tensor(losses, dtype=torch.float64, device=dev)
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(loss_sum)
    remote = counter.get("remote_nodes", 0) + counter.get("remote_inputs", 0)
    return {"params": [p.detach().cpu().clone() for p in model.parameters()],
            "loss": loss_sum.cpu().tolist(), "seconds": seconds, "steps": steps,
            "bytes": {k: int(counter.get(k, 0)) for k in ("ids", "features", "allreduce")},
            "remote_nodes": int(remote)}


def rank_clusters(rank: int, world: int, graph: dict, parts: torch.Tensor,
                  clusters: torch.Tensor, options: dict) -> dict:
    """What :func:`~theorylab.empirical.distributed.launch` runs in each worker."""
    return train_clusters(Graph.from_dict(graph), parts, clusters, **options)
