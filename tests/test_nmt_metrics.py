"""NMT metrics (sacrebleu) and Moore–Lewis selection."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu
from hypothesis import given
from hypothesis import strategies as st

from theorylab.empirical.nmt.metrics import paired_bootstrap, score
from theorylab.empirical.nmt.selection import BigramLM, moore_lewis_scores, select_lowest
from theorylab.errors import InputError

REFS = ["the cat sat on the mat", "a dog barks at night", "hello world out there",
        "I like tea very much", "she reads a long book"] * 6
BASE = ["the cat sat on a mat", "a dog barked", "hello world", "I like tea", "she read books"] * 6
SYS = ["the cat sat on the mat", "a dog barks at noon", "hello world there",
       "I like tea much", "she reads a book"] * 6


def test_scores_are_sacrebleus_with_signature():
    b, sig = score(SYS, REFS)
    assert b == sacrebleu.corpus_bleu(SYS, [REFS]).score and sig.startswith("nrefs:1|")
    assert score(SYS, REFS, "chrf")[0] == sacrebleu.corpus_chrf(SYS, [REFS]).score


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_paired_bootstrap_resamples_as_sacrebleu(metric):
    r = paired_bootstrap(BASE, SYS, REFS, metric, n_samples=300)
    # the same index sets as sacrebleu's paired_bs: its resampled system mean is reproduced
    assert r["system_boot_mean"] == pytest.approx(r["sacrebleu_system_mean"], abs=1e-4)
    assert r["delta"] == pytest.approx(score(SYS, REFS, metric)[0] - score(BASE, REFS, metric)[0])
    assert r["ci"][0] <= r["delta"] <= r["ci"][1] and r["ci"][0] > 0  # SYS is better everywhere
    assert "bs:300" in r["signature"]


def test_paired_bootstrap_of_a_system_with_itself_is_zero():
    r = paired_bootstrap(SYS, SYS, REFS, n_samples=100)
    assert r["delta"] == 0 and r["ci"] == (0.0, 0.0)


def test_paired_bootstrap_rejects_unequal_lengths():
    with pytest.raises(InputError, match="of one length"):
        paired_bootstrap(BASE[:-1], SYS, REFS)


sents = st.lists(st.lists(st.integers(4, 11), max_size=6), min_size=1, max_size=15)


@given(sents, st.integers(0, 11))
def test_bigram_lm_is_a_distribution(data, v):
    lm = BigramLM(data, vocab=12)
    assert sum(lm.prob(v, w) for w in range(12)) == pytest.approx(1.0)


def test_bigram_lm_witten_bell_by_hand():
    lm = BigramLM([[5, 6], [5, 7]], vocab=8)  # bigrams: <s>5 56 6</s> <s>5 57 7</s>
    p1_6 = (1 + 1) / (6 + 8)                  # c(6)=1 among 6 next-tokens, add-one over V=8
    lam = 2 / (2 + 2)                         # c(5)=2, two distinct successors
    assert lm.prob(5, 6) == pytest.approx(lam * 1 / 2 + (1 - lam) * p1_6)
    assert lm.prob(4, 6) == pytest.approx(p1_6)  # unseen context: the unigram


def test_moore_lewis_prefers_in_domain_looking_sentences():
    rng = np.random.default_rng(0)
    general = [rng.integers(6, 30, size=8).tolist() for _ in range(300)]
    ui_like = [[40, 41, int(rng.integers(42, 45)), 46] for _ in range(30)]
    pool = general + ui_like
    in_domain = [[40, 41, int(rng.integers(42, 45)), 46] for _ in range(50)]
    s = moore_lewis_scores(pool, in_domain, vocab=50, rng=rng)
    chosen = select_lowest(s, 30)
    assert set(chosen.tolist()) == set(range(300, 330))
