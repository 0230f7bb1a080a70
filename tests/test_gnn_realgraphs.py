"""Real graphs for the distributed GNN study: graspologic's connectomes (read from its data
files) and pandapower grids, against slow readings of the same files and tables."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
import torch

from theorylab.empirical.gnn import realgraphs
from theorylab.empirical.gnn.realgraphs import (
    GRASPOLOGIC_INSTALL,
    drosophila,
    grid_graph,
    mouse_connectome,
    mouse_genotypes,
    named_graph,
)
from theorylab.errors import ConfigError
from theorylab.papers.gnn import real_factor

needs_graspologic = pytest.mark.skipif(
    importlib.util.find_spec("graspologic") is None,
    reason=f"graspologic's connectomes are absent: {GRASPOLOGIC_INSTALL}")


def _edges(g) -> set[tuple[int, int]]:
    return set(map(tuple, g.edge_index.T.tolist()))


def _undirected(pairs) -> set[tuple[int, int]]:
    return {(a, b) for u, v in pairs if u != v for a, b in ((u, v), (v, u))}


@needs_graspologic
@pytest.mark.parametrize("side", ["left", "right"])
def test_drosophila_is_the_support_of_the_synapse_matrix_with_cell_type_labels(side):
    folder = realgraphs.graspologic_data() / "drosophila"
    rows = [[int(t) for t in line.split()] for line in
            (folder / f"{side}_adjacency.csv").read_text().splitlines()]
    cells = (folder / f"{side}_cell_labels.csv").read_text().split()
    g = drosophila(side, dim=8, seed=1)
    ref = _undirected((i, j) for i, row in enumerate(rows) for j, w in enumerate(row) if w > 0)
    assert g.n == len(rows) == len(cells) and _edges(g) == ref
    assert [realgraphs.DROSOPHILA_TYPES[k] for k in g.y.tolist()] == cells
    assert g.x.shape == (g.n, 8) and g.n_classes == 4
    assert torch.equal(g.x, drosophila(side, dim=8, seed=1).x)
    assert not torch.equal(g.x, drosophila(side, dim=8, seed=2).x)


@needs_graspologic
def test_mouse_connectomes_edges_blocks_and_genotypes():
    data = realgraphs.graspologic_data() / "mice"
    files = sorted((data / "edgelists").glob("*.edgelist"))
    g = mouse_connectome(3, dim=4)
    pairs = [tuple(int(float(t)) for t in line.split()[:2])
             for line in files[3].read_text().splitlines() if line.strip()]
    assert g.n == 332 and _edges(g) == _undirected(pairs)
    blocks = pd.read_csv(data / "blocks.csv")
    for b, row in enumerate(blocks.itertuples()):
        assert (g.y[row.i:row.j] == b).all()
    geno = mouse_genotypes()
    table = pd.read_csv(data / "participants.csv")
    assert geno[3] == table.set_index("participant_id").genotype[files[3].name.split("_")[0]]
    assert sorted(pd.Series(geno).value_counts().tolist()) == [8, 8, 8, 8]


def test_grid_graph_is_the_buses_and_in_service_branches():
    pytest.importorskip("pandapower")
    from theorylab.empirical.power.features import case_grid
    net, _, _ = case_grid("case118")
    g = grid_graph("case118", dim=5)
    pos = {b: i for i, b in enumerate(net.bus.index)}
    pairs = [(pos[r.from_bus], pos[r.to_bus]) for r in net.line.itertuples() if r.in_service]
    pairs += [(pos[r.hv_bus], pos[r.lv_bus]) for r in net.trafo.itertuples() if r.in_service]
    assert g.n == len(net.bus) and _edges(g) == _undirected(pairs)
    pv = {pos[b] for b in net.gen[net.gen.in_service].bus}
    slack = {pos[b] for b in net.ext_grid[net.ext_grid.in_service].bus}
    assert {i for i in range(g.n) if g.y[i] == 1} == pv - slack
    assert {i for i in range(g.n) if g.y[i] == 2} == slack


def test_named_graph_errors_are_one_line(monkeypatch):
    with pytest.raises(ConfigError, match=r"^mouse connectomes are 'mouse-0' .. 'mouse-31'"):
        named_graph("mouse-x")
    with pytest.raises(ConfigError, match=r"^'mouse' must be an int >= 0 and <= 31. Got 40."):
        named_graph("mouse-40")
    with pytest.raises(ConfigError, match=r"^'side' of drosophila must be 'left' or 'right'"):
        named_graph("drosophila-up")
    monkeypatch.setattr(realgraphs.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install --no-deps graspologic==3.4.4"):
        drosophila("left")


def test_real_factor_decides_single_graphs_by_threshold_and_families_by_ci():
    def table(mice_hash):
        rows = [{"family": "grid", "graph": "grid", "P": 2, "method": m, "halo_nodes": h,
                 "halo_fraction": h / 100, "n": 100, "m": 150}
                for m, h in (("metis", 10), ("hash", 90))]
        rows += [{"family": "mice", "graph": f"mouse-{k}", "P": 2, "method": m, "halo_nodes": h,
                  "halo_fraction": h / 332, "n": 332, "m": 36000}
                 for k, hh in enumerate(mice_hash) for m, h in (("metis", 300), ("hash", hh))]
        return pd.DataFrame(rows)
    v = real_factor(table([330, 331, 332, 329]))
    assert v.status == "holds" and v.measured == pytest.approx(np.mean([330, 331, 332, 329]) / 300)
    assert real_factor(table([280, 290, 285, 281])).status == "fails"


@needs_graspologic
def test_study_reads_named_graphs_and_partitions_real_graphs():
    """``data`` naming a real graph is that graph; a ``real`` unit's rows are the partition
    statistics of each named graph (``mice``: all 32), METIS and hash, per P."""
    from theorylab.empirical.gnn.partition import partition, partition_stats
    from theorylab.empirical.gnn.study import DistGNNStudy
    s = DistGNNStudy(data="drosophila-left", dim=6, world_sizes=(2, 3))
    g, ref = s.graph(0), drosophila("left", dim=6)
    assert torch.equal(g.edge_index, ref.edge_index) and torch.equal(g.x, ref.x)
    rows = s.run_unit({"kind": "real", "graph": "drosophila-right"})
    right = drosophila("right", dim=6)
    assert {(r["P"], r["method"]): r["halo_nodes"] for r in rows} == {
        (P, m): partition_stats(right, partition(right, P, m))["halo_nodes"]
        for P in (2, 3) for m in ("metis", "hash")}
    mice = s.replace(world_sizes=(2,), partitioners=("hash",)).run_unit(
        {"kind": "real", "graph": "mice"})
    assert [r["graph"] for r in mice] == [f"mouse-{k}" for k in range(32)]
    assert [r["genotype"] for r in mice] == mouse_genotypes()
