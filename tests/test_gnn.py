"""Distributed GNN training: graphs and readers, partition invariants, halo plans, full-graph
training on 2 gloo ranks against one process, and the launcher's failure modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from support.gnn_ranks import die_on_rank1, nothing, sleep_forever
from theorylab.empirical.distributed import launch
from theorylab.empirical.gnn.clusterbatch import (
    cluster_batches,
    cluster_owners,
    clusters_of,
    epoch_remote_nodes,
    induced_subgraph,
    train_clusters,
)
from theorylab.empirical.gnn.fullgraph import (
    cost_model_bytes,
    gcn_edges,
    make_plan,
    propagate,
    train_full_graph,
)
from theorylab.empirical.gnn.graphs import from_edges, from_pyg, read_edge_list, sbm
from theorylab.empirical.gnn.minibatch import (
    csr,
    epoch_remote_inputs,
    sample_blocks,
    sample_neighbors,
    seed_batches,
    train_minibatch,
)
from theorylab.empirical.gnn.partition import halo, partition, partition_stats
from theorylab.empirical.gnn.study import rank_workflows
from theorylab.errors import ConfigError, DataFormatError, TheorylabError

pytest.importorskip("pymetis")


def _edge_set(g) -> set[tuple[int, int]]:
    return set(map(tuple, g.edge_index.T.tolist()))


# --- graphs -----------------------------------------------------------------------------------

def test_sbm_is_simple_symmetric_sorted_and_reproducible_per_seed():
    a, b, c = sbm([30, 20, 25], 0.3, 0.02, 4, seed=3), sbm([30, 20, 25], 0.3, 0.02, 4, seed=3), \
        sbm([30, 20, 25], 0.3, 0.02, 4, seed=4)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x)
    assert not torch.equal(a.edge_index, c.edge_index)
    e = _edge_set(a)
    assert all((v, u) in e and u != v for u, v in e) and len(e) == a.edge_index.shape[1]
    key = (a.edge_index[0] * a.n + a.edge_index[1]).numpy()
    assert (np.diff(key) > 0).all()
    assert torch.bincount(a.y).tolist() == [30, 20, 25]


def test_sbm_edge_counts_match_p_in_and_p_out():
    """Within- and between-block edge counts lie within 4 standard deviations of N·p."""
    sizes, p_in, p_out = [200, 200, 200], 0.05, 0.005
    g = sbm(sizes, p_in, p_out, 2, seed=0)
    src, dst = g.edge_index
    same = int((g.y[src] == g.y[dst]).sum()) // 2
    cross = g.n_edges - same
    n_in = sum(s * (s - 1) // 2 for s in sizes)
    n_out = (600 * 599) // 2 - n_in
    for count, n, p in ((same, n_in, p_in), (cross, n_out, p_out)):
        assert abs(count - n * p) < 4 * np.sqrt(n * p * (1 - p))


def test_sbm_features_carry_the_blocks():
    g = sbm([100, 100], 0.1, 0.01, 8, signal=3.0, seed=1)
    means = torch.stack([g.x[g.y == b].mean(0) for b in range(2)])
    nearest = torch.cdist(g.x, means).argmin(1)
    assert (nearest == g.y).float().mean() > 0.95


def test_edge_list_reader_round_trip_and_policies(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("# a comment\n0 1\n1 2  # trailing\n\n2 3\n")
    g = read_edge_list(f)
    assert g.n == 4 and _edge_set(g) == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)}
    f.write_text("0 1\n1 1\n2 1\n1 0\n")
    with pytest.raises(DataFormatError, match=r"g.txt:2: self-loop 1-1 \(self_loops='error'"):
        read_edge_list(f)
    with pytest.raises(DataFormatError, match=r"g.txt:4: duplicate edge 1-0 \(duplicates="):
        read_edge_list(f, self_loops="drop")
    g = read_edge_list(f, self_loops="drop", duplicates="merge")
    assert g.n_edges == 2


@pytest.mark.parametrize("text,kwargs,msg", [
    ("0 1\n1 7\n", {"n_nodes": 5}, r":2: node id 7 is out of range \[0, 5\) \(1 such edges\)"),
    ("0 1\n-1 2\n", {}, r":2: node id -1 is negative"),
    ("0 1\n1 x\n", {}, r":2: expected two integer node ids 'u v'. Got '1 x'"),
    ("0 1 2\n", {}, r":1: expected two integer node ids"),
    ("# nothing\n", {}, r"no edges"),
])
def test_bad_edge_lists_are_one_line_errors_naming_file_and_line(tmp_path, text, kwargs, msg):
    f = tmp_path / "bad.txt"
    f.write_text(text)
    with pytest.raises(DataFormatError, match=msg) as exc:
        read_edge_list(f, **kwargs)
    assert str(f) in str(exc.value) and "\n" not in str(exc.value)


def test_from_pyg_merges_the_two_directions():
    pyg = pytest.importorskip("torch_geometric.data")
    data = pyg.Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3,
                    x=torch.ones(3, 2), y=torch.tensor([0, 1, 1]))
    g = from_pyg(data)
    assert g.n_edges == 2 and g.n_classes == 2 and torch.equal(g.x, torch.ones(3, 2))


# --- partitions -------------------------------------------------------------------------------

@st.composite
def graphs(draw):
    n = draw(st.integers(4, 40))
    m = draw(st.integers(0, 3 * n))
    u = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), dtype=np.int64)
    v = np.array(draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m)), dtype=np.int64)
    return from_edges(u, v, n, self_loops="drop", duplicates="merge")


@settings(deadline=None, max_examples=25)
@given(graphs(), st.integers(1, 4), st.sampled_from(["metis", "hash", "random"]))
def test_partition_invariants_against_a_slow_reference(g, P, method):
    """Every node in exactly one part; halo(p) is exactly the remote neighbours of part p;
    edge cut and halo totals equal explicit loops over the edges."""
    try:
        parts = partition(g, P, method, seed=1)
    except ConfigError as exc:          # METIS may leave a part empty on a sparse toy graph
        assert method == "metis" and "left a part empty" in str(exc)
        return
    assert parts.shape == (g.n,) and set(parts.tolist()) == set(range(P))
    adj = {i: set() for i in range(g.n)}
    for a, b in _edge_set(g):
        adj[a].add(b)
    for p in range(P):
        ref = sorted({j for i in range(g.n) if parts[i] == p for j in adj[i] if parts[j] != p})
        assert halo(g, parts, p).tolist() == ref
    st_ = partition_stats(g, parts)
    cut = sum(1 for a, b in _edge_set(g) if a < b and parts[a] != parts[b])
    assert st_["edge_cut"] == cut
    assert st_["halo_nodes"] == sum(len(halo(g, parts, p)) for p in range(P))


def test_metis_is_seeded_and_cuts_fewer_edges_than_hash_on_a_block_graph():
    g = sbm([60] * 4, 0.2, 0.005, 2, seed=2)
    a, b = partition(g, 4, "metis", seed=5), partition(g, 4, "metis", seed=5)
    assert torch.equal(a, b)
    assert partition_stats(g, a)["edge_cut"] < partition_stats(g, partition(g, 4, "hash"))["edge_cut"]


def test_more_parts_than_nodes_is_a_one_line_config_error():
    g = sbm([3], 0.5, 0.0, 2)
    with pytest.raises(ConfigError, match=r"^cannot cut a graph of 3 nodes into 4 parts"):
        partition(g, 4, "hash")


# --- halo plan and model ----------------------------------------------------------------------

def test_halo_plans_rebuild_every_edge_into_the_local_rows():
    """Mapping each plan's local edges back to global ids gives exactly the edges (and the
    self-loops) into that part's rows, with the same weights."""
    g = sbm([20, 20, 20], 0.3, 0.05, 2, seed=1)
    parts = partition(g, 3, "hash")
    src, dst, w = gcn_edges(g)
    for p in range(3):
        plan = make_plan(g, parts, p, 3)
        cols = torch.cat([plan.local, plan.halo])
        got = sorted(zip(cols[plan.src].tolist(), plan.local[plan.dst].tolist(),
                         plan.w.tolist(), strict=True))
        keep = parts[dst] == p
        ref = sorted(zip(src[keep].tolist(), dst[keep].tolist(), w[keep].tolist(), strict=True))
        assert got == ref
        assert sum(plan.recv_counts) == len(plan.halo)
        # what p sends to q is exactly q's halo nodes owned by p
        for q in range(3):
            if q != p:
                want = halo(g, parts, q)
                assert plan.local[plan.send_idx[q]].tolist() == want[parts[want] == p].tolist()


