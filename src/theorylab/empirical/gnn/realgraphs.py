r"""Real graphs for distributed GNN training: the connectomes shipped by ``graspologic`` and
pandapower grids, as :class:`~theorylab.empirical.gnn.graphs.Graph` objects like the SBM's.

**Connectomes** (read from graspologic's data files, never by importing graspologic: its
``__init__`` needs gensim and umap). The package is installed without its dependencies,
``pip install --no-deps graspologic==3.4.4`` (with them pip would downgrade numpy).

* ``drosophila-left`` / ``drosophila-right``: the larval mushroom-body connectome (Eichler et al.,
  Nature 2017), 209 / 213 neurons, synapse counts A_ij; labels the four cell types (I, K, O, P:
  input, Kenyon, output, projection neurons, in that order).
* ``mouse-<k>`` (k = 0..31): the k-th diffusion-MRI mouse connectome (Wang et al., NeuroImage
  2020), 332 regions, weighted edge lists; labels the 14 blocks (7 superstructures per
  hemisphere, graspologic's ``blocks.csv``). The mouse's genotype (BTBR, B6, CAST, DBA2) is a
  label of the whole graph: :func:`mouse_genotypes`.

The directed weighted connectome becomes the undirected simple graph of its support: an edge
{i, j} where A_ij > 0 or A_ji > 0, self-loops dropped.

**Grids** (``grid:<case>``, a case name of :mod:`theorylab.empirical.power.grid` or a pandapower
JSON): buses are nodes, in-service lines and transformers edges (parallel branches merged), read
through :func:`theorylab.empirical.power.features.case_grid`; labels the bus types (PQ, PV,
slack).

**Features** (none ship with the graphs): a node's profile — for a connectome log(1 + A_i·) and
log(1 + A_·i), its out- and in-connection weights to every node; for a grid its nominal voltage,
load P and Q and log(1 + degree) — with every column standardised, times a seeded Gaussian
matrix R (columns × d) / √columns: a random projection to d features.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from theorylab.empirical.gnn.graphs import Graph, from_edges
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for
from theorylab.validation import check_int

__all__ = ["GRASPOLOGIC_INSTALL", "graspologic_data", "drosophila", "mouse_connectome",
           "mouse_genotypes", "grid_graph", "named_graph", "is_named_graph", "N_MICE"]

GRASPOLOGIC_INSTALL = "pip install --no-deps graspologic==3.4.4"
N_MICE = 32
DROSOPHILA_TYPES = ("I", "K", "O", "P")


def graspologic_data() -> Path:
    """graspologic's ``datasets`` folder, found without importing the package."""
    spec = importlib.util.find_spec("graspologic")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the connectomes need graspologic's data files: {GRASPOLOGIC_INSTALL} "
                          "(without its dependencies, which would downgrade numpy).")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets"


def _project(profile: np.ndarray, dim: int, seed: int, name: str) -> torch.Tensor:
    """Standardised columns of ``profile`` times a seeded Gaussian (columns × dim) / √columns."""
    sd = profile.std(0)
    z = (profile - profile.mean(0)) / np.where(sd > 0, sd, 1.0)
    R = rng_for(seed, "features", name).standard_normal((profile.shape[1], dim))
    return torch.from_numpy((z @ R / np.sqrt(profile.shape[1])).astype(np.float32))


def _from_weights(A: np.ndarray, labels: np.ndarray, n_classes: int, dim: int, seed: int,
                  name: str) -> Graph:
    """The support of the weighted directed adjacency ``A`` as a Graph (module docstring)."""
    u, v = np.nonzero(A)
    x = _project(np.log1p(np.concatenate([A, A.T], axis=1).astype(np.float64)), dim, seed, name)
    return from_edges(u, v, len(A), x=x, y=labels, n_classes=n_classes, self_loops="drop",
                      duplicates="merge", source=name)


def drosophila(side: str = "left", dim: int = 16, seed: int = 0) -> Graph:
    """The ``side`` ("left" / "right") mushroom-body connectome, labels the cell types."""
    if side not in ("left", "right"):
        raise ConfigError(f"'side' of drosophila must be 'left' or 'right'. Got {side!r}.")
    folder = graspologic_data() / "drosophila"
    A = np.loadtxt(folder / f"{side}_adjacency.csv", dtype=np.int64)
    cells = np.loadtxt(folder / f"{side}_cell_labels.csv", dtype=str)
    y = np.array([DROSOPHILA_TYPES.index(c) for c in cells], dtype=np.int64)
    return _from_weights(A, y, len(DROSOPHILA_TYPES), dim, seed, f"drosophila-{side}")


