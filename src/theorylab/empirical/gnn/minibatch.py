r"""Mini-batch GNN training with neighbour sampling (individual sampling), on P workers.

**Sampling** (GraphSAGE, Hamilton et al. 2017; the survey's individual-sample-based execution).
For a set of target nodes, each target keeps a uniform sample *without replacement* of
min(deg, fanout) of its neighbours: every (target, neighbour) pair gets a uniform key from a
seeded ``torch.Generator``, the keys are sorted inside each target's segment, and the first
fanout are kept — torch ops only (no torch-sparse / pyg-lib). Layer by layer from the seeds
outwards this gives *blocks*: block l maps its source nodes (the previous block's targets first,
then the new neighbours) to its targets.

**Model**: GraphSAGE-mean, h_i' = W_s h_i + W_n mean_{j ∈ S(i)} h_j + b (ReLU between layers;
mean over the sampled neighbours, 0 for none).

**Distribution** (data-parallel, partitioned features). The graph's structure is on every worker;
its feature rows are split by a partition. Seeds are assigned to workers in one of two ways:

* ``seeds="owner"`` (default; DistDGL's owner-compute rule): worker r samples its seeds from the
  training nodes T_r it owns. Per epoch it permutes T_r (generator of (seed, epoch, r)) and cuts
  it into S = ⌈|T| / B⌉ batches of ⌊|T_r|/S⌋ or ⌈|T_r|/S⌉ seeds (``shard_bounds``), so every
  worker takes S steps and covers its own training nodes once per epoch;
* ``seeds="global"``: each step draws a global batch of B training seeds (a seeded permutation
  per epoch) and worker r takes share r of it, whoever owns the seeds.

Worker r samples its blocks with the generator of (seed, epoch, step, r), fetches the features of
its input nodes from their owners (``all_to_all_single``: the counts, the ids, then the rows),
and backpropagates its seeds' summed loss divided by the step's global number of seeds; an
``all_reduce`` sums the gradients. The single-process twin (:func:`train_minibatch` with no
process group and ``shares=P``) runs the P shares one after the other with the same generators
and sums their gradients: the same steps.

Bytes counted at the calls; the cost model of the feature fetch is
Σ_steps Σ_r |inputs_r outside part r| × d × 4 (the remote input nodes; no hidden layer is
exchanged, unlike full-graph training), plus 8 bytes per requested id. Owner-local seeds make
the inputs' locality follow the partition: an edge-cut partition (METIS) keeps most sampled
neighbours on their seed's worker.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch import nn

from theorylab.empirical.distributed import rank_and_world, shard_bounds
from theorylab.empirical.gnn.fullgraph import BYTES, train_mask, worker_device
from theorylab.empirical.gnn.graphs import Graph
from theorylab.seeding import torch_generator, torch_seed
from theorylab.validation import check_choice

__all__ = ["SEEDS", "csr", "sample_neighbors", "sample_blocks", "SAGE", "seed_batches", "epoch_remote_inputs",
           "train_minibatch", "rank_minibatch", "sage_dims", "sage_accuracy"]

SEEDS = ("owner", "global")


def csr(graph: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """(rowptr, col): node i's neighbours are ``col[rowptr[i]:rowptr[i+1]]``."""
    src, dst = graph.edge_index                       # sorted by source
    rowptr = torch.zeros(graph.n + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(torch.bincount(src, minlength=graph.n), 0)
    return rowptr, dst


def sample_neighbors(rowptr, col, nodes: torch.Tensor, fanout: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(neighbour ids, index of their target in ``nodes``): min(deg, fanout) neighbours per
    target, uniformly without replacement."""
    start, deg = rowptr[nodes], rowptr[nodes + 1] - rowptr[nodes]
    total = int(deg.sum())
    seg = torch.repeat_interleave(torch.arange(len(nodes)), deg)
    first = torch.cumsum(deg, 0) - deg                 # each segment's offset in the flat list
    pos = start[seg] + torch.arange(total) - first[seg]
    keys = torch.rand(total, generator=generator, dtype=torch.float64)
    order = torch.argsort(seg.to(torch.float64) + keys * 0.5)  # segments in order, shuffled inside
    rank = torch.arange(total) - first[seg[order]]
    chosen = order[rank < fanout]
    return col[pos[chosen]], seg[chosen]


def sample_blocks(rowptr, col, seeds: torch.Tensor, fanouts: list[int],
                  generator: torch.Generator) -> list[dict]:
    """Blocks from the input layer to the seeds; ``fanouts[l]`` is layer l's fanout."""
    nodes, blocks = seeds, []
    for fanout in reversed(fanouts):
        nbr, tgt = sample_neighbors(rowptr, col, nodes, fanout, generator)
        extra = torch.unique(nbr[~torch.isin(nbr, nodes)])
        src = torch.cat([nodes, extra])
        srt, perm = torch.sort(src)
        blocks.insert(0, {"src": src, "n_dst": len(nodes),
                          "edge_src": perm[torch.searchsorted(srt, nbr)], "edge_dst": tgt})
        nodes = src
    return blocks


class SAGE(nn.Module):
    """GraphSAGE-mean layers ``dims[l] → dims[l+1]`` applied to sampled blocks."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.self_lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:],
                                                                         strict=False))
        self.nbr_lins = nn.ModuleList(nn.Linear(a, b, bias=False)
                                      for a, b in zip(dims, dims[1:], strict=False))

    def forward(self, x: torch.Tensor, blocks: list[dict]) -> torch.Tensor:
        h = x
        for l, b in enumerate(blocks):
            n = b["n_dst"]
            agg = torch.zeros(n, h.shape[1], device=h.device).index_add_(0, b["edge_dst"],
                                                                         h[b["edge_src"]])
            count = torch.bincount(b["edge_dst"], minlength=n).clamp(min=1)
            h = self.self_lins[l](h[:n]) + self.nbr_lins[l](agg / count[:, None])
            if l < len(blocks) - 1:
                h = torch.relu(h)
        return h


def _fetch(ids: torch.Tensor, x_local: torch.Tensor, owner: torch.Tensor, pos: torch.Tensor,
           rank: int, world: int, counter: dict) -> torch.Tensor:
    """The feature rows of ``ids`` (CPU) from their owners (three ``all_to_all_single`` calls,
    on the device of ``x_local`` and ``pos``)."""
    dev = x_local.device
    dest = owner[ids]
    order = torch.argsort(dest, stable=True)
    want = ids[order].to(dev)
    send_counts = torch.bincount(dest, minlength=world).to(dev)
    recv_counts = torch.empty_like(send_counts)
    dist.all_to_all_single(recv_counts, send_counts)
    sc, rc = send_counts.tolist(), recv_counts.tolist()
    asked = torch.empty(sum(rc), dtype=torch.int64, device=dev)
    dist.all_to_all_single(asked, want, output_split_sizes=rc, input_split_sizes=sc)
    rows = x_local[pos[asked]]
    got = torch.empty(len(ids), x_local.shape[1], device=dev)
    dist.all_to_all_single(got, rows, output_split_sizes=sc, input_split_sizes=rc)
    remote_req = sum(c for q, c in enumerate(sc) if q != rank)
    remote_rows = sum(c for q, c in enumerate(rc) if q != rank)
    counter["ids"] = counter.get("ids", 0) + remote_req * 8
    counter["features"] = counter.get("features", 0) + remote_rows * x_local.shape[1] * BYTES
    counter["remote_inputs"] = counter.get("remote_inputs", 0) + remote_req
    out = torch.empty_like(got)
    out[order.to(dev)] = got
    return out


def blocks_to(blocks: list[dict], device: torch.device) -> list[dict]:
    """The blocks with their index tensors on ``device``."""
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in blocks]


def seed_batches(train_nodes: torch.Tensor, owner: torch.Tensor, P: int, batch_size: int,
                 seed: int, epoch: int, seeds: str = "owner") -> list[list[torch.Tensor]]:
    """``batches[step][r]``: worker r's seeds at each step of ``epoch`` (module docstring);
    ``owner`` (n,) assigns the nodes to the P workers. Every worker can compute all of them."""
    check_choice(None, "seeds", seeds, SEEDS)
    if seeds == "global":
        perm = train_nodes[torch.randperm(len(train_nodes),
                                          generator=torch_generator(seed, "batches", epoch))]
        out = []
        for b0 in range(0, len(perm), batch_size):
            batch = perm[b0:b0 + batch_size]
            b = shard_bounds(len(batch), P)
            out.append([batch[b[r]:b[r + 1]] for r in range(P)])
        return out
    steps = max(1, -(-len(train_nodes) // batch_size))
    per = []
    for r in range(P):
        mine = train_nodes[owner[train_nodes] == r]
        mine = mine[torch.randperm(len(mine), generator=torch_generator(seed, "batches", epoch, r))]
        b = shard_bounds(len(mine), steps)
        per.append([mine[b[s]:b[s + 1]] for s in range(steps)])
    return [[per[r][s] for r in range(P)] for s in range(steps)]


def epoch_remote_inputs(graph: Graph, parts: torch.Tensor, *, fanouts: tuple[int, ...],
                        batch_size: int, train_fraction: float = 0.5, seed: int = 0,
                        epoch: int = 0, seeds: str = "owner") -> int:
    """Σ_steps Σ_r |inputs_r outside part r| of one epoch's sampled blocks, without training:
    the feature rows (× d × 4 bytes) that epoch's workers fetch."""
    P = int(parts.max()) + 1
    rowptr, col = csr(graph)
    train_nodes = torch.nonzero(train_mask(graph.n, train_fraction, seed)).flatten()
    remote = 0
    for step, shares in enumerate(seed_batches(train_nodes, parts, P, batch_size, seed, epoch,
                                               seeds)):
        for r, mine in enumerate(shares):
            blocks = sample_blocks(rowptr, col, mine, list(fanouts),
                                   torch_generator(seed, "sample", epoch, step, r))
            remote += int((parts[blocks[0]["src"]] != r).sum())
    return remote


def train_minibatch(graph: Graph, parts: torch.Tensor | None, *, hidden: int = 16,
                    layers: int = 2, fanouts: tuple[int, ...] = (5, 5), batch_size: int = 64,
                    epochs: int = 2, lr: float = 0.01, train_fraction: float = 0.5,
                    seed: int = 0, shares: int | None = None, seeds: str = "owner",
                    device: str | None = None) -> dict:
    """Mini-batch training (module docstring). In a process group of P workers each runs its
    share; without one, ``shares`` (default 1) shares run here in turn: the P-worker twin, which
    also counts the inputs that share r's worker would fetch from other parts of ``parts``."""
    rank, world = rank_and_world()
    P = world if world > 1 else (shares or 1)
    if parts is None:
        parts = torch.zeros(graph.n, dtype=torch.int64)
    dev = worker_device(device)
    rowptr, col = csr(graph)
    owner = parts if world > 1 else torch.zeros(graph.n, dtype=torch.int64)
    local = torch.nonzero(owner == rank).flatten()
    pos = torch.full((graph.n,), -1, dtype=torch.int64)
    pos[local] = torch.arange(len(local))
    pos, x_local = pos.to(dev), graph.x[local].to(dev)
    train_nodes = torch.nonzero(train_mask(graph.n, train_fraction, seed)).flatten()
    torch.manual_seed(torch_seed(seed, "sage-init"))
    model = SAGE(sage_dims(graph, hidden, layers)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    counter: dict[str, int] = {}
    losses, seconds, steps = [], [], 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        batches = seed_batches(train_nodes, parts, P, batch_size, seed, epoch, seeds)
        for step, batch in enumerate(batches):
            n_seeds = max(1, sum(len(b) for b in batch))
            opt.zero_grad()
            total = torch.zeros((), dtype=torch.float64)
            for r in ([rank] if world > 1 else range(P)):
                mine = batch[r]
                blocks = sample_blocks(rowptr, col, mine, list(fanouts),
                                       torch_generator(seed, "sample", epoch, step, r))
                ids = blocks[0]["src"]
                if world > 1:
                    x = _fetch(ids, x_local, owner, pos, rank, world, counter)
                else:    # what share r's worker would fetch: its inputs outside part r
                    x = graph.x[ids].to(dev)
                    counter["remote_inputs"] = (counter.get("remote_inputs", 0)
                                                + int((parts[ids] != r).sum()))
                out = model(x, blocks_to(blocks, dev))
                loss = nn.functional.cross_entropy(out, graph.y[mine].to(dev), reduction="sum")
                (loss / n_seeds).backward()
                total += float(loss.detach())
            if world > 1:
                _all_reduce_grads(model, counter)
            opt.step()
            losses.append(total)
            steps += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds.append(time.perf_counter() - t0)
    loss_sum = torch.stack(losses).to(dev)
    if world > 1:
        dist.all_reduce(loss_sum)
    return {"params": [p.detach().cpu().clone() for p in model.parameters()],
            "loss": loss_sum.cpu().tolist(), "seconds": seconds, "steps": steps,
            "bytes": {k: int(counter.get(k, 0)) for k in ("ids", "features", "allreduce")},
            "remote_inputs": int(counter.get("remote_inputs", 0))}


def _all_reduce_grads(model: nn.Module, counter: dict) -> None:
    """Sum every parameter's gradient over the workers (a zero gradient where a worker had no
    data this step), counting the payload."""
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        counter["allreduce"] = counter.get("allreduce", 0) + p.grad.numel() * BYTES
        dist.all_reduce(p.grad)


def sage_dims(graph: Graph, hidden: int, layers: int) -> list[int]:
    return [graph.x.shape[1]] + [hidden] * (layers - 1) + [graph.n_classes]


def sage_accuracy(graph: Graph, params: list[torch.Tensor], hidden: int, layers: int,
                  nodes: torch.Tensor) -> float:
    """Accuracy on ``nodes`` of the SAGE model with ``params``, aggregating every neighbour
    (full-neighbourhood inference: a fanout of the largest degree)."""
    model = SAGE(sage_dims(graph, hidden, layers))
    with torch.no_grad():
        for p, v in zip(model.parameters(), params, strict=True):
            p.copy_(v)
        rowptr, col = csr(graph)
        full = max(1, int(graph.degrees().max()))
        blocks = sample_blocks(rowptr, col, nodes, [full] * layers, torch.Generator())
        pred = model(graph.x[blocks[0]["src"]], blocks).argmax(1)
    return float((pred == graph.y[nodes]).double().mean())


def rank_minibatch(rank: int, world: int, graph: dict, parts: torch.Tensor,
                   options: dict) -> dict:
    """What :func:`~theorylab.empirical.distributed.launch` runs in each worker."""
    return train_minibatch(Graph.from_dict(graph), parts, **options)