def test_single_process_gcn_equals_pyg_gcnconv():
    nn_ = pytest.importorskip("torch_geometric.nn")
    g = sbm([15, 15], 0.3, 0.05, 5, seed=0)
    src, dst, w = gcn_edges(g)
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 3)
    conv = nn_.GCNConv(5, 3)
    with torch.no_grad():
        conv.lin.weight.copy_(lin.weight)
        conv.bias.copy_(lin.bias)
    ours = lin(propagate(g.x, src, dst, w, g.n))
    assert torch.allclose(ours, conv(g.x, g.edge_index), atol=1e-6)


# --- neighbour sampling ----------------------------------------------------------------------

def test_sampled_neighbours_are_real_distinct_and_min_deg_fanout():
    g = sbm([40, 40], 0.3, 0.05, 2, seed=3)
    rowptr, col = csr(g)
    nodes = torch.tensor([0, 7, 13, 50, 79])
    nbr, tgt = sample_neighbors(rowptr, col, nodes, 4, torch.Generator().manual_seed(0))
    edges = _edge_set(g)
    deg = g.degrees()
    for k, i in enumerate(nodes.tolist()):
        mine = nbr[tgt == k].tolist()
        assert len(mine) == len(set(mine)) == min(int(deg[i]), 4)
        assert all((i, j) in edges for j in mine)