def _mouse_files() -> list[Path]:
    files = sorted((graspologic_data() / "mice" / "edgelists").glob("*.edgelist"))
    if len(files) != N_MICE:
        raise ConfigError(f"graspologic's mice/edgelists holds {len(files)} connectomes, "
                          f"expected {N_MICE}: reinstall with {GRASPOLOGIC_INSTALL}.")
    return files


def mouse_genotypes() -> list[str]:
    """The genotype of mouse k = 0..31 (the order of :func:`mouse_connectome`)."""
    import pandas as pd
    table = pd.read_csv(graspologic_data() / "mice" / "participants.csv")
    geno = dict(zip(table.participant_id, table.genotype, strict=True))
    return [geno[f.name.split("_")[0]] for f in _mouse_files()]


def mouse_connectome(k: int = 0, dim: int = 16, seed: int = 0) -> Graph:
    """Mouse k's connectome (edge lists sorted by subject id), labels its 14 blocks."""
    import pandas as pd
    k = check_int(None, "mouse", k, lo=0, hi=N_MICE - 1)
    data = graspologic_data() / "mice"
    blocks = pd.read_csv(data / "blocks.csv")
    n = int(blocks.j.max())
    y = np.empty(n, dtype=np.int64)
    for b, row in enumerate(blocks.itertuples()):
        y[row.i:row.j] = b
    edges = np.loadtxt(_mouse_files()[k], ndmin=2)
    A = np.zeros((n, n))
    A[edges[:, 0].astype(np.int64), edges[:, 1].astype(np.int64)] = edges[:, 2]
    return _from_weights(A, y, len(blocks), dim, seed, f"mouse-{k}")


def grid_graph(case: str, dim: int = 16, seed: int = 0) -> Graph:
    """A pandapower grid: buses, in-service lines and transformers, labels the bus types."""
    from theorylab.empirical.power.features import case_grid
    from theorylab.empirical.power.grid import SLACK
    net, grid, _ = case_grid(case)
    n = grid.n
    pos = {int(b): i for i, b in enumerate(grid.bus_index)}
    load = net.load[net.load.in_service]
    at = np.array([pos[int(b)] for b in load.bus], dtype=np.int64)
    p, q = np.zeros(n), np.zeros(n)
    np.add.at(p, at, load.p_mw.to_numpy(float))
    np.add.at(q, at, load.q_mvar.to_numpy(float))
    keep = grid.f != grid.t
    deg = np.bincount(np.concatenate([grid.f[keep], grid.t[keep]]), minlength=n)
    profile = np.stack([net.bus.vn_kv.to_numpy(float), p, q, np.log1p(deg)], axis=1)
    return from_edges(grid.f, grid.t, n, x=_project(profile, dim, seed, f"grid:{case}"),
                      y=grid.bus_type.astype(np.int64), n_classes=SLACK + 1, self_loops="drop",
                      duplicates="merge", source=f"grid:{case}")


def is_named_graph(spec: str) -> bool:
    """Whether ``spec`` names a graph of this module (not an edge-list file)."""
    return spec.startswith(("drosophila-", "mouse-", "grid:"))


def named_graph(spec: str, dim: int = 16, seed: int = 0) -> Graph:
    """``drosophila-left``, ``drosophila-right``, ``mouse-<k>`` or ``grid:<case>``."""
    if spec.startswith("drosophila-"):
        return drosophila(spec.removeprefix("drosophila-"), dim, seed)
    if spec.startswith("mouse-"):
        k = spec.removeprefix("mouse-")
        if not k.isdigit():
            raise ConfigError(f"mouse connectomes are 'mouse-0' .. 'mouse-{N_MICE - 1}'. "
                              f"Got {spec!r}.")
        return mouse_connectome(int(k), dim, seed)
    if spec.startswith("grid:"):
        return grid_graph(spec.removeprefix("grid:"), dim, seed)
    raise ConfigError(f"unknown graph {spec!r}: 'drosophila-left', 'drosophila-right', "
                      f"'mouse-0' .. 'mouse-{N_MICE - 1}', 'grid:<case>' or an edge-list file.")
