"""The ESM knowledge-neuron study end to end at toy size, and the claims/figures on its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from theorylab.empirical.esm_pipeline import (
    EsmNeuronsStudy,
    accuracy_table,
    density_table,
    load_task,
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
    return study, study.run_unit({"rep": 0})


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
    study, row = toy_row
    # keeping every neuron (f = 1) restores the fine-tuned model exactly, whatever the method
    for col in (c for c in row if c.startswith("acc:") and c.endswith(":1.0")):
        assert row[col] == row["acc_finetuned"], col
    for col in (c for c in row if c.startswith("dens:") and ":1.0:" in col):
        assert row[col] == 1.0
    acc = accuracy_table(pd.DataFrame([{**row, "rep": 0}]))
    assert set(acc.method) == {"act", "ig", "random"}
    assert acc.groupby(["method", "reset", "f"]).size().loc["random"].eq(study.n_random).all()
    assert acc.acc.between(0, 1).all()
    dens = density_table(pd.DataFrame([{**row, "rep": 0}]))
    # the densities of one selection average (weighted by module size) to round(f·N)/N
    sizes = {"query": 32, "key": 32, "value": 32, "attn_out": 32, "ffn_in": 128, "ffn_out": 32}
    for (method, f), g in dens.groupby(["method", "f"]):
        w = g.kind.map(sizes).astype(float)
        total = sum(sizes.values()) * 2
        assert np.isclose((g.density * w).sum(), round(f * total)), (method, f)
    assert row["ig_rel_error"] >= 0 and row["n_test"] > 0


@needs_data
def test_toy_run_is_deterministic(toy_row):
    study, row = toy_row
    again = study.run_unit({"rep": 0})
    timing = {k for k in row if "seconds" in k or k.endswith("_per_s")}
    assert {k: v for k, v in row.items() if k not in timing} == {
        k: v for k, v in again.items() if k not in timing}


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
    """Two replicates; method accuracies = random seed mean + ``advantage``."""
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(2):
        row = {"rep": rep, "acc_finetuned": 0.8, "acc_majority": 0.3, "n_test": 200,
               "acc:none:pretrained": 0.3, "acc:none:zero": 0.25, "ig_rel_error": 0.01,
               "ig_abs_delta_max": 0.02, "ig_abs_delta_mean": 0.001, "ig_abs_gap_mean": 0.1,
               "pretrain_loss": 2.5, "pretrain_tokens_per_s": 1e4, "device": "cpu"}
        for reset in ("pretrained", "zero"):
            for f in (0.01, 0.1, 0.5):
                base = 0.3 + 0.4 * f
                rnd = base + noise * rng.standard_normal(n_random)
                for s in range(n_random):
                    row[f"acc:random{s}:{reset}:{f}"] = rnd[s]
                for m in ("act", "ig"):
                    row[f"acc:{m}:{reset}:{f}"] = rnd.mean() + advantage
        for method in ("act", "ig"):
            for layer in range(2):
                for kind, d in zip(("query", "key", "value", "attn_out", "ffn_in", "ffn_out"),
                                   (0.02, 0.09, 0.05, 0.04, 0.05, 0.03), strict=True):
                    row[f"dens:{method}:0.05:{layer}:{kind}"] = d
        rows.append(row)
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


def test_density_and_completeness_claims(tmp_path):
    from theorylab.claims import REGISTRY
    from theorylab.papers import esm as paper
    ctx = _Ctx(_synthetic_table(0.05, 0.01), tmp_path)
    v = REGISTRY["esm.density.key_densest"].check(ctx)
    assert (v.measured, v.holds) == ("key", True)
    assert REGISTRY["esm.density.key_densest"].must_hold is False
    assert REGISTRY["esm.ig.completeness"].check(ctx).holds
    bad = _synthetic_table(0.05, 0.01).assign(ig_rel_error=0.2)
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