def test_sampling_is_reproducible_per_seed_and_blocks_chain():
    g = sbm([40, 40], 0.3, 0.05, 2, seed=3)
    rowptr, col = csr(g)
    seeds = torch.tensor([1, 2, 3, 60])
    a = sample_blocks(rowptr, col, seeds, [3, 2], torch.Generator().manual_seed(5))
    b = sample_blocks(rowptr, col, seeds, [3, 2], torch.Generator().manual_seed(5))
    c = sample_blocks(rowptr, col, seeds, [3, 2], torch.Generator().manual_seed(6))
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True)
               for k in ("src", "edge_src", "edge_dst"))
    assert any(not torch.equal(x["src"], y["src"]) for x, y in zip(a, c, strict=True))
    assert torch.equal(a[-1]["src"][:a[-1]["n_dst"]], seeds)
    assert torch.equal(a[0]["src"][:a[0]["n_dst"]], a[1]["src"])
    for blk in a:   # every sampled edge of a block is an edge of the graph
        edges = _edge_set(g)
        dst = blk["src"][blk["edge_dst"]]
        assert all((int(i), int(j)) in edges for i, j in zip(dst, blk["src"][blk["edge_src"]],
                                                            strict=True))


def test_sampling_is_uniform_over_the_neighbours():
    """A star's centre (10 leaves), fanout 3, 3,000 draws: every leaf is chosen with
    probability 3/10 (chi-square goodness of fit)."""
    from scipy import stats
    g = from_edges(np.zeros(10, dtype=np.int64), np.arange(1, 11), 11)
    rowptr, col = csr(g)
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(11)
    for _ in range(3000):
        nbr, _ = sample_neighbors(rowptr, col, torch.tensor([0]), 3, gen)
        counts[nbr.numpy()] += 1
    assert stats.chisquare(counts[1:]).pvalue > 1e-3


# --- owner-local seeds -------------------------------------------------------------------

