"""NMT model: decoding exactness (beam 1 = greedy, two-copy ensemble = the model, batched beam =
one sentence at a time, beam = exhaustive search on a tiny vocabulary), label smoothing, masks,
checkpoint averaging, training through the shared loop."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from theorylab.empirical.nmt.model import (
    Seq2Seq,
    Snapshots,
    _chunks,
    average_states,
    beam_search,
    greedy,
    loss_fn,
    make_batch,
    token_batches,
)
from theorylab.empirical.nmt.subwords import BOS, EOS, PAD
from theorylab.errors import InputError
from theorylab.threads import single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: torch's thread pool only waits on a loaded machine."""
    with single_thread():
        yield


def _model(vocab=40, seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    m = Seq2Seq(vocab, d_model=32, heads=4, enc_layers=2, dec_layers=2, ff=64, dropout=0.0, **kw)
    return m.to(dtype).eval()


def _sources(n=24, vocab=40, seed=1):
    g = np.random.default_rng(seed)
    return [g.integers(6, vocab, size=g.integers(1, 12)).tolist() for _ in range(n)]


def test_beam_one_is_greedy():
    m, src = _model(), _sources()
    assert beam_search(m, src, beam=1, batch_size=7) == greedy(m, src, batch_size=5)


def test_ensemble_of_two_copies_is_the_model():
    m, src = _model(), _sources()
    one = beam_search(m, src, beam=3, return_scores=True)
    two = beam_search([m, copy.deepcopy(m)], src, beam=3, return_scores=True)
    assert [h for h, _ in one] == [h for h, _ in two]
    assert np.allclose([s for _, s in one], [s for _, s in two], rtol=0, atol=1e-12)
    assert greedy([m, copy.deepcopy(m)], src) == greedy(m, src)


@pytest.mark.parametrize("beam, alpha", [(2, 0.0), (4, 0.6), (5, 1.0)])
def test_batched_beam_equals_one_sentence_at_a_time(beam, alpha):
    m, src = _model(seed=3), _sources(seed=4)
    batched = beam_search(m, src, beam=beam, alpha=alpha, batch_size=64, return_scores=True)
    single = [beam_search(m, [s], beam=beam, alpha=alpha, batch_size=1, return_scores=True)[0]
              for s in src]
    assert [h for h, _ in batched] == [h for h, _ in single]
    assert np.allclose([s for _, s in batched], [s for _, s in single], rtol=0, atol=1e-10)


@given(st.lists(st.integers(0, 30), max_size=60), st.integers(1, 9))
def test_chunks_partition_the_sentences_by_length(lengths, batch_size):
    chunks = _chunks([[7] * n for n in lengths], batch_size)
    flat = [i for c in chunks for i in c]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(0 < len(c) <= batch_size for c in chunks)
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_batch_size_below_one_is_refused():
    with pytest.raises(InputError, match="batch_size"):
        beam_search(_model(), _sources(), batch_size=0)


def _seq_logprob(m, src, toks):
    x = torch.tensor([[*src, EOS]])
    y = torch.tensor([[BOS, *toks]])
    lp = F.log_softmax(m(x, y), -1)[0]
    full = [*toks, EOS][: len(toks) + 1]
    return float(sum(lp[t, full[t]] for t in range(len(full))))


def test_beam_wide_enough_finds_the_exhaustive_best():
    """With K >= V^L nothing is pruned: the output is the best of all sequences of length <= L
    under log P / lp (the finished set holds every sequence that ends in </s>, plus the open
    ones at the limit)."""
    vocab, L, alpha = 7, 3, 0.6
    m = _model(vocab=vocab, seed=5)
    for src in ([5, 6], [6, 6, 5, 4]):
        (hyp, score), = beam_search(m, [src], beam=vocab ** L, alpha=alpha, max_len_a=0,
                                    max_len_b=L, return_scores=True)
        best = -math.inf
        for n in range(0, L + 1):
            for toks in itertools.product(range(vocab), repeat=n):
                if EOS in toks:
                    continue
                x = torch.tensor([[*src, EOS]])
                y = torch.tensor([[BOS, *toks]])
                lp = F.log_softmax(m(x, y), -1)[0]
                s = float(sum(lp[t, toks[t]].detach() for t in range(n)))
                if n < L:   # ends with </s>
                    s += float(lp[n, EOS].detach())
                    length = n + 1
                else:       # open at the limit
                    length = n
                best = max(best, s / ((5 + length) / 6) ** alpha)
        assert score == pytest.approx(best, abs=1e-9)


def test_padding_does_not_change_a_sentence():
    m = _model()
    a, b = [7, 8, 9], [10, 11, 12, 13, 14, 15, 16]
    src, tgt_in, _ = make_batch([a, b], [[6, 7], [8, 9, 10, 11]])
    both = m(src, tgt_in)
    alone = m(*make_batch([a], [[6, 7]])[:2])
    assert torch.allclose(both[0, :3], alone[0], atol=1e-12)


def test_label_smoothing_matches_its_definition():
    m, eps = _model(dtype=torch.float32), 0.1
    batch = make_batch([[7, 8], [9]], [[6, 7, 8], [10]])
    logits = m(batch[0], batch[1])
    lp = F.log_softmax(logits, -1)
    V = lp.shape[-1]
    keep = batch[2] != PAD
    gold = lp.gather(-1, batch[2][..., None])[..., 0]
    per_tok = -(1 - eps) * gold - eps / V * lp.sum(-1)
    assert float(loss_fn(eps)(m, batch)) == pytest.approx(float(per_tok[keep].mean()), rel=1e-5)


def test_average_states_is_the_elementwise_mean():
    a, b, c = (_model(seed=s).state_dict() for s in (0, 1, 2))
    avg = average_states([a, b, c])
    for k in a:
        assert torch.allclose(avg[k], (a[k] + b[k] + c[k]) / 3)
    assert all(torch.equal(average_states([a])[k], a[k]) for k in a)


def test_token_batches_respect_the_budget_and_cover_all():
    lens = np.random.default_rng(0).integers(1, 30, 200).tolist()
    batches = token_batches(lens, 100, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(max(lens[i] for i in b) * len(b) <= 100 or len(b) == 1 for b in batches)


def test_training_learns_to_copy_through_the_shared_loop():
    from theorylab.empirical.train import TrainConfig, train
    g = np.random.default_rng(0)
    seqs = [g.integers(6, 16, size=g.integers(2, 6)).tolist() for _ in range(400)]
    batches = [make_batch([seqs[i] for i in b], [seqs[i] for i in b])
               for b in token_batches([len(s) for s in seqs], 160, g)]
    torch.manual_seed(0)
    m = Seq2Seq(16, d_model=32, heads=2, enc_layers=1, dec_layers=1, ff=64, dropout=0.0)
    snaps = Snapshots(every=10, keep=3)
    res = train(m, loss_fn(0.1), batches, TrainConfig(epochs=25, lr=3e-3, batch_size=1,
                                                     device="cpu", seed=0),
                collate=lambda one: one[0], after_step=snaps)
    assert res.train_loss[-1] < res.train_loss[0] / 3 and len(snaps.states) == 3
    test = [g.integers(6, 16, size=4).tolist() for _ in range(30)]
    acc = np.mean([h == s for h, s in zip(beam_search(m, test, beam=3), test, strict=True)])
    assert acc > 0.8


def test_cached_step_equals_full_decode():
    m = _model()
    src, tgt_in, _ = make_batch([[7, 8, 9], [10, 11]], [[6, 7, 8, 9], [12, 13, 14, 15]])
    full = m(src, tgt_in)
    state = m.start(*m.encode(src))
    for t in range(tgt_in.shape[1]):
        assert torch.allclose(m.step(tgt_in[:, t], state), full[:, t], atol=1e-12)
