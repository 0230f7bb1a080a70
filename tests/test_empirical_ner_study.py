"""The NER active-learning study on a tiny user file: staged rounds (artifacts, reused by more
seeds), incremental and from-scratch retraining, word budgets, reproducible records, claims."""

from __future__ import annotations

import numpy as np
import pytest

from support.ner_tiny import tiny_corpus
from theorylab.empirical.data.conll import write_tagged
from theorylab.empirical.ner.study import NerActiveStudy, curve_records, full_records
from theorylab.threads import single_thread

TINY = dict(format="iob2", dev_fraction=0.15, test_fraction=0.15, n_seeds=2, init_words=20,
            round_words=25, n_rounds=2, round_steps=4, epochs_round=4, epochs_full=3,
            word_dim=8, char_dim=4, char_filters=6, char_width=3, word_filters=8,
            decoder_dim=8, tag_dim=4, lstm_hidden=6, mc_passes=3, score_batch=7, device="cpu",
            batch_size=8)


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():  # many tiny ops: the thread pool only costs on a loaded machine
        yield


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("ner") / "tiny.iob2"
    write_tagged(p, [(s.tokens, s.tags) for s in tiny_corpus(60, seed=1)])
    return p


@pytest.fixture
def ctx(tmp_path):
    from theorylab.claims import Context
    from theorylab.store import Store
    from theorylab.sweep import Sweeper
    with Store(tmp_path / "s.sqlite") as store, Sweeper(store, "serial", progress=False) as sw:
        yield Context(store, sw, quick=False)


@pytest.mark.parametrize("retrain", ["incremental", "scratch"])
def test_rounds_respect_the_word_budget_and_are_reproducible(tiny_file, ctx, retrain):
    study = NerActiveStudy(data=str(tiny_file), retrain=retrain, **TINY)
    if retrain == "scratch":  # the same code path but for the restart: two strategies suffice
        study = study.replace(strategies=("random", "bald"), archs=("bilstm_crf",))
    table = ctx.run(study)
    curves = curve_records(table)
    assert len(curves) == len(study.strategies) * study.n_seeds * (study.n_rounds + 1)
    for (_, _), g in curves.groupby(["strategy", "seed"]):
        g = g.sort_values("round")
        words, sents = np.diff(g.words.to_numpy()), np.diff(g.n_sentences.to_numpy())
        assert np.all(sents >= 1)
        assert np.all((words <= study.round_words) | (sents == 1))  # one long sentence may exceed
        assert g.words.iloc[0] <= study.init_words or g.n_sentences.iloc[0] == 1
    # round 0 is one shared artifact per seed: identical across strategies
    r0 = curves[curves["round"] == 0].groupby("seed").f1.nunique()
    assert (r0 == 1).all()
    full = full_records(table)
    assert set(full.arch) == set(study.archs) and full.f1.between(0, 1).all()
    q = study.strategies[-1]
    again = study.run_unit({"strategy": q, "seed": 1})  # in memory, from scratch
    mine = curves[(curves.strategy == q) & (curves.seed == 1)].sort_values("round")
    assert [r["f1"] for r in again] == mine.f1.tolist()
    assert [r["words"] for r in again] == mine.words.tolist()


def test_more_seeds_reuse_the_stored_rounds(tiny_file, ctx):
    study = NerActiveStudy(data=str(tiny_file), strategies=("random", "lc"), archs=(), **TINY)
    ctx.run(study)
    arts = ctx.store.artifacts()
    assert set(arts.stage) == {"round"}
    # per seed: the shared round 0 and rounds 1..R of each strategy
    assert len(arts) == study.n_seeds * (1 + len(study.strategies) * study.n_rounds)
    stamps = {p: (ctx.store.artifact_root / p).stat().st_mtime_ns for p in arts.path}
    ctx.run(study.replace(n_seeds=3, n_rounds=3))
    after = ctx.store.artifacts()
    assert len(after) == 3 * (1 + 2 * 3)
    assert {p: (ctx.store.artifact_root / p).stat().st_mtime_ns for p in arts.path} == stamps


def test_incremental_continues_from_the_previous_weights(tiny_file):
    """Round 1 trained incrementally differs from round 1 trained from the initial weights,
    while both label the same sentences (selection uses round 0's model)."""
    from theorylab.study import memory_context
    out = {}
    for retrain in ("incremental", "scratch"):
        st = NerActiveStudy(data=str(tiny_file), retrain=retrain, **TINY)
        ctx = memory_context(st)
        d = st._prepared()
        out[retrain] = st._round(ctx, d, "lc", 0, 1)
    assert out["incremental"]["labelled"].tolist() == out["scratch"]["labelled"].tolist()
    a, b = out["incremental"]["state"], out["scratch"]["state"]
    assert any(not (a[k] == b[k]).all() for k in a)


def test_study_rejects_bad_config(tiny_file):
    from theorylab.errors import ConfigError
    with pytest.raises(ConfigError, match="'strategies' of NerActiveStudy"):
        NerActiveStudy(strategies=("mnlp", "entropy"))
    with pytest.raises(ConfigError, match="'data' of NerActiveStudy"):
        NerActiveStudy(data="/no/such/file").corpus()


@pytest.mark.slow
def test_quick_form_cnn_leaves_the_all_o_solution_on_every_seed():
    """Regression (study version 2, lr 1e-2: seed 0 stayed all-O, test F1 0): the quick form's
    full-data CNN-CNN-LSTM finds entities on each of the first three seeds."""
    st = NerActiveStudy().quick().replace(device="cpu")
    d = st._prepared()
    f1 = [st._full("cnn", s, d)[0]["f1"] for s in range(3)]
    assert min(f1) > 0.2, f1


def test_extra_seeds_run_the_named_strategies_and_the_claims_pair_seeds(tiny_file, ctx,
                                                                        monkeypatch):
    """extra_seeds adds seeds for extra_strategies only; a comparison pairs the seeds that ran
    both strategies, and its measured value is the mean of the per-seed trapezoid AULC
    differences computed here from the curve records."""
    import theorylab.papers.ner as ner
    study = NerActiveStudy(data=str(tiny_file), strategies=("random", "lc", "mnlp"),
                           archs=("cnn",), extra_seeds=2, full_seeds=1,
                           **TINY)
    units = study.units()
    assert sum("arch" in u for u in units) == 1
    assert {u["seed"] for u in units if u.get("strategy") == "lc"} == {0, 1}
    assert {u["seed"] for u in units if u.get("strategy") == "mnlp"} == {0, 1, 2, 3}
    monkeypatch.setattr(ner, "_study", lambda c: study)
    curves = curve_records(ctx.run(study))

    def area(q, s):
        g = curves[(curves.strategy == q) & (curves.seed == s)].sort_values("round")
        x, y = g.frac_words.to_numpy(), g.f1.to_numpy()
        return sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)) / (
            x[-1] - x[0])

    for a, b, seeds in (("mnlp", "random", range(4)), ("lc", "random", range(2))):
        v = ner.compare(ctx, a, b)
        want = [area(a, s) - area(b, s) for s in seeds]
        assert v.details["n_seeds"] == len(want)
        assert v.measured == pytest.approx(np.mean(want), abs=1e-12)
    assert "seeds_0_to_1" in ner.compare(ctx, "mnlp", "random").details