@pytest.mark.parametrize("P,B", [(1, 7), (2, 16), (3, 5), (4, 100)])
def test_owner_local_seeds_cover_each_owners_training_nodes_once_per_epoch(P, B):
    """Owner-local: worker r's seeds are nodes it owns; over an epoch every training node is a
    seed exactly once; every worker takes ⌈|T| / B⌉ steps; reproducible per (seed, epoch).
    Global: the same coverage, batches of B cut in P shares."""
    g = sbm([30, 30, 30], 0.2, 0.02, 2, seed=1)
    parts = partition(g, P, "hash")
    train = torch.arange(0, g.n, 2)
    for mode in ("owner", "global"):
        batches = seed_batches(train, parts, P, B, seed=4, epoch=0, seeds=mode)
        assert len(batches) == -(-len(train) // B) and all(len(b) == P for b in batches)
        seen = torch.cat([s for b in batches for s in b])
        assert sorted(seen.tolist()) == train.tolist()
        if mode == "owner":
            assert all(bool((parts[s] == r).all()) for b in batches for r, s in enumerate(b))
        else:
            assert all(sum(len(s) for s in b) <= B for b in batches)
        again = seed_batches(train, parts, P, B, seed=4, epoch=0, seeds=mode)
        other = seed_batches(train, parts, P, B, seed=4, epoch=1, seeds=mode)
        assert all(torch.equal(a, b) for x, y in zip(batches, again, strict=True)
                   for a, b in zip(x, y, strict=True))
        assert any(not torch.equal(a, b) for x, y in zip(batches, other, strict=True)
                   for a, b in zip(x, y, strict=True))


def test_owner_local_seeds_fetch_less_under_metis_than_hash():
    """The locality owner-local seeds buy: on a block graph METIS workers sample fewer remote
    inputs than hash workers, while globally split seeds fetch about as much under both."""
    g = sbm([100] * 4, 0.08, 0.002, 2, seed=2)
    kw = {"fanouts": (4, 4), "batch_size": 50}
    metis, hashed = partition(g, 2, "metis"), partition(g, 2, "hash")
    assert 2 * epoch_remote_inputs(g, metis, **kw) < epoch_remote_inputs(g, hashed, **kw)
    glob = [epoch_remote_inputs(g, p, seeds="global", **kw) for p in (metis, hashed)]
    assert epoch_remote_inputs(g, metis, **kw) < glob[0]


# --- partition batches (Cluster-GCN) ---------------------------------------------------------

@settings(deadline=None, max_examples=25)
@given(graphs(), st.data())
def test_induced_subgraph_against_a_slow_reference(g, data):
    """Edges of the induced subgraph = the graph's edges with both ends chosen, relabelled by
    rank among the chosen nodes; sorted, both directions; features and labels follow."""
    chosen = sorted(data.draw(st.sets(st.integers(0, g.n - 1), min_size=1)))
    sub = induced_subgraph(g, torch.tensor(chosen))
    label = {v: k for k, v in enumerate(chosen)}
    ref = sorted((label[a], label[b]) for a, b in _edge_set(g) if a in label and b in label)
    assert sub.edge_index.T.tolist() == [list(e) for e in ref]
    assert sub.n == len(chosen) and torch.equal(sub.x, g.x[chosen])
    assert torch.equal(sub.y, g.y[chosen])


def test_cluster_owners_are_the_majority_part():
    clusters = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    parts = torch.tensor([1, 1, 0, 0, 1, 2, 2, 1, 0])
    assert cluster_owners(clusters, parts, 3).tolist() == [1, 0, 2]   # cluster 1: a tie


@pytest.mark.parametrize("q", [1, 2, 3])
def test_cluster_batches_visit_each_owned_cluster_once_and_are_reproducible(q):
    """Every worker takes ⌈max_r C_r / q⌉ steps and draws each of its clusters exactly once per
    epoch; the batches repeat per (seed, epoch) and change with the epoch."""
    owners = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0, 1, 1])
    batches = cluster_batches(owners, q, seed=2, epoch=0)
    assert len(batches) == -(-7 // q)
    for r in range(2):
        mine = sorted(c for b in batches for c in b[r].tolist())
        assert mine == torch.nonzero(owners == r).flatten().tolist()
    again, other = cluster_batches(owners, q, 2, 0), cluster_batches(owners, q, 2, 1)
    flat = [c for b in batches for s in b for c in s.tolist()]
    assert flat == [c for b in again for s in b for c in s.tolist()]
    assert flat != [c for b in other for s in b for c in s.tolist()]


def test_metis_clusters_keep_most_edges_and_their_batches_stay_local():
    """METIS clusters cut fewer than half the edges a random clustering cuts on a block graph;
    with METIS owners the batches fetch far fewer remote nodes than with hash owners."""
    g = sbm([50] * 4, 0.15, 0.003, 2, seed=4)
    clusters = clusters_of(g, 25, seed=0)
    assert int(clusters.max()) + 1 == 8
    random_cut = partition_stats(g, partition(g, 8, "random"))["edge_cut"]
    assert partition_stats(g, clusters)["edge_cut"] < 0.5 * random_cut
    metis, hashed = partition(g, 2, "metis"), partition(g, 2, "hash")
    assert 4 * epoch_remote_nodes(clusters, metis, 2) < epoch_remote_nodes(clusters, hashed, 2)


def test_one_process_partition_batches_equal_pyg_cluster_loader_batches():
    """The single-process batch of q clusters is the subgraph PyG's ClusterLoader would build
    from the same clusters (its edges within the chosen clusters)."""
    pyg = pytest.importorskip("torch_geometric.utils")
    g = sbm([20] * 3, 0.3, 0.05, 2, seed=5)
    nodes = torch.tensor(sorted(set(range(0, 60, 3)) | set(range(1, 60, 7))))
    ref, _ = pyg.subgraph(nodes, g.edge_index, relabel_nodes=True, num_nodes=g.n)
    assert torch.equal(induced_subgraph(g, nodes).edge_index, ref)


def test_train_clusters_rejects_clusters_of_the_wrong_length():
    g = sbm([10, 10], 0.3, 0.05, 2)
    with pytest.raises(ConfigError, match=r"'clusters' of train_clusters must give one cluster "
                                          r"per node \(20\)\. Got 5\."):
        train_clusters(g, None, torch.zeros(5, dtype=torch.int64))


# --- distributed ------------------------------------------------------------------------------

def test_two_gloo_ranks_equal_one_process_and_count_the_cost_model_bytes():
    """P = 2 vs one process, same init and steps: parameters to 1e-5 relative, the same losses;
    bytes counted at the calls equal the cost model exactly. The stale variant shares epoch 0's
    loss, then departs from the synchronous trajectory, and sends fewer halo gradients.
    Mini-batch (owner-local seeds) and partition batches: 2 workers equal their shares run in
    turn, and the feature rows fetched are exactly the inputs / batch nodes outside each
    worker's part (also as counted by sampling alone, without training)."""
    g = sbm([25] * 4, 0.2, 0.02, 6, seed=7)
    parts = partition(g, 2, "metis", seed=0)
    opts = {"hidden": 8, "layers": 3, "epochs": 4, "lr": 0.05, "seed": 1}
    mb = {"hidden": 8, "fanouts": (4, 3), "batch_size": 20, "epochs": 2, "seed": 1}
    # random clusters: batches straddle the parts, so features are fetched
    clusters = partition(g, 10, "random", seed=3)
    cb = {"hidden": 8, "clusters_per_batch": 2, "epochs": 3, "lr": 0.05, "seed": 1}
    single = train_full_graph(g, None, **opts)
    mb_single = train_minibatch(g, parts, shares=2, **mb)
    cl_single = train_clusters(g, parts, clusters, shares=2, **cb)
    ranks = launch(rank_workflows, 2, g.to_dict(), parts, opts, mb, clusters, cb, timeout_s=60)
    scale = max(float(p.abs().max()) for p in single["params"])
    n_params = sum(p.numel() for p in single["params"])
    model = cost_model_bytes(g, parts, [6, 8, 8, 4], 4, n_params)
    for kind in ("forward", "backward", "allreduce"):
        assert sum(r["sync"]["bytes"][kind] for r in ranks) == model[kind] > 0
    for r in ranks:
        diff = max(float((a - b).abs().max()) for a, b in zip(r["sync"]["params"],
                                                             single["params"], strict=True))
        assert diff <= 1e-5 * scale
        assert r["sync"]["loss"] == pytest.approx(single["loss"], rel=1e-5)
        assert r["stale"]["loss"][0] == pytest.approx(single["loss"][0], rel=1e-5)
        assert abs(r["stale"]["loss"][-1] - single["loss"][-1]) > 1e-6
        assert r["stale"]["bytes"]["backward"] < r["sync"]["bytes"]["backward"]
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(
            r["minibatch"]["params"], mb_single["params"], strict=True))
        assert r["minibatch"]["loss"] == pytest.approx(mb_single["loss"], rel=1e-5)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(
            r["cluster"]["params"], cl_single["params"], strict=True))
        assert r["cluster"]["loss"] == pytest.approx(cl_single["loss"], rel=1e-5)
    fetched = sum(r["minibatch"]["bytes"]["features"] for r in ranks)
    assert fetched == mb_single["remote_inputs"] * 6 * 4 > 0
    assert mb_single["remote_inputs"] == sum(
        epoch_remote_inputs(g, parts, fanouts=(4, 3), batch_size=20, seed=1, epoch=e)
        for e in range(2))
    fetched = sum(r["cluster"]["bytes"]["features"] for r in ranks)
    assert fetched == cl_single["remote_nodes"] * 6 * 4 > 0
    assert cl_single["remote_nodes"] == sum(epoch_remote_nodes(clusters, parts, 2, seed=1,
                                                               epoch=e) for e in range(3))
    assert sum(r["cluster"]["bytes"]["ids"] for r in ranks) == cl_single["remote_nodes"] * 8


