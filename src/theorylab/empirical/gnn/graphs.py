r"""Graphs for distributed GNN training: a seeded stochastic block model and readers of users' graphs.

A :class:`Graph` is undirected and simple: ``edge_index`` (2, 2m) holds both directions of each
of its m edges, sorted by (source, target), with no self-loop and no duplicate. Node features
``x`` (n, d) and labels ``y`` (n,) go with it.

**Stochastic block model** (:func:`sbm`). k blocks of sizes s_1..s_k; each unordered pair {i, j}
is an edge independently with probability p_in if i and j share a block, p_out otherwise. Per
block pair (a, b) the number of edges is drawn Binomial(N_ab, p) (N_aa = s_a(s_a − 1)/2,
N_ab = s_a s_b) and that many distinct pairs uniformly, so 10⁶-node graphs need O(m) memory.
Labels are the blocks; features x_i = signal · μ_{y_i} + ε_i with block means μ_b ~ N(0, I_d)
and ε_i ~ N(0, I_d). Node ids are shuffled (a block is not a range of ids).

**Readers.** :func:`read_edge_list` reads ``u v`` lines (``#`` comments, blank lines allowed);
:func:`from_pyg` takes a PyG ``Data``. Out-of-range ids are an error; self-loops and duplicate
edges (``u v`` twice, or ``u v`` and ``v u``) are an error or, by policy, dropped / merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from theorylab.errors import ConfigError, DataFormatError, InputError
from theorylab.seeding import rng_for
from theorylab.validation import check_choice, check_int, check_real

__all__ = ["Graph", "sbm", "read_edge_list", "from_pyg", "from_edges", "SELF_LOOPS", "DUPLICATES"]

SELF_LOOPS = ("error", "drop")
DUPLICATES = ("error", "merge")


@dataclass(frozen=True)
class Graph:
    """An undirected simple graph with node features and labels (see the module docstring)."""

    n: int
    edge_index: torch.Tensor       # (2, 2m) int64, both directions, sorted, no loops/duplicates
    x: torch.Tensor                # (n, d) float32
    y: torch.Tensor                # (n,) int64
    n_classes: int

    @property
    def n_edges(self) -> int:
        """m, the number of undirected edges."""
        return int(self.edge_index.shape[1]) // 2

    def degrees(self) -> torch.Tensor:
        return torch.bincount(self.edge_index[1], minlength=self.n)

    def to_dict(self) -> dict:
        """Tensors and ints only (an artifact that loads with ``weights_only=True``)."""
        return {"n": self.n, "edge_index": self.edge_index, "x": self.x, "y": self.y,
                "n_classes": self.n_classes}

    @classmethod
    def from_dict(cls, d: dict) -> Graph:
        return cls(int(d["n"]), d["edge_index"], d["x"], d["y"], int(d["n_classes"]))


def _symmetric(u: np.ndarray, v: np.ndarray, n: int) -> torch.Tensor:
    """Both directions of the undirected edges (u, v), u ≠ v, unique, sorted by (source, target)."""
    src = np.concatenate([u, v]).astype(np.int64)
    dst = np.concatenate([v, u]).astype(np.int64)
    key = np.unique(src * n + dst)
    return torch.from_numpy(np.stack([key // n, key % n]))


def _distinct_pairs(count: int, n_a: int, n_b: int | None, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct pairs drawn uniformly: unordered i < j within one block of n_a nodes
    (``n_b`` None), or (i, j) in [0, n_a) × [0, n_b) between two blocks."""
    width = n_a if n_b is None else n_b
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < count:
        draw = int(1.1 * (count - len(keys))) + 16
        i, j = rng.integers(0, n_a, draw), rng.integers(0, width, draw)
        if n_b is None:
            keep = i != j
            i, j = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        keys = np.union1d(keys, i * width + j)
    keys = rng.choice(keys, size=count, replace=False)
    return keys // width, keys % width


def sbm(sizes: tuple[int, ...] | list[int], p_in: float, p_out: float, dim: int,
        signal: float = 1.0, seed: int = 0) -> Graph:
    """A seeded stochastic block model with block labels and Gaussian block features."""
    sizes = [check_int("sbm", "sizes[]", s, lo=1) for s in sizes]
    if not sizes:
        raise ConfigError("'sizes' of sbm must name at least one block. Got [].")
    check_real("sbm", "p_in", p_in, lo=0, hi=1)
    check_real("sbm", "p_out", p_out, lo=0, hi=1)
    check_int("sbm", "dim", dim, lo=1)
    check_real("sbm", "signal", signal, lo=0)
    rng = rng_for(seed, "sbm")
    n, k = sum(sizes), len(sizes)
    start = np.concatenate([[0], np.cumsum(sizes)])
    us, vs = [], []
    for a in range(k):
        for b in range(a, k):
            pairs = sizes[a] * (sizes[a] - 1) // 2 if a == b else sizes[a] * sizes[b]
            count = int(rng.binomial(pairs, p_in if a == b else p_out)) if pairs else 0
            if count:
                i, j = _distinct_pairs(count, sizes[a], None if a == b else sizes[b], rng)
                us.append(start[a] + i)
                vs.append(start[b] + j)
    block = np.repeat(np.arange(k), sizes)
    perm = rng.permutation(n)            # node id perm[i] gets the i-th node of the block order
    u = perm[np.concatenate(us)] if us else np.empty(0, np.int64)
    v = perm[np.concatenate(vs)] if vs else np.empty(0, np.int64)
    y = np.empty(n, dtype=np.int64)
    y[perm] = block
    mu = rng.standard_normal((k, dim))
    x = signal * mu[y] + rng.standard_normal((n, dim))
    return Graph(n, _symmetric(u, v, n), torch.from_numpy(x.astype(np.float32)),
                 torch.from_numpy(y), k)


