"""CRF forward algorithm and Viterbi against brute-force enumeration (exact, tiny sentences)."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from theorylab.empirical.ner.crf import brute_force, log_partition, sequence_score, viterbi


def _params(seed, K, T_max, B):
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(B, T_max, K, generator=g, dtype=torch.float64) * 2
    trans, start, end = (torch.randn(*s, generator=g, dtype=torch.float64) * 2
                         for s in ((K, K), (K,), (K,)))
    lengths = torch.randint(1, T_max + 1, (B,), generator=g)
    mask = torch.arange(T_max).unsqueeze(0) < lengths.unsqueeze(1)
    return em, mask, trans, start, end, lengths


@given(st.integers(0, 2**31), st.integers(1, 3), st.integers(1, 4))
def test_forward_and_viterbi_equal_enumeration(seed, K, T_max):
    em, mask, trans, start, end, lengths = _params(seed, K, T_max, B=3)
    logz = log_partition(em, mask, trans, start, end)
    tags, best = viterbi(em, mask, trans, start, end)
    assert torch.all(tags[~mask] == 0)
    for b in range(3):
        n = int(lengths[b])
        ref_z, ref_y, ref_s = brute_force(em[b, :n], trans, start, end)
        assert abs(float(logz[b]) - ref_z) <= 1e-12 * max(1.0, abs(ref_z))
        assert abs(float(best[b]) - ref_s) <= 1e-12 * max(1.0, abs(ref_s))
        assert tuple(tags[b, :n].tolist()) == ref_y  # continuous scores: the argmax is unique
        # the score function agrees with enumeration at the best path
        s = sequence_score(em[b:b + 1], tags[b:b + 1], mask[b:b + 1], trans, start, end)
        assert float(s) == pytest.approx(ref_s, abs=1e-12)


def test_probabilities_sum_to_one():
    em, mask, trans, start, end, _ = _params(3, 3, 3, B=1)
    mask[:] = True
    import itertools
    ys = torch.tensor(list(itertools.product(range(3), repeat=3)))
    s = sequence_score(em.expand(len(ys), -1, -1), ys, mask.expand(len(ys), -1), trans, start, end)
    z = log_partition(em, mask, trans, start, end)
    assert float(torch.exp(s - z).sum()) == pytest.approx(1.0, abs=1e-12)