def test_a_killed_rank_stops_the_others_with_a_clear_error(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(TheorylabError, match=r"^rank 1 died \(signal SIGKILL\); the other ranks "
                                             r"were stopped\.$"):
        launch(die_on_rank1, 2, str(tmp_path), timeout_s=60)
    assert time.perf_counter() - t0 < 30
    for r in range(2):
        pid = int((tmp_path / f"pid_{r}").read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ranks_die_with_a_launcher_killed_by_sigkill(tmp_path):
    """No orphaned workers: kill -9 the process that called launch; its ranks exit too, even
    with SIGINT ignored."""
    tests, src = str(Path(__file__).parent), str(Path(__file__).parents[1] / "src")
    code = (f"import sys; sys.path[:0] = [{tests!r}, {src!r}]\n"
            "from support.gnn_ranks import sleep_forever\n"
            "from theorylab.empirical.distributed import launch\n"
            "if __name__ == '__main__':\n"
            f"    launch(sleep_forever, 2, {str(tmp_path)!r}, timeout_s=60)\n")
    assert sleep_forever.__module__ == "support.gnn_ranks"
    # SIGINT ignored, as for a job started with `&` by a script: torch's own SIGINT-on-parent-death
    # does nothing there
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        t0 = time.perf_counter()
        while len(list(tmp_path.glob("pid_*"))) < 2 and time.perf_counter() - t0 < 60:
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in tmp_path.glob("pid_*")]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t0 = time.perf_counter()
    while any(_alive(p) for p in pids) and time.perf_counter() - t0 < 10:
        time.sleep(0.2)
    assert not any(_alive(p) for p in pids)


def test_unreachable_rendezvous_is_a_one_line_error_within_30_s():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^rank \d: rendezvous 'tcp://192.0.2.1:29500' "
                                          r"unreachable within 3 s") as exc:
        launch(nothing, 2, timeout_s=3, rendezvous="tcp://192.0.2.1:29500")
    assert "\n" not in str(exc.value) and time.perf_counter() - t0 < 30
    with pytest.raises(ConfigError, match=r"^'rendezvous' of launch must be 'tcp://HOST:PORT'"):
        launch(nothing, 2, rendezvous="127.0.0.1:1")