def _random_attributes(n: int, dim: int, n_classes: int, seed: int):
    rng = rng_for(seed, "attributes")
    return (torch.from_numpy(rng.standard_normal((n, dim)).astype(np.float32)),
            torch.from_numpy(rng.integers(0, n_classes, n).astype(np.int64)))


def from_edges(u, v, n_nodes: int, *, x=None, y=None, n_classes: int | None = None,
               self_loops: str = "error", duplicates: str = "error", dim: int = 8,
               seed: int = 0, source: str = "edges", lines=None) -> Graph:
    """A :class:`Graph` from endpoint arrays under the self-loop and duplicate policies.

    Without ``x``/``y`` the features and labels are seeded random (``dim`` features, two
    classes): what the communication and equivalence measurements need, no more. ``lines``
    (the file's line of each edge) lets errors name the line.
    """
    check_choice(None, "self_loops", self_loops, SELF_LOOPS)
    check_choice(None, "duplicates", duplicates, DUPLICATES)
    n = check_int(None, "n_nodes", n_nodes, lo=1)
    u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)

    def fail(k: int, msg: str):
        if lines is not None:
            raise DataFormatError(msg, source, int(lines[k]))
        raise InputError(f"{source}: edge {k}: {msg}")

    bad = np.flatnonzero((u < 0) | (u >= n) | (v < 0) | (v >= n))
    if len(bad):
        k = int(bad[0])
        node = int(u[k]) if not 0 <= u[k] < n else int(v[k])
        fail(k, f"node id {node} is out of range [0, {n}) ({len(bad)} such edges).")
    loops = np.flatnonzero(u == v)
    if len(loops) and self_loops == "error":
        k = int(loops[0])
        fail(k, f"self-loop {u[k]}-{u[k]} (self_loops='error'; 'drop' removes them).")
    keep = u != v
    idx = np.flatnonzero(keep)
    key = np.minimum(u[idx], v[idx]) * n + np.maximum(u[idx], v[idx])
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    if duplicates == "error" and (counts > 1).any():
        seen = np.zeros(len(key), dtype=bool)
        seen[first] = True
        k = int(idx[np.flatnonzero(~seen)[0]])
        fail(k, f"duplicate edge {u[k]}-{v[k]} (duplicates='error'; 'merge' keeps one).")
    if x is None or y is None:
        n_classes = 2
        x, y = _random_attributes(n, dim, n_classes, seed)
    else:
        x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
        if x.ndim != 2 or x.shape[0] != n or y.shape != (n,):
            raise InputError(f"{source}: 'x' must have shape ({n}, d) and 'y' ({n},). "
                             f"Got {tuple(x.shape)} and {tuple(y.shape)}.")
        n_classes = int(n_classes if n_classes is not None else int(y.max()) + 1)
    return Graph(n, _symmetric(u[keep], v[keep], n), x, y, n_classes)


def read_edge_list(path: str | Path, n_nodes: int | None = None, *, self_loops: str = "error",
                   duplicates: str = "error", dim: int = 8, seed: int = 0) -> Graph:
    """Read ``u v`` lines (0-based integer ids; ``#`` comments) into a :class:`Graph`.

    ``n_nodes`` defaults to the largest id + 1; an id outside [0, n_nodes) is an error naming
    the file and line. Features and labels are seeded random (see :func:`from_edges`).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"edge-list file '{path}' does not exist.")
    us, vs, lines = [], [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for no, raw in enumerate(fh, 1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                a, b = int(parts[0]), int(parts[1])
            except ValueError:
                raise DataFormatError(f"expected two integer node ids 'u v'. Got {text[:60]!r}.",
                                      path, no) from None
            us.append(a)
            vs.append(b)
            lines.append(no)
    if not us:
        raise DataFormatError("no edges (every line is blank or a comment).", path)
    u, v = np.array(us, dtype=np.int64), np.array(vs, dtype=np.int64)
    neg = np.flatnonzero((u < 0) | (v < 0))
    if len(neg):
        k = int(neg[0])
        raise DataFormatError(f"node id {min(u[k], v[k])} is negative (ids are 0-based).",
                              path, lines[k])
    if n_nodes is None:
        n_nodes = int(max(u.max(), v.max())) + 1
    return from_edges(u, v, n_nodes, self_loops=self_loops, duplicates=duplicates, dim=dim,
                      seed=seed, source=str(path), lines=lines)


def from_pyg(data, *, self_loops: str = "error", duplicates: str = "merge") -> Graph:
    """A :class:`Graph` from a PyG ``Data`` (``edge_index``, ``num_nodes``, optional ``x``, ``y``).

    PyG stores an undirected edge in both directions, so duplicates merge by default.
    """
    ei = data.edge_index.detach().cpu().numpy()
    x = getattr(data, "x", None)
    y = getattr(data, "y", None)
    return from_edges(ei[0], ei[1], int(data.num_nodes), x=x, y=y, self_loops=self_loops,
                      duplicates=duplicates, source="PyG Data")
