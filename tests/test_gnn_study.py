"""The distributed-GNN study and claims: units, records, criteria that can fail, and the CLI's
one-line errors for bad input (P > nodes, a bad edge list, an unreachable rendezvous)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from theorylab.empirical.gnn.study import DistGNNStudy
from theorylab.errors import ConfigError
from theorylab.papers.gnn import comm_matches, equals_single, metis_factor, workflow_comparison

pytest.importorskip("pymetis")
SRC = str(Path(__file__).parents[1] / "src")


def _train_rows(diff=2e-7, off=0):
    rows = []
    for m in ("metis", "hash"):
        rows.append({"P": 2, "method": m, "variant": "sync", "rel_param_diff": diff,
                     "rank_disagreement": 0.0, "epochs": 3, "accuracy": 0.9,
                     **{f"bytes_{k}": 1000 + off for k in ("forward", "backward", "allreduce")},
                     **{f"model_{k}": 1000 for k in ("forward", "backward", "allreduce")}})
    return pd.DataFrame(rows)


def test_equality_and_cost_model_criteria_fail_when_they_should():
    assert equals_single(_train_rows()).status == "holds"
    assert equals_single(_train_rows(diff=2e-5)).status == "fails"
    assert comm_matches(_train_rows()).status == "holds"
    v = comm_matches(_train_rows(off=4))
    assert v.status == "fails" and v.measured == 4


def test_metis_factor_is_decided_by_its_ci():
    def table(hash_halo, metis_halo):
        return pd.DataFrame([{"graph": g, "P": 2, "method": m, "halo_nodes": h,
                              "halo_fraction": h / 100}
                             for g, (a, b) in enumerate(zip(hash_halo, metis_halo, strict=True))
                             for m, h in (("hash", a), ("metis", b))])
    assert metis_factor(table([90, 92, 95, 91], [40, 42, 41, 45])).status == "holds"
    assert metis_factor(table([40, 42, 41, 45], [90, 92, 95, 91])).status == "fails"
    assert metis_factor(table([90, 10, 95, 12], [10, 90, 11, 95])).status == "inconclusive"


def test_workflow_comparison_fails_when_partition_batches_send_more():
    def table(cluster_bytes):
        return pd.DataFrame([{"P": 2, "method": m, "variant": v, "accuracy": 0.9,
                              "seconds_per_epoch": 0.1,
                              "bytes_per_epoch": {"sync": 500.0, "minibatch": 800.0}.get(
                                  v, cluster_bytes)}
                             for m in ("metis", "hash") for v in ("sync", "minibatch", "cluster")])
    v = workflow_comparison(table(100.0))
    assert v.status == "holds" and v.measured == pytest.approx(0.2)
    assert workflow_comparison(table(600.0)).status == "fails"


def test_units_and_partition_records_of_a_tiny_study():
    s = DistGNNStudy(n_nodes=60, blocks=3, degree_in=5.0, degree_out=1.0, dim=4, hidden=4,
                     epochs=2, world_sizes=(2, 3), n_graphs=2)
    kinds = [u["kind"] for u in s.units()]
    assert kinds.count("partition") == 2 and kinds.count("train") == 1 + 2 * 2
    rows = s.run_unit({"kind": "partition", "graph": 1})
    assert {(r["P"], r["method"]) for r in rows} == {(2, "metis"), (2, "hash"), (3, "metis"),
                                                     (3, "hash")}
    assert all(r["n"] == 60 and 0 < r["halo_fraction"] <= r["P"] - 1 for r in rows)
    # one epoch's remote inputs: owner-local seeds fetch less under METIS than under hash
    big = s.replace(n_nodes=200, blocks=4, degree_in=6.0, degree_out=0.5, cluster_size=20,
                    batch_size=20, fanouts=(3, 3))
    by = {(r["P"], r["method"]): r for r in big.run_unit({"kind": "partition", "graph": 1})}
    assert all(by[(P, "metis")]["minibatch_remote_owner"] < by[(P, "hash")]["minibatch_remote_owner"]
               and by[(P, "metis")]["cluster_remote"] < by[(P, "hash")]["cluster_remote"]
               for P in (2, 3))
    # the graph is seeded by (seed, graph index): same index, same graph
    assert s.run_unit({"kind": "partition", "graph": 1}) == rows


@pytest.mark.parametrize("changes,msg", [
    ({"n_nodes": 3, "blocks": 1, "world_sizes": (4,)}, r"'world_sizes' of DistGNNStudy must be "
                                                        r"<= n_nodes \(3\)"),
    ({"rendezvous": "localhost:1"}, r"'rendezvous' of DistGNNStudy must be 'tcp://HOST:PORT'"),
    ({"degree_in": 900.0}, r"'degree_in' of DistGNNStudy must be <= the block size - 1"),
])
def test_bad_configs_are_one_line_errors(changes, msg):
    with pytest.raises(ConfigError, match=msg):
        DistGNNStudy(**changes)


def _cli(args, tmp_path, timeout=60):
    env = {**os.environ, "PYTHONPATH": SRC, "THEORYLAB_STORE": str(tmp_path / "s.sqlite")}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "theorylab.cli", *args], capture_output=True,
                       text=True, env=env, timeout=timeout)
    return p, time.perf_counter() - t0


def test_cli_bad_input_is_one_line_and_non_zero_within_30_s(tmp_path):
    bad = tmp_path / "g.txt"
    bad.write_text("0 1\n1 2\n2 2\n")
    for args, msg in [
        (["--set", "world_sizes=[9]", "--set", "n_nodes=5", "--set", "blocks=1"],
         "'world_sizes' of DistGNNStudy must be <= n_nodes (5)"),
        (["--data", str(bad)], "g.txt:3: self-loop 2-2 (self_loops='error'"),
        (["--data", str(bad), "--set", "self_loops=drop", "--set", "world_sizes=[4]"],
         "cannot cut a graph of 3 nodes into 4 parts"),
        (["--set", "data=mouse-99"], "'mouse' must be an int >= 0 and <= 31. Got 99."),
        (["--set", "world_sizes=[2]", "--set", "partitioners=[\"hash\"]", "--set", "n_graphs=1",
          "--set", "n_nodes=40", "--set", "blocks=2", "--set", "timeout_s=3",
          "--set", "rendezvous=tcp://192.0.2.1:29500"],
         "rendezvous 'tcp://192.0.2.1:29500' unreachable within 3 s"),
    ]:
        p, seconds = _cli(["run", "gnn-distributed", "--quick", "--executor", "serial",
                           "--no-progress", *args], tmp_path)
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        assert p.returncode == 2 and len(errors) == 1 and msg in errors[0], p.stderr[-2000:]
        assert seconds < 30