# --- devices ----------------------------------------------------------------------------------

@pytest.mark.parametrize("world,gpus,device,backend", [
    (1, 1, "cuda", "nccl"),    # the one-GPU machine: nccl only for P = 1
    (2, 1, "cpu", "gloo"),     # nccl refuses two ranks on one GPU: gloo on the CPU
    (4, 4, "cuda", "nccl"),
    (4, 0, "cpu", "gloo"),
    (2, 0, "cpu", "gloo"),
])
def test_auto_device_takes_nccl_only_with_a_gpu_per_rank(world, gpus, device, backend):
    from theorylab.empirical.distributed import choose_device
    got = choose_device(world, "auto", gpus=gpus)
    assert got[:2] == (device, backend) and backend in got[2] and "\n" not in got[2]


def test_explicit_devices_and_their_errors():
    from theorylab.empirical.distributed import choose_device
    assert choose_device(2, "cpu", gpus=8)[:2] == ("cpu", "gloo")
    assert choose_device(2, "cuda", gpus=2)[:2] == ("cuda", "nccl")
    with pytest.raises(ConfigError, match=r"^launch on 'cuda' needs one GPU per rank: "
                                          r"world_size 2, GPUs here 1\.$"):
        choose_device(2, "cuda", gpus=1)
    with pytest.raises(ConfigError, match=r"^'device' of launch must be 'auto', 'cpu' or 'cuda'"):
        choose_device(2, "tpu", gpus=0)


def test_workers_compute_on_the_cpu_without_an_nccl_group():
    from theorylab.empirical.gnn.fullgraph import worker_device
    assert worker_device() == torch.device("cpu")
    assert worker_device("cpu") == torch.device("cpu")
    assert worker_device(torch.device("meta")) == torch.device("meta")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_one_process_on_cuda_equals_the_cpu():
    g = sbm([25] * 4, 0.2, 0.02, 6, seed=7)
    opts = {"hidden": 8, "layers": 2, "epochs": 4, "lr": 0.05, "seed": 1}
    cpu, gpu = train_full_graph(g, None, **opts), train_full_graph(g, None, device="cuda", **opts)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6)
               for a, b in zip(cpu["params"], gpu["params"], strict=True))
