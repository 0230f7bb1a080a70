"""Power systems, second part: the differentiable mismatch and physics loss against the
pandapower-checked numpy mismatch, autograd and finite differences; the GNN on a grid it was not
trained on; the study's transfer and per-bus records."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pp = pytest.importorskip("pandapower")
pn = pytest.importorskip("pandapower.networks")

from theorylab.empirical.power.grid import grid_of, mismatch, specified  # noqa: E402
from theorylab.empirical.power.models import PowerGNN, PowerMLP  # noqa: E402
from theorylab.empirical.power.physics import TorchMismatch  # noqa: E402
from theorylab.errors import ConfigError  # noqa: E402


def _solved(case="case14"):
    net = getattr(pn, case)()
    pp.runpp(net, init="flat", tolerance_mva=1e-12)
    g = grid_of(net, case)
    ld, gen = net.load, net.gen
    s = specified(g, ld.p_mw * ld.scaling, ld.q_mvar * ld.scaling, gen.p_mw * gen.scaling)
    return g, net.res_bus.vm_pu.to_numpy(float), net.res_bus.va_degree.to_numpy(float), s


@pytest.mark.parametrize("case", ["case14", "case118"])
def test_torch_mismatch_equals_the_numpy_mismatch(case):
    """On random states far from the solution (batched), to float64 rounding."""
    g, vm, va, s = _solved(case)
    rng = np.random.default_rng(0)
    vm2 = vm * (1 + rng.uniform(-0.05, 0.05, (3, g.n)))
    va2 = va + rng.uniform(-5, 5, (3, g.n))
    dp, dq = mismatch(g, g.ybus(), vm2, va2, np.broadcast_to(s, (3, g.n)))
    tp, tq = TorchMismatch(g)(*(torch.from_numpy(np.ascontiguousarray(a)) for a in
                                (vm2, va2, np.tile(s.real, (3, 1)), np.tile(s.imag, (3, 1)))))
    assert np.abs(dp).max() > 1e-2   # not a comparison of zeros
    np.testing.assert_allclose(tp.numpy(), dp, atol=1e-10)
    np.testing.assert_allclose(tq.numpy(), dq, atol=1e-10)


def test_physics_loss_gradient_matches_finite_differences():
    g, vm, va, s = _solved()
    phys = TorchMismatch(g)
    rng = np.random.default_rng(1)
    vm_t = torch.tensor(vm * (1 + rng.uniform(-0.02, 0.02, (2, g.n))), requires_grad=True)
    va_t = torch.tensor(va + rng.uniform(-2, 2, (2, g.n)), requires_grad=True)
    p, q = (torch.tensor(np.tile(a, (2, 1))) for a in (s.real, s.imag))
    assert torch.autograd.gradcheck(lambda a, b: phys.loss(a, b, p, q), (vm_t, va_t))


def test_physics_loss_and_its_gradient_vanish_at_a_solved_state():
    g, vm, va, s = _solved()
    phys = TorchMismatch(g)
    p, q = torch.tensor(s.real[None]), torch.tensor(s.imag[None])

    def grad_at(vm_, va_):
        a = torch.tensor(vm_[None], requires_grad=True)
        b = torch.tensor(va_[None], requires_grad=True)
        loss = phys.loss(a, b, p, q)
        loss.backward()
        return float(loss.detach()), float(torch.cat([a.grad, b.grad]).abs().max())

    loss0, grad0 = grad_at(vm, va)
    loss1, grad1 = grad_at(vm, va + 0.5 * (g.bus_type != 2))
    assert loss0 < 1e-20 and loss1 > 1e-4
    assert grad0 < 1e-8 * grad1


def _gnn(grid_from, seed=0):
    from theorylab.empirical.power.features import N_EDGE_FEATURES, N_NODE_FEATURES
    from theorylab.empirical.power.surrogate import edge_tensors
    norm = _unit_norm()
    ei, ea = edge_tensors(grid_from, norm)
    torch.manual_seed(seed)
    return PowerGNN(N_NODE_FEATURES, N_EDGE_FEATURES, ei, ea, hidden=8, layers=2), norm


def _unit_norm():
    from theorylab.empirical.power.features import N_EDGE_FEATURES, N_NODE_FEATURES
    from theorylab.empirical.power.surrogate import Norm
    return Norm(np.zeros(N_NODE_FEATURES), np.ones(N_NODE_FEATURES), np.zeros(N_EDGE_FEATURES),
                np.ones(N_EDGE_FEATURES), 0.01, 1.0)


def test_gnn_on_another_grid_keeps_weights_and_is_bus_permutation_equivariant():
    """on_grid moves the trained weights to the target topology: on the source grid it is the
    model itself; on the target, relabelling the buses relabels the predictions (what makes a
    prediction on an unseen grid well defined)."""
    import dataclasses

    from theorylab.empirical.power.surrogate import on_grid
    src, dst = grid_of(pn.case14(), "case14"), grid_of(pn.case30(), "case30")
    m, norm = _gnn(src)
    x = torch.randn(2, src.n, m.encode[0].in_features)
    torch.testing.assert_close(on_grid(m, src, norm)(x), m(x), rtol=0, atol=0)
    target = on_grid(m, dst, norm)
    assert target.edge_index.shape[1] == 2 * len(dst.f)
    perm = np.random.default_rng(0).permutation(dst.n)
    inv = np.argsort(perm)   # new position of old bus i is inv[i]
    moved = dataclasses.replace(dst, f=inv[dst.f], t=inv[dst.t])
    xd = torch.randn(2, dst.n, m.encode[0].in_features)
    out = target(xd)
    out_perm = on_grid(m, moved, norm)(xd[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm], rtol=1e-5, atol=1e-5)


def test_mlp_cannot_run_on_another_grid():
    from theorylab.empirical.power.surrogate import on_grid
    g = grid_of(pn.case14(), "case14")
    with pytest.raises(ConfigError, match=r"^'model' of on_grid must be a PowerGNN.*Got PowerMLP"):
        on_grid(PowerMLP(g.n, 10, 8), g, _unit_norm())


def test_transfer_cases_bad_input_is_a_one_line_error():
    from theorylab.empirical.power.study import PowerFlowStudy
    with pytest.raises(ConfigError, match="^'transfer_cases' of PowerFlowStudy must be one of .*Got 'case_unknown'"):
        PowerFlowStudy(transfer_cases=("case_unknown",))
    with pytest.raises(ConfigError, match="must not contain the training grid"):
        PowerFlowStudy(case="case57", transfer_cases=("case57",))
