r"""Graph partitioning for full-graph training: METIS and hash/random, with their costs.

A partition assigns each node to one of P parts (``parts[i] ∈ {0..P−1}``). Part p's *halo*
R_p is the set of nodes owned by other parts that are neighbours of a node of p: the remote
features part p must receive in every layer. Reported (Lin et al., Proc. IEEE 2023, §IV):

* edge cut: the number of undirected edges whose ends lie in different parts;
* balance: max_p |V_p| · P / n (1 is perfect);
* halo fraction: Σ_p |R_p| / n; the survey's communication volume of full-graph training is
  Σ_p |R_p| × feature dimension × layers (× bytes per value) per epoch.

Methods: ``"metis"`` (multilevel edge-cut minimisation, ``pymetis``, seeded), ``"hash"``
(node id mod P: the ids of :func:`~theorylab.empirical.gnn.graphs.sbm` are shuffled, so this is
a random balanced assignment that ignores the structure) and ``"random"`` (a seeded uniformly
random balanced assignment).
"""

from __future__ import annotations

import numpy as np
import torch

from theorylab.empirical.gnn.graphs import Graph
from theorylab.errors import ConfigError
from theorylab.seeding import seed_for
from theorylab.validation import check_choice, check_int

__all__ = ["METHODS", "partition", "metis_membership", "halo", "partition_stats"]

METHODS = ("metis", "hash", "random")


def _check_parts(graph: Graph, n_parts: int) -> int:
    P = check_int(None, "n_parts", n_parts, lo=1)
    if P > graph.n:
        raise ConfigError(f"cannot cut a graph of {graph.n} nodes into {P} parts: every worker "
                          "needs at least one node (P <= number of nodes).")
    return P


def partition(graph: Graph, n_parts: int, method: str = "metis", seed: int = 0) -> torch.Tensor:
    """``parts`` (n,) int64: node i's part, by ``method`` (see the module docstring)."""
    P = _check_parts(graph, n_parts)
    check_choice(None, "method", method, METHODS)
    if P == 1:
        return torch.zeros(graph.n, dtype=torch.int64)
    if method == "hash":
        return torch.arange(graph.n, dtype=torch.int64) % P
    if method == "random":
        rng = np.random.default_rng(seed_for(seed, "random-partition"))
        return torch.from_numpy(rng.permutation(np.arange(graph.n) % P).astype(np.int64))
    parts = metis_membership(graph, P, seed)
    if len(torch.unique(parts)) < P:     # METIS may leave a part empty on tiny graphs
        raise ConfigError(f"METIS left a part empty cutting {graph.n} nodes into {P} parts; "
                          "use fewer parts or method 'hash'.")
    return parts


def metis_membership(graph: Graph, n_parts: int, seed: int = 0) -> torch.Tensor:
    """METIS's (seeded) part of every node; a part may be empty on a tiny graph."""
    import pymetis
    src, dst = graph.edge_index.numpy()
    xadj = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=graph.n))])
    opts = pymetis.Options(seed=int(seed_for(seed, "metis") % (2**31 - 1)))
    _, membership = pymetis.part_graph(n_parts, pymetis.CSRAdjacency(xadj, dst), options=opts)
    return torch.as_tensor(np.asarray(membership), dtype=torch.int64)


def halo(graph: Graph, parts: torch.Tensor, p: int) -> torch.Tensor:
    """R_p: sorted ids of the nodes outside part p adjacent to a node of part p."""
    src, dst = graph.edge_index
    cross = (parts[dst] == p) & (parts[src] != p)
    mark = torch.zeros(graph.n, dtype=torch.bool)
    mark[src[cross]] = True              # a marker per node: O(m), no sort
    return torch.nonzero(mark).flatten()


def partition_stats(graph: Graph, parts: torch.Tensor) -> dict:
    """Edge cut, balance, halo sizes and halo fraction of a partition (module docstring)."""
    P = int(parts.max()) + 1
    src, dst = graph.edge_index
    sizes = torch.bincount(parts, minlength=P)
    halos = [int(len(halo(graph, parts, p))) for p in range(P)]
    return {"parts": P, "edge_cut": int((parts[src] != parts[dst]).sum()) // 2,
            "balance": float(sizes.max()) * P / graph.n, "halo_nodes": sum(halos),
            "max_halo": max(halos), "halo_fraction": sum(halos) / graph.n}
