"""Power systems: admittance matrix, mismatch and DC power flow against pandapower, data
generation, the GNN layer against a PyG reference, bad input, and a tiny study end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pp = pytest.importorskip("pandapower")
pn = pytest.importorskip("pandapower.networks")

from theorylab.cli import main  # noqa: E402
from theorylab.empirical.power.data import generate  # noqa: E402
from theorylab.empirical.power.features import DCSolver  # noqa: E402
from theorylab.empirical.power.grid import (  # noqa: E402
    PQ,
    SLACK,
    grid_of,
    injections,
    load_grid,
    mismatch,
    mismatch_vs_pandapower,
    specified,
)
from theorylab.empirical.power.models import InteractionLayer  # noqa: E402
from theorylab.errors import ConfigError, DataFormatError, InputError  # noqa: E402


def _spec(net, g):
    ld, gen, sg = net.load, net.gen, net.sgen
    return specified(g, ld.p_mw * ld.scaling, ld.q_mvar * ld.scaling, gen.p_mw * gen.scaling,
                     sg.p_mw * sg.scaling, sg.q_mvar * sg.scaling)


@pytest.mark.parametrize("case", ["case14", "case57", "case118"])
def test_ybus_equals_pandapowers(case):
    """Our Ybus, assembled from the element tables, equals pandapower's internal one (case118
    has transformers with a magnetising branch and off-nominal taps)."""
    net = getattr(pn, case)()
    pp.runpp(net)
    lk = net._pd2ppc_lookups["bus"][net.bus.index.to_numpy()]
    ref = net._ppc["internal"]["Ybus"][lk][:, lk]
    Y = grid_of(net, case).ybus()
    assert abs(Y - ref).max() < 1e-10 * abs(ref).max()


@pytest.mark.parametrize("case,dense", [("case14", True), ("case118", True), ("case118", False)])
def test_dc_power_flow_equals_pandapowers(case, dense, monkeypatch):
    from theorylab.empirical.power import features
    monkeypatch.setattr(features, "DENSE_MAX", 10_000 if dense else 0)
    net = getattr(pn, case)()
    pp.rundcpp(net)
    g = grid_of(net, case)
    theta = DCSolver(g).theta(_spec(net, g).real)[0]
    np.testing.assert_allclose(theta, net.res_bus.va_degree.to_numpy(), atol=1e-9)


def test_mismatch_vanishes_at_pandapower_solution_and_matches_its_function():
    net = pn.case14()
    g = grid_of(net, "case14")
    checks = []
    d = generate(net, 4, np.random.default_rng(3), name="case14",
                 on_solved=lambda n: checks.append(mismatch_vs_pandapower(
                     g, n, np.random.default_rng(0))))
    assert len(checks) == len(d["vm"]) == 4
    assert np.max(checks) < 1e-6
    # the same function is far from zero off the solution: the comparison above is not vacuous
    s = specified(g, d["load_p"], d["load_q"], d["gen_p"])
    dp, dq = mismatch(g, g.ybus(), d["vm"], d["va"] + 1.0 * (g.bus_type != SLACK), s)
    assert np.abs(dp).max() > 1e-3
    assert dq.shape == (4, int((g.bus_type == PQ).sum()))


def test_injections_batched_equals_one_by_one():
    net = pn.case14()
    pp.runpp(net)
    g = grid_of(net)
    rng = np.random.default_rng(0)
    vm = 1 + 0.05 * rng.standard_normal((3, g.n))
    va = 10 * rng.standard_normal((3, g.n))
    Y = g.ybus()
    batched = injections(Y, vm, va)
    for k in range(3):
        V = vm[k] * np.exp(1j * np.deg2rad(va[k]))
        one = np.array([V[i] * np.conj(sum(Y[i, j] * V[j] for j in range(g.n)))
                        for i in range(g.n)])
        np.testing.assert_allclose(batched[k], one, atol=1e-12)


def test_generation_is_reproducible_per_seed():
    net = pn.case14()
    a = generate(net, 4, np.random.default_rng(7), name="case14")
    b = generate(net, 4, np.random.default_rng(7), name="case14")
    c = generate(net, 4, np.random.default_rng(8), name="case14")
    for k in ("load_p", "gen_p", "vm", "va"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["load_p"], c["load_p"])
    assert net.load.p_mw.equals(pn.case14().load.p_mw)   # the caller's network is untouched


def test_infeasible_case_is_counted_as_not_converged():
    """Loads at 20x their nominal value have no power-flow solution: every case is counted,
    none is returned, and the message says so."""
    net = pn.case14()
    d = generate(net, 3, np.random.default_rng(0), level=(20.0, 20.0), sigma=0.0,
                 name="case14")
    assert d["n_failed"] == 3 and d["n_tried"] == 3
    assert d["vm"].shape == (0, len(net.bus))
    assert "3 of 3" in d["message"] and "did not converge" in d["message"]
    ok = generate(net, 2, np.random.default_rng(0), name="case14")
    assert ok["n_failed"] == 0 and len(ok["vm"]) == 2


@settings(deadline=None, max_examples=20)
@given(st.integers(1, 3), st.integers(2, 12), st.integers(1, 30), st.booleans(),
       st.integers(0, 10_000))
def test_interaction_layer_equals_edgewise_mlp(B, n, m, masked, seed):
    torch.manual_seed(seed)
    layer = InteractionLayer(8, 5).double()
    h = torch.randn(B, n, 8, dtype=torch.double)
    ei = torch.randint(0, n, (2, m))
    e = torch.randn(1, m, 5, dtype=torch.double)
    w = (torch.rand(B, m) > 0.3).double() if masked else None
    torch.testing.assert_close(layer(h, ei, e, w), layer.naive(h, ei, e, w))


def test_interaction_layer_equals_pyg_message_passing():
    """The dense shared-topology batch gives what PyG's MessagePassing (sum aggregation) gives
    on the disjoint union of the graphs."""
    tg = pytest.importorskip("torch_geometric")
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import MessagePassing

    class Ref(MessagePassing):
        def __init__(self, layer):
            super().__init__(aggr="add")
            self.layer = layer

        def forward(self, x, edge_index, e):
            agg = self.propagate(edge_index, x=x, e=e)
            return x + self.layer.update(torch.cat([x, agg], dim=-1))

        def message(self, x_i, x_j, e):
            return self.layer.message(torch.cat([x_i, x_j, e], dim=-1))

    torch.manual_seed(0)
    layer = InteractionLayer(6, 4).double()
    B, n, m = 3, 7, 15
    h = torch.randn(B, n, 6, dtype=torch.double)
    ei = torch.randint(0, n, (2, m))
    e = torch.randn(m, 4, dtype=torch.double)
    batch = Batch.from_data_list([Data(x=h[b], edge_index=ei, e=e, num_nodes=n)
                                  for b in range(B)])
    ref = Ref(layer)(batch.x, batch.edge_index, batch.e).view(B, n, 6)
    torch.testing.assert_close(layer(h, ei, e.unsqueeze(0)), ref)
    assert tg is not None


# -- bad input --------------------------------------------------------------------------------

def test_unknown_case_is_a_one_line_error():
    with pytest.raises(ConfigError, match="unknown grid case 'case_nope'"):
        load_grid("case_nope")


def test_json_that_is_not_a_network(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(DataFormatError, match="not a pandapower network") as exc:
        load_grid(str(bad))
    assert "\n" not in str(exc.value) and str(bad) in str(exc.value)


def _no_slack_json(tmp_path):
    net = pn.case14()
    net.ext_grid.drop(net.ext_grid.index, inplace=True)
    path = tmp_path / "noslack.json"
    pp.to_json(net, str(path))
    return path


def test_network_without_slack(tmp_path):
    with pytest.raises(InputError, match="no slack bus"):
        load_grid(str(_no_slack_json(tmp_path)))
    path = tmp_path / "ok.json"
    pp.to_json(pn.case14(), str(path))
    assert len(load_grid(str(path)).bus) == 14


@pytest.mark.parametrize("value,msg", [
    ("case_nope", "'case' of PowerFlowStudy must be one of"),
    ("NOSLACK", "no slack bus"),
    ("NOTNET", "not a pandapower network"),
])
def test_cli_bad_grid_exits_nonzero_with_one_line(tmp_path, capsys, value, msg):
    if value == "NOSLACK":
        value = str(_no_slack_json(tmp_path))
    elif value == "NOTNET":
        (tmp_path / "n.json").write_text("[1, 2]")
        value = str(tmp_path / "n.json")
    rc = main(["run", "power-flow", "--set", f"case={value}", "--store",
               str(tmp_path / "s.sqlite"), "--executor", "serial", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and msg in err and "\n" not in err


# -- the study --------------------------------------------------------------------------------

def _tiny():
    from theorylab.empirical.power.study import PowerFlowStudy
    return PowerFlowStudy(case="case14", n_train=30, n_val=10, n_test=10, n_ood=5,
                          chunk_size=20, hidden=8, layers=2, mlp_hidden=16, epochs=2,
                          n_seeds=2, speed_cases=2, transfer_cases=("case30",), n_transfer=10)


def test_tiny_study_end_to_end_and_reproducible():
    import pandas as pd

    from theorylab.artifacts import UnitContext
    from theorylab.papers.power import paired
    from theorylab.study import records

    study = _tiny()
    ctx = UnitContext(study, None)
    rows = [r for u in study.units() for r in study.run_unit(u, ctx)]
    table = pd.DataFrame(rows)
    data, scores = records(table, "data"), records(table, "score")
    assert data.n_tried.sum() == 4 * 20 + 10 and data.n_failed.sum() == 0
    assert (data.mismatch_at_solution < 1e-6).all() and (data.mismatch_gap < 1e-6).all()
    assert set(scores.model) == {"gnn", "mlp", "gnn-phys", "dc"}
    assert set(scores.split) == {"test", "ood", "transfer:case30"}
    # on the unseen grid: both GNNs (every seed) and DC power flow, never the MLP
    tr = scores[scores.split == "transfer:case30"]
    assert sorted(zip(tr.model, tr.seed, strict=True)) == [("dc", 0), ("gnn", 0), ("gnn", 1),
                                              ("gnn-phys", 0), ("gnn-phys", 1)]
    assert (tr.grid == "case30").all() and (tr.n == 10).all()
    assert np.isfinite(scores[["v_mae", "theta_mae", "dp_mae", "dq_mae"]].to_numpy()).all()
    # the DC rows are DC power flow itself
    grid, dc, _, p = study.prepared(ctx)
    t = p["test"]
    dc_row = scores[(scores.model == "dc") & (scores.split == "test")].iloc[0]
    assert dc_row.theta_mae == pytest.approx(
        np.abs(t.dc_va - t.va)[:, grid.bus_type != SLACK].mean())
    # the per-bus errors (seed 0) average to the score over the PQ / non-slack buses
    bus = records(table, "bus")
    for model in ("gnn", "dc"):
        b = bus[bus.model == model].sort_values("bus")
        row = scores[(scores.model == model) & (scores.seed == 0) & (scores.split == "test")]
        assert b.v_err[b.bus_type == PQ].mean() == pytest.approx(float(row.v_mae.iloc[0]))
        assert b.theta_err[b.bus_type != SLACK].mean() == pytest.approx(
            float(row.theta_mae.iloc[0]))
    # the DC rows on the transfer grid are DC power flow on that grid's own cases
    from theorylab.empirical.power.features import case_grid
    _, g30, dc30 = case_grid("case30")
    d30 = study.transfer_split("case30", ctx)
    va30 = dc30.theta(specified(g30, d30["load_p"], d30["load_q"], d30["gen_p"]).real)
    assert tr[tr.model == "dc"].theta_mae.iloc[0] == pytest.approx(
        np.abs(va30 - d30["va"])[:, g30.bus_type != SLACK].mean())
    d = paired(scores, "gnn", "dc", "v_mae")
    assert d["n_seeds"] == 2
    # training is bit-reproducible on CPU: a fresh context retrains to the same weights
    a = study._train("gnn", 1, ctx)["state"]
    b = study._train("gnn", 1, UnitContext(study, None))["state"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    speed = records(table, "speed")
    assert (speed.batched_cpu_s > 0).all() and set(speed.model) == {"gnn", "mlp", "dc"}


# -- N-1 outages ------------------------------------------------------------------------------

def test_islanding_lines_match_a_graph_search_reference():
    """islands() against a breadth-first search over the remaining branches."""
    from theorylab.empirical.power.data import islands
    net = pn.case30()
    g = grid_of(net, "case30")

    def connected(drop):
        adj = {i: set() for i in range(g.n)}
        for k, (a, b) in enumerate(zip(g.f, g.t, strict=True)):
            if k != drop:
                adj[int(a)].add(int(b))
                adj[int(b)].add(int(a))
        seen, todo = {0}, [0]
        while todo:
            for j in adj[todo.pop()] - seen:
                seen.add(j)
                todo.append(j)
        return len(seen) == g.n

    got = [islands(g, k) for k in range(len(g.f))]
    assert got == [not connected(k) for k in range(len(g.f))]
    assert any(got) and not all(got)   # case30 has radial branches and meshed ones


def test_outage_cases_are_counted_and_solve_the_dropped_grid():
    """Every draw is solved, islanded or non-converged; a solved state has zero mismatch on the
    grid *with its line dropped* (the outage index names the line that was out)."""
    from theorylab.empirical.power.data import generate_outages
    net = pn.case30()
    g = grid_of(net, "case30")
    d = generate_outages(net, g, 40, np.random.default_rng(1), name="case30")
    assert len(d["vm"]) + d["n_islanded"] + d["n_failed"] == 40 and d["n_islanded"] > 0
    s = specified(g, d["load_p"], d["load_q"], d["gen_p"])
    for k in range(len(d["vm"])):
        dp, dq = mismatch(g, g.ybus(drop=int(d["outage"][k])), d["vm"][k], d["va"][k], s[k])
        assert max(np.abs(dp).max(), np.abs(dq).max()) < 1e-6
        dp0, _ = mismatch(g, g.ybus(), d["vm"][k], d["va"][k], s[k])
        assert np.abs(dp0).max() > 1e-4   # the intact grid does not fit the post-outage state
    assert net.line.in_service.all()


def test_dc_matching_recovers_the_line_from_its_own_dc_angles():
    from theorylab.empirical.power.data import islands
    from theorylab.empirical.power.outage import dc_match
    net = pn.case14()
    g = grid_of(net, "case14")
    rng = np.random.default_rng(0)
    cand = np.array([b for b in np.flatnonzero(g.kind == 0) if not islands(g, int(b))])
    truth = rng.choice(cand, size=6)
    load_p = np.tile(net.load.p_mw.to_numpy(), (6, 1)) * rng.uniform(0.8, 1.2, (6, 1))
    load_q = np.tile(net.load.q_mvar.to_numpy(), (6, 1))
    gen_p = np.tile(net.gen.p_mw.to_numpy(), (6, 1))
    p = specified(g, load_p, load_q, gen_p).real
    va = np.stack([DCSolver(g, drop=int(b)).theta(p[i:i + 1])[0] for i, b in enumerate(truth)])
    pred = dc_match(g, {"load_p": load_p, "load_q": load_q, "gen_p": gen_p, "va": va}, cand)
    np.testing.assert_array_equal(pred, truth)


def test_outage_study_tiny_end_to_end():
    from theorylab.artifacts import UnitContext
    from theorylab.empirical.power.outage import PowerOutageStudy
    study = PowerOutageStudy(case="case14", n_train=30, n_val=10, n_test=10, chunk_size=30,
                             hidden=8, layers=2, mlp_hidden=16, epochs=2, n_seeds=1)
    ctx = UnitContext(study, None)
    rows = [r for u in study.units() for r in study.run_unit(u, ctx)]
    n1 = [r for r in rows if r["record"] == "n1"]
    data = [r for r in rows if r["record"] == "n1data"]
    assert {r["model"] for r in n1} == {"gnn", "mlp", "dc"}
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in n1)
    assert sum(r["n_solved"] + r["n_islanded"] + r["n_failed"] for r in data) == \
        sum(r["n_tried"] for r in data)


def test_claims_that_failed_first_are_report_only_and_say_so():
    from theorylab.claims import REGISTRY
    from theorylab.papers import power as power_paper
    ids = {k for k in REGISTRY if k.startswith("power.")}
    must = {k for k in ids if REGISTRY[k].must_hold}
    assert must == ids - set(power_paper.NOT_REPRODUCED) - set(power_paper.MEASURED_ONLY)
    assert len(must) == 3
    for k in power_paper.NOT_REPRODUCED:
        assert "report-only since 2026-12-01" in REGISTRY[k].statement
    for k in power_paper.MEASURED_ONLY:
        assert "report-only: the review states no number" in REGISTRY[k].statement
