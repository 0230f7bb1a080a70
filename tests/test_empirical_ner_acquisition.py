"""Acquisition scores against hand-computed values, MC-dropout masks, word-budgeted selection."""

import math

import numpy as np
import pytest
import torch

from support.ner_tiny import tiny_setup
from theorylab.empirical.ner.acquisition import (
    bald_scores,
    lc_scores,
    mc_predict,
    mc_predict_loop,
    mnlp_scores,
    score_pool,
    select,
)
from theorylab.empirical.ner.encode import collate
from theorylab.threads import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():  # many tiny ops: the thread pool only costs on a loaded machine
        yield


def test_lc_and_mnlp_hand_values():
    logp = torch.tensor([math.log(0.25), math.log(0.9), 0.0], dtype=torch.float64)
    n = torch.tensor([2, 3, 1])
    torch.testing.assert_close(lc_scores(logp), torch.tensor([0.75, 0.1, 0.0], dtype=torch.float64))
    torch.testing.assert_close(mnlp_scores(logp, n), torch.tensor(
        [math.log(4) / 2, -math.log(0.9) / 3, 0.0], dtype=torch.float64))


def test_bald_hand_values():
    a, b, c = [1, 2, 0], [1, 3, 0], [4, 2, 0]
    # sentence 0: passes a, a, b, c → mode a has 2 of 4 → 0.5; sentence 1: all equal → 0
    tags = torch.tensor([[a, a], [a, a], [b, a], [c, a]])  # (M=4, B=2, T=3)
    torch.testing.assert_close(bald_scores(tags), torch.tensor([0.5, 0.0]))
    # one pass differing only past the sentence end cannot occur: tags are zero there


@pytest.mark.parametrize("arch", ["cnn", "bilstm_crf"])
def test_pool_scores_equal_hand_computation_on_a_tiny_fixed_model(arch):
    """LC = 1 − exp(−NLL(ŷ)) and MNLP = NLL(ŷ)/n, NLL from the teacher-forced training loss of
    the decoded tags, one sentence at a time; the pool scored in batches of 3."""
    _, _, items, model = tiny_setup(arch, seed=5)
    model.eval()
    lc = score_pool(model, items, "lc", seed=0, batch_size=3)
    mnlp = score_pool(model, items, "mnlp", seed=0, batch_size=3)
    for i, it in enumerate(items):
        b = collate([it])
        with torch.no_grad():
            nll = float(model.loss({**b, "tags": model.predict(b).tags}))
        assert lc[i] == pytest.approx(1 - math.exp(-nll), abs=1e-5)
        assert mnlp[i] == pytest.approx(nll / len(it["words"]), abs=1e-5)
    np.testing.assert_allclose(lc, score_pool(model, items, "lc", seed=0, batch_size=256), atol=1e-6)


def test_mc_dropout_masks_differ_across_passes_and_reproduce_per_seed():
    _, _, items, model = tiny_setup("cnn")
    batch = collate(items)
    p1 = mc_predict(model, batch, passes=8, seed=11)
    p2 = mc_predict(model, batch, passes=8, seed=11)
    p3 = mc_predict(model, batch, passes=8, seed=12)
    assert p1.logp.shape == (8, len(items))
    assert torch.equal(p1.logp, p2.logp) and torch.equal(p1.tags, p2.tags)
    assert not torch.equal(p1.logp, p3.logp)
    # every sentence sees different masks in different passes
    assert bool((p1.logp.std(0) > 1e-4).all())
    # and the deterministic prediction is none of them
    det = model.predict(batch).logp
    assert not torch.isclose(p1.logp, det.expand_as(p1.logp)).all(0).any()
    loop = mc_predict_loop(model, batch, passes=8, seed=11)
    assert loop.tags.shape == p1.tags.shape and bool((loop.logp.std(0) > 1e-4).all())
    assert model.mc is False and model.training  # the mode it had (a new module trains)


@pytest.mark.parametrize("arch", ["cnn", "bilstm_crf"])
def test_batched_passes_put_pass_m_of_sentence_b_in_row_m_b(arch):
    """Without dropout every MC pass is the deterministic prediction: the M·B rows (embedding
    layer computed once, repeated) map back to (pass, sentence) exactly."""
    _, _, items, model = tiny_setup(arch, seed=3)
    model.p = 0.0
    batch = collate(items[:7])
    det = model.predict(batch)
    for max_rows in (None, 14, 7, 1):  # one batch; chunks of 2, 2, 1 passes; one pass each
        mc = mc_predict(model, batch, passes=5, seed=0, max_rows=max_rows)
        assert torch.equal(mc.tags, det.tags.expand(5, -1, -1))
        torch.testing.assert_close(mc.logp, det.logp.expand(5, -1), rtol=0, atol=1e-5)


def test_chunked_passes_differ_and_reproduce_per_seed():
    _, _, items, model = tiny_setup("cnn")
    batch = collate(items)
    a = mc_predict(model, batch, passes=6, seed=3, max_rows=2 * len(items))
    assert torch.equal(a.logp, mc_predict(model, batch, 6, 3, max_rows=2 * len(items)).logp)
    assert a.logp.shape == (6, len(items)) and bool((a.logp.std(0) > 1e-4).all())
    # passes of different chunks differ too (chunks draw fresh masks)
    assert not torch.isclose(a.logp[:2], a.logp[2:4]).all()


def test_select_respects_the_word_budget_and_the_score_order():
    scores = np.array([0.9, 0.1, 0.8, 0.8, 0.3])
    lengths = np.array([5, 2, 4, 4, 10])
    rng = np.random.default_rng(0)
    taken = select(scores, lengths, budget=9, rng=rng)
    assert taken[0] == 0 and lengths[taken].sum() <= 9
    assert set(taken) == {0, 2} or set(taken) == {0, 3}
    # the tie between 2 and 3 is broken by the seed, reproducibly
    assert np.array_equal(select(scores, lengths, 9, np.random.default_rng(0)), taken)
    ties = {tuple(select(scores, lengths, 9, np.random.default_rng(s))) for s in range(20)}
    assert len(ties) == 2
    # a first sentence longer than the budget is still taken (a round adds at least one)
    assert list(select(np.array([1.0]), np.array([50]), 9, rng)) == [0]


def test_random_scores_reproduce_per_seed():
    _, _, items, model = tiny_setup("cnn")
    a = score_pool(model, items, "random", seed=4)
    assert np.array_equal(a, score_pool(model, items, "random", seed=4))
    assert not np.array_equal(a, score_pool(model, items, "random", seed=5))
