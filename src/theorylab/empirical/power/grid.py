r"""Grids, the bus admittance matrix and the AC power mismatch, in pandapower's conventions.

A grid is a pandapower network loaded by case name (:data:`CASES`, the IEEE / PEGASE cases that
ship inside ``pandapower.networks``) or from a pandapower JSON file. Per-unit quantities use the
system base :math:`S_\text{base}` = ``net.sn_mva`` and each bus's :math:`V_\text{base}` =
``bus.vn_kv`` (:math:`Z_\text{base} = V_\text{base}^2 / S_\text{base}`).

**Admittance matrix** :math:`Y \in \mathbb{C}^{n\times n}` (bus order of ``net.bus``), assembled
here from the element tables, not read from pandapower:

* a line :math:`(i, j)` is a π branch, series :math:`y_s = 1/z`, :math:`z = (r + jx)\,\ell /
  (p\,Z_\text{base})`, shunt :math:`y_c = (g + j\,2\pi f c)\,\ell\,p\,Z_\text{base}` split half
  to each end (``parallel`` = p);
* a two-winding transformer (hv :math:`i`, lv :math:`j`) is pandapower's T model: leakage
  :math:`z_k` (from :math:`v_k`, :math:`v_{kR}`, referred to the lv side) split in halves around
  the magnetising admittance :math:`y_m` (from :math:`p_{fe}`, :math:`i_0`), Kron-reduced to a
  two-port :math:`\begin{pmatrix}A & B\\ B & D\end{pmatrix}`, behind an ideal transformer with
  the off-nominal complex ratio :math:`t = \tau e^{j\varphi}` on the hv side:
  :math:`Y_{ii} \mathrel{+}= A/|t|^2,\ Y_{ij} \mathrel{+}= B/\bar t,\ Y_{ji} \mathrel{+}= B/t,\
  Y_{jj} \mathrel{+}= D`;
* a shunt adds :math:`(p - jq)\,s / S_\text{base}` to its diagonal (``step`` = s).

**Mismatch.** With :math:`V_i = |V_i| e^{j\theta_i}` the computed injection is
:math:`S_i = V_i \overline{(Y V)_i}` and the specified one :math:`S^\text{sp}_i = \sum
S_\text{gen} - \sum S_\text{load}`; the AC mismatch is :math:`\Delta P_i = \operatorname{Re} S_i
- P^\text{sp}_i` at every non-slack bus and :math:`\Delta Q_i = \operatorname{Im} S_i -
Q^\text{sp}_i` at every PQ bus (at PV and slack buses Q, at slack buses P, are free).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from theorylab.errors import ConfigError, DataFormatError, InputError

__all__ = ["CASES", "PQ", "PV", "SLACK", "load_grid", "Grid", "grid_of", "ybus", "injections",
           "mismatch", "specified", "mismatch_vs_pandapower"]

#: The cases of ``pandapower.networks`` this module loads by name (MATPOWER's IEEE and PEGASE).
CASES = ("case4gs", "case5", "case6ww", "case9", "case14", "case24_ieee_rts", "case30",
         "case_ieee30", "case33bw", "case39", "case57", "case89pegase", "case118", "case145",
         "case_illinois200", "case300", "case1354pegase", "case1888rte", "case2848rte",
         "case2869pegase", "case3120sp", "case6470rte", "case6495rte", "case6515rte",
         "case9241pegase")
PQ, PV, SLACK = 0, 1, 2


def load_grid(case: str):
    """The pandapower network of ``case``: a name from :data:`CASES` or a pandapower JSON file.

    An unknown name, a JSON that is not a pandapower network and a network without an in-service
    slack (ext_grid or slack gen) are one-line errors.
    """
    import pandapower as pp
    import pandapower.networks as pn
    path = Path(case)
    if case.endswith(".json"):
        if not path.is_file():
            raise ConfigError(f"'case' {case!r} is not a file.")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataFormatError(f"not JSON ({exc.__class__.__name__}: {exc})", path) from None
        if not (isinstance(raw, dict) and raw.get("_module") == "pandapower.auxiliary"
                and raw.get("_class") == "pandapowerNet"):
            raise DataFormatError("not a pandapower network (expected the JSON that "
                                  "pandapower.to_json writes, with _class 'pandapowerNet')", path)
        try:
            net = pp.from_json(str(path))
        except Exception as exc:  # noqa: BLE001 - a damaged file, reported in one line
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataFormatError(f"pandapower could not read the network: {msg}", path) from None
    elif case in CASES:
        net = getattr(pn, case)()
    else:
        raise ConfigError(f"unknown grid case {case!r}; known: {', '.join(CASES)} "
                          "(or a pandapower JSON file ending in .json).")
    if len(net.bus) == 0:
        raise InputError(f"grid {case!r} has no buses.")
    if not _slack_buses(net).size:
        raise InputError(f"grid {case!r} has no slack bus (no in-service ext_grid or gen with "
                         "slack=True): its power flow is undefined.")
    return net


def _slack_buses(net) -> np.ndarray:
    eg = net.ext_grid[net.ext_grid.in_service].bus.to_numpy()
    gen = net.gen[net.gen.in_service]
    sg = gen[gen["slack"].astype(bool)].bus.to_numpy() if "slack" in gen else np.array([], int)
    return np.unique(np.concatenate([eg, sg]).astype(int))


@dataclass(frozen=True)
class Grid:
    """The static part of a network, in the bus order of ``net.bus`` (positions 0..n-1).

    ``bus_type`` (PQ/PV/SLACK), ``v_set`` (voltage set-point at PV and slack buses, else 1),
    ``theta_set`` (slack angle in degrees, else 0), ``branches`` (from, to positions, kind 0 line /
    1 trafo) with their two-port admittances ``y_ff, y_ft, y_tf, y_tt``, off-nominal ratio
    τ ``ratio`` and phase shift φ ``shift`` (radians; 1 and 0 for lines), and ``y_shunt`` (bus
    shunts). The load and generator tables map elements to bus positions.
    """

    name: str
    sn_mva: float
    bus_index: np.ndarray
    bus_type: np.ndarray
    v_set: np.ndarray
    theta_set: np.ndarray
    f: np.ndarray
    t: np.ndarray
    kind: np.ndarray
    y_ff: np.ndarray
    y_ft: np.ndarray
    y_tf: np.ndarray
    y_tt: np.ndarray
    y_shunt: np.ndarray
    ratio: np.ndarray
    shift: np.ndarray
    load_bus: np.ndarray
    gen_bus: np.ndarray
    sgen_bus: np.ndarray

    @property
    def n(self) -> int:
        return len(self.bus_index)

    def ybus(self, drop: int | None = None) -> sp.csr_matrix:
        """:math:`Y` as a sparse matrix; ``drop`` = a branch position taken out of service."""
        keep = np.ones(len(self.f), bool)
        if drop is not None:
            keep[drop] = False
        f, t = self.f[keep], self.t[keep]
        rows = np.concatenate([f, f, t, t, np.arange(self.n)])
        cols = np.concatenate([f, t, f, t, np.arange(self.n)])
        vals = np.concatenate([self.y_ff[keep], self.y_ft[keep], self.y_tf[keep],
                               self.y_tt[keep], self.y_shunt])
        return sp.csr_matrix((vals, (rows, cols)), shape=(self.n, self.n))


def _in_service(df):
    return df[df.in_service.astype(bool)]


def grid_of(net, name: str = "grid") -> Grid:
    """The :class:`Grid` of a pandapower network (the math in the module docstring)."""
    for table in ("trafo3w", "impedance", "xward", "ward", "dcline", "tcsc", "svc", "ssc",
                  "vsc"):
        if table in net and len(_in_service(net[table])):
            raise ConfigError(f"grid {name!r} has in-service {table} elements, which this "
                              "admittance model does not cover.")
    if len(net.switch) and not net.switch.closed.all():
        raise ConfigError(f"grid {name!r} has open switches, which this admittance model does "
                          "not cover.")
    if len(net.switch) and (net.switch.et == "b").any():
        raise ConfigError(f"grid {name!r} has bus-bus switches (buses that pandapower merges), "
                          "which this admittance model does not cover.")
    load = _in_service(net.load)
    zi = [c for c in ("const_z_p_percent", "const_z_q_percent", "const_i_p_percent",
                      "const_i_q_percent", "const_z_percent", "const_i_percent") if c in load]
    if zi and (load[zi].fillna(0).to_numpy() != 0).any():
        raise ConfigError(f"grid {name!r} has voltage-dependent (ZIP) loads; only constant-power "
                          "loads are covered.")
    bus_index = net.bus.index.to_numpy()
    pos = {b: i for i, b in enumerate(bus_index)}
    vn = net.bus.vn_kv.to_numpy(float)
    sn = float(net.sn_mva)
    n = len(bus_index)

    def p(buses):
        return np.array([pos[int(b)] for b in buses], dtype=np.int64)

    bus_type = np.full(n, PQ, np.int64)
    v_set, theta_set = np.ones(n), np.zeros(n)
    gen = _in_service(net.gen)
    gb = p(gen.bus)
    bus_type[gb] = PV
    v_set[gb] = gen.vm_pu.to_numpy(float)
    eg = _in_service(net.ext_grid)
    eb = p(eg.bus)
    bus_type[eb] = SLACK
    v_set[eb] = eg.vm_pu.to_numpy(float)
    theta_set[eb] = eg.va_degree.to_numpy(float)
    if "slack" in gen:
        sg = gen[gen.slack.astype(bool)]
        bus_type[p(sg.bus)] = SLACK

    fs, ts, kinds, yff, yft, ytf, ytt, taps = [], [], [], [], [], [], [], []
    line = _in_service(net.line)
    if len(line):
        f, t = p(line.from_bus), p(line.to_bus)
        zb = vn[f] ** 2 / sn
        par, ell = line.parallel.to_numpy(float), line.length_km.to_numpy(float)
        z = (line.r_ohm_per_km.to_numpy(float) + 1j * line.x_ohm_per_km.to_numpy(float)) \
            * ell / par / zb
        yc = (line.g_us_per_km.to_numpy(float) * 1e-6
              + 1j * 2 * np.pi * float(net.f_hz) * line.c_nf_per_km.to_numpy(float) * 1e-9) \
            * ell * par * zb
        ys = 1 / z
        fs += [f]
        ts += [t]
        kinds += [np.zeros(len(f), np.int64)]
        yff += [ys + yc / 2]
        ytt += [ys + yc / 2]
        yft += [-ys]
        ytf += [-ys]
        taps += [np.ones(len(f), complex)]
    trafo = _in_service(net.trafo)
    if len(trafo):
        a, b, c, d, tap = _trafo_two_ports(trafo, vn, pos, sn, name)
        fs += [p(trafo.hv_bus)]
        ts += [p(trafo.lv_bus)]
        kinds += [np.ones(len(trafo), np.int64)]
        yff += [a / np.abs(tap) ** 2]
        yft += [b / np.conj(tap)]
        ytf += [c / tap]
        ytt += [d]
        taps += [tap]
    y_shunt = np.zeros(n, complex)
    sh = _in_service(net.shunt)
    if len(sh):
        sb = p(sh.bus)
        scale = (vn[sb] / sh.vn_kv.to_numpy(float)) ** 2 if "vn_kv" in sh else 1.0
        np.add.at(y_shunt, sb, (sh.p_mw.to_numpy(float) - 1j * sh.q_mvar.to_numpy(float))
                  * sh.step.to_numpy(float) * scale / sn)

    def cat(xs, dt):
        return np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)

    return Grid(name=name, sn_mva=sn, bus_index=bus_index, bus_type=bus_type, v_set=v_set,
                theta_set=theta_set, f=cat(fs, np.int64), t=cat(ts, np.int64),
                kind=cat(kinds, np.int64), y_ff=cat(yff, complex), y_ft=cat(yft, complex),
                y_tf=cat(ytf, complex), y_tt=cat(ytt, complex), y_shunt=y_shunt,
                ratio=np.abs(cat(taps, complex)), shift=np.angle(cat(taps, complex)),
                load_bus=p(net.load.bus), gen_bus=p(net.gen.bus), sgen_bus=p(net.sgen.bus))


def _trafo_two_ports(trafo, vn, pos, sn, name):
    """(A, B, C, D) of the T model after Kron reduction and the complex hv-side ratio t."""
    hv = np.array([pos[int(b)] for b in trafo.hv_bus])
    lv = np.array([pos[int(b)] for b in trafo.lv_bus])
    vnh = trafo.vn_hv_kv.to_numpy(float).copy()
    vnl = trafo.vn_lv_kv.to_numpy(float).copy()
    vnl_rated = vnl.copy()
    shift = trafo.shift_degree.to_numpy(float).copy()
    tap_pos = trafo.tap_pos.to_numpy(float) if "tap_pos" in trafo else np.full(len(trafo), np.nan)
    diff = np.nan_to_num(tap_pos - trafo.tap_neutral.to_numpy(float))
    step = np.nan_to_num(trafo.tap_step_percent.to_numpy(float)) / 100
    deg = np.nan_to_num(trafo.tap_step_degree.to_numpy(float)) if "tap_step_degree" in trafo \
        else np.zeros(len(trafo))
    kind = trafo.tap_changer_type.to_numpy() if "tap_changer_type" in trafo else \
        np.full(len(trafo), "Ratio", object)
    table = trafo.tap_dependency_table.fillna(False).to_numpy(bool) \
        if "tap_dependency_table" in trafo else np.zeros(len(trafo), bool)
    moved = (diff != 0) & ((step != 0) | (deg != 0))
    if (moved & ((kind != "Ratio") | table | (deg != 0))).any():
        raise ConfigError(f"grid {name!r} has a transformer tap changer other than a plain ratio "
                          "tap (phase-shifting or table-driven), which this model does not cover.")
    side = trafo.tap_side.to_numpy()
    hv_tap = moved & (side == "hv")
    lv_tap = moved & (side == "lv")
    vnh[hv_tap] *= 1 + diff[hv_tap] * step[hv_tap]
    vnl[lv_tap] *= 1 + diff[lv_tap] * step[lv_tap]
    par = trafo.parallel.to_numpy(float)
    s_t = trafo.sn_mva.to_numpy(float)
    # leakage impedance referred to the lv side, in system per unit (pandapower's convention)
    k_lv = (vnl / vn[lv]) ** 2 * sn
    vk = trafo.vk_percent.to_numpy(float) / 100 / s_t * k_lv
    rk = trafo.vkr_percent.to_numpy(float) / 100 / s_t * k_lv
    zk = (rk + 1j * np.sign(vk) * np.sqrt(vk ** 2 - rk ** 2)) / par
    # magnetising admittance (inductive), system per unit
    pfe = trafo.pfe_kw.to_numpy(float) * 1e-3
    ym_mva = trafo.i0_percent.to_numpy(float) / 100 * s_t
    b_mva = -np.sqrt(np.maximum(ym_mva ** 2 - pfe ** 2, 0))
    conv = vn[lv] ** 2 / sn * par / vnl_rated ** 2 / (vnl / vnl_rated) ** 2
    ym = (pfe + 1j * b_mva) * conv
    za = zb = zk / 2
    # Kron reduction of the T: ya = 1/za, yb = 1/zb, middle node to ground ym
    ya, yb = 1 / za, 1 / zb
    den = ya + yb + ym
    A = ya - ya * ya / den
    D = yb - yb * yb / den
    B = -ya * yb / den
    ratio = (vnh / vnl) / (vn[hv] / vn[lv])
    tap = ratio * np.exp(1j * np.deg2rad(shift))
    return A, B, B, D, tap


def specified(grid: Grid, load_p, load_q, gen_p, sgen_p=None, sgen_q=None) -> np.ndarray:
    r""":math:`S^\text{sp}` per bus in p.u. (generation minus load; element powers in MW/Mvar,
    in-service elements only, scaling already applied). Arrays may carry a leading batch axis."""
    load_p, load_q, gen_p = (np.asarray(a, float) for a in (load_p, load_q, gen_p))
    batch = load_p.shape[:-1]
    s = np.zeros((*batch, grid.n), complex)
    _add(s, grid.load_bus, -(load_p + 1j * load_q))
    _add(s, grid.gen_bus, gen_p + 0j)
    if sgen_p is not None:
        _add(s, grid.sgen_bus, np.asarray(sgen_p, float) + 1j * np.asarray(sgen_q, float))
    return s / grid.sn_mva


def _add(s, buses, values):
    """``s[..., buses[k]] += values[..., k]`` for every element k (repeated buses add up)."""
    if len(buses) == 0:
        return
    m = sp.csr_matrix((np.ones(len(buses)), (np.arange(len(buses)), buses)),
                      shape=(len(buses), s.shape[-1]))
    s += np.asarray((m.T @ np.atleast_2d(values).reshape(-1, len(buses)).T).T).reshape(s.shape)


def injections(Y: sp.spmatrix, vm, va_degree) -> np.ndarray:
    r""":math:`S = V \odot \overline{Y V}` (p.u.), rows of ``vm``/``va_degree`` are states."""
    V = np.asarray(vm, float) * np.exp(1j * np.deg2rad(np.asarray(va_degree, float)))
    return V * np.conj((Y @ V.T).T)


def mismatch(grid: Grid, Y, vm, va_degree, s_spec) -> tuple[np.ndarray, np.ndarray]:
    r"""(:math:`\Delta P` at non-slack buses, :math:`\Delta Q` at PQ buses), p.u."""
    ds = injections(Y, vm, va_degree) - s_spec
    return ds.real[..., grid.bus_type != SLACK], ds.imag[..., grid.bus_type == PQ]


def ybus(net, name: str = "grid") -> sp.csr_matrix:
    """:math:`Y` of a pandapower network in the bus order of ``net.bus``."""
    return grid_of(net, name).ybus()


def mismatch_vs_pandapower(grid: Grid, net, rng: np.random.Generator,
                           spread: tuple[float, float] = (0.02, 2.0)) -> tuple[float, float]:
    r"""Two checks of :func:`mismatch` on a network pandapower has just solved (p.u.):

    * the largest :math:`|\Delta P|, |\Delta Q|` at pandapower's solution (its Newton–Raphson stops
      below 1e-8 MVA, so ours must be ~0 there too);
    * the largest difference between our mismatch and pandapower's own,
      :math:`F = V \odot \overline{Y_\text{pp} V} - S_\text{bus,pp}` from its internal Ybus and
      Sbus, at a state off the solution (|V| scaled by 1 ± ``spread[0]``, θ moved by ±
      ``spread[1]`` degrees, uniform per bus), where both are far from 0.
    """
    vm = net.res_bus.vm_pu.to_numpy(float)
    va = net.res_bus.va_degree.to_numpy(float)
    load, gen, sgen = net.load, net.gen, net.sgen
    s_spec = specified(grid, load.p_mw * load.scaling * load.in_service,
                       load.q_mvar * load.scaling * load.in_service,
                       gen.p_mw * gen.scaling * gen.in_service,
                       sgen.p_mw * sgen.scaling * sgen.in_service,
                       sgen.q_mvar * sgen.scaling * sgen.in_service)
    Y = grid.ybus()
    dp, dq = mismatch(grid, Y, vm, va, s_spec)
    at_solution = float(max(np.abs(dp).max(initial=0), np.abs(dq).max(initial=0)))
    vm2 = vm * (1 + rng.uniform(-spread[0], spread[0], grid.n))
    va2 = va + rng.uniform(-spread[1], spread[1], grid.n)
    dp2, dq2 = mismatch(grid, Y, vm2, va2, s_spec)
    internal = net._ppc["internal"]
    lk = net._pd2ppc_lookups["bus"][grid.bus_index]
    V = np.zeros(internal["Ybus"].shape[0], complex)
    V[lk] = vm2 * np.exp(1j * np.deg2rad(va2))
    F = (V * np.conj(internal["Ybus"] @ V) - internal["Sbus"])[lk]
    gap = max(np.abs(dp2 - F.real[grid.bus_type != SLACK]).max(initial=0),
              np.abs(dq2 - F.imag[grid.bus_type == PQ]).max(initial=0))
    return at_solution, float(gap)
