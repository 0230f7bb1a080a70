"""BEB kernels vs a slow exact enumeration, the numpy baseline, and hypothesis invariants."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.kernels import beb as K

FIELDS = ["b_p", "b_minus", "b_plus", "kl_minus_plus", "kl_minus_full"]


def random_hmm_mixture(rng, M=3, Kh=2, S=3, neg=None):
    prior = rng.dirichlet(np.ones(M))
    init = rng.dirichlet(np.ones(Kh), size=M)
    trans = rng.dirichlet(np.ones(Kh), size=(M, Kh))
    emit = rng.dirichlet(np.ones(S), size=(M, Kh))
    scores = rng.uniform(-1, 1, S)
    if neg is None:
        neg = np.zeros(M, bool)
        neg[: max(1, M // 2)] = True
    return prior, init, trans, emit, scores, np.asarray(neg)


@pytest.mark.parametrize("impl", ["numba", "numpy"])
@pytest.mark.parametrize("seed", range(4))
def test_prefix_stats_equal_exact_enumeration(impl, seed):
    rng = np.random.default_rng(seed)
    model = random_hmm_mixture(rng, M=2 + seed % 2, Kh=2 + seed % 2, S=3)
    prompt = rng.integers(0, 3, 4)
    fn = K.prefix_stats if impl == "numba" else K.prefix_stats_numpy
    got = fn(*model, prompt[None])
    ref = K.reference_prefix_stats(*model, list(prompt))
    for f in FIELDS:
        np.testing.assert_allclose(getattr(got, f)[0], ref[f], rtol=1e-10, atol=1e-12, err_msg=f)
    np.testing.assert_allclose(np.exp(got.log_ratio[0]), ref["ratio"], rtol=1e-10)
    np.testing.assert_allclose(np.exp(got.log_post[0]).T, ref["post"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.exp(got.log_p[0]).T, ref["p_m"], rtol=1e-10, atol=1e-300)


def test_numba_equals_numpy_on_ragged_batch():
    rng = np.random.default_rng(7)
    model = random_hmm_mixture(rng, M=4, Kh=3, S=5)
    prompts = rng.integers(0, 5, (6, 20))
    lengths = np.array([20, 0, 5, 13, 1, 20])
    a = K.prefix_stats(*model, prompts, lengths)
    b = K.prefix_stats_numpy(*model, prompts, lengths)
    for f in a._fields:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=f)
    assert np.isnan(a.b_p[1, 1:]).all() and np.isfinite(a.b_p[1, 0])


def test_parallel_and_serial_paths_agree():
    """Large batches take the prange kernel, small ones the serial one: same numbers."""
    rng = np.random.default_rng(8)
    model = random_hmm_mixture(rng, M=3, Kh=2, S=4)
    prompts = rng.integers(0, 4, (80, 15))
    lengths = rng.integers(0, 16, 80)
    big = K.prefix_stats(*model, prompts, lengths)
    for i in (0, 17, 79):
        one = K.prefix_stats(*model, prompts[i:i + 1], lengths[i:i + 1])
        for f in big._fields:
            np.testing.assert_array_equal(getattr(big, f)[i], getattr(one, f)[0], err_msg=f)


def test_long_prompt_stays_finite_in_log_space():
    """Thousands of sentences: probabilities underflow (1e-300) but log quantities stay exact."""
    rng = np.random.default_rng(3)
    model = random_hmm_mixture(rng, M=2, Kh=3, S=4)
    prompt = rng.integers(0, 4, 5000)
    st_ = K.prefix_stats(*model, prompt[None])
    assert np.all(np.isfinite(st_.log_p[0])) and st_.log_p[0, 0, -1] < -1000
    assert np.all(np.isfinite(st_.b_p[0]))
    # log_ratio is a running sum of per-step terms: compare with per-step sums in chunks
    lp = st_.log_p[0]
    alpha = model[0][model[5]].sum()
    ref = (lp[model[5]][0] - lp[~model[5]][0])  # single component per side
    np.testing.assert_allclose(st_.log_ratio[0], ref, rtol=1e-12, atol=1e-9)
    assert 0 < alpha < 1


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), M=st.integers(2, 4), Kh=st.integers(1, 3),
       S=st.integers(2, 5), T=st.integers(0, 12))
def test_invariants(seed, M, Kh, S, T):
    rng = np.random.default_rng(seed)
    model = random_hmm_mixture(rng, M=M, Kh=Kh, S=S)
    prompts = rng.integers(0, S, (2, T))
    s = K.prefix_stats(*model, prompts)
    np.testing.assert_allclose(np.exp(s.log_post).sum(1), 1.0, rtol=1e-12)
    for f in ("b_p", "b_minus", "b_plus"):
        v = getattr(s, f)
        assert np.all(v >= -1 - 1e-12) and np.all(v <= 1 + 1e-12)
    # B_P is the posterior mixture of B_{P-} and B_{P+}: it lies between them
    lo = np.minimum(s.b_minus, s.b_plus) - 1e-12
    hi = np.maximum(s.b_minus, s.b_plus) + 1e-12
    assert np.all((s.b_p >= lo) & (s.b_p <= hi))
    assert np.all(s.kl_minus_plus >= 0) and np.all(s.kl_minus_full >= 0)
    # key lemma (paper): |B_P - B_P-| <= 2 (1-alpha)/alpha * P+(s)/P-(s)
    alpha = model[0][model[5]].sum()
    bound = 2 * (1 - alpha) / alpha * np.exp(-s.log_ratio)
    assert np.all(np.abs(s.b_p - s.b_minus) <= bound * (1 + 1e-9) + 1e-12)
    # Eq. 7 (sharp form): KL(P-(.|s) || P(.|s)) <= log(1 + (1-alpha)/alpha * P+(s)/P-(s))
    assert np.all(s.kl_minus_full <= np.log1p((1 - alpha) / alpha * np.exp(-s.log_ratio)) + 1e-9)


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), S=st.integers(2, 5), T=st.integers(1, 8))
def test_invariant_to_relabelling(seed, S, T):
    """Permuting sentence ids (with scores) and permuting components changes nothing."""
    rng = np.random.default_rng(seed)
    prior, init, trans, emit, scores, neg = random_hmm_mixture(rng, M=3, Kh=2, S=S)
    prompts = rng.integers(0, S, (3, T))
    a = K.prefix_stats(prior, init, trans, emit, scores, neg, prompts)
    perm_s = rng.permutation(S)  # new id j is old id perm_s[j]
    inv = np.argsort(perm_s)
    perm_m = rng.permutation(3)
    b = K.prefix_stats(prior[perm_m], init[perm_m], trans[perm_m], emit[perm_m][:, :, perm_s],
                       scores[perm_s], neg[perm_m], inv[prompts])
    for f in FIELDS + ["log_ratio"]:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.log_post[:, perm_m], b.log_post, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_beam_search_matches_exhaustive(seed):
    rng = np.random.default_rng(seed)
    model = random_hmm_mixture(rng, M=3, Kh=2, S=3)
    prior, init, trans, emit, scores, neg = model
    for length in (1, 3):
        seq_ref, best = K.reference_max_log_ratio(prior, init, trans, emit, neg, length)
        seq, val = K.log_ratio_beam_search(prior, init, trans, emit, neg, length, width=3**length)
        assert val == pytest.approx(best, rel=1e-10)
        st_ = K.prefix_stats(prior, init, trans, emit, scores, neg, seq[None])
        assert st_.log_ratio[0, -1] == pytest.approx(val, rel=1e-10)
        g_seq, g_val = K.log_ratio_beam_search(prior, init, trans, emit, neg, length, width=1)
        assert g_val <= best + 1e-12  # greedy can only do worse


@pytest.mark.parametrize("seed", range(3))
def test_markov_dp_is_exact(seed):
    rng = np.random.default_rng(seed)
    S = 3
    init = rng.dirichlet(np.ones(S), size=2)
    trans = rng.dirichlet(np.ones(S), size=(2, S))
    emit = np.broadcast_to(np.eye(S), (2, S, S))
    prior = np.array([0.3, 0.7])
    neg = np.array([True, False])
    for length in (1, 2, 4):
        seq, val = K.markov_max_log_ratio(init[0], trans[0], init[1], trans[1], length)
        _, best = K.reference_max_log_ratio(prior, init, trans, emit, neg, length)
        assert val == pytest.approx(best, rel=1e-10)
    V = K.markov_dp_values(init[0], trans[0], init[1], trans[1], 4)
    for length in (1, 2, 4):
        assert V[length - 1].max() == pytest.approx(
            K.markov_max_log_ratio(init[0], trans[0], init[1], trans[1], length)[1], rel=1e-12)
    # with a start sentence: equals the beam over the continuation given that prefix
    seq, val = K.markov_max_log_ratio(init[0], trans[0], init[1], trans[1], 3, start=2)
    _, bval = K.log_ratio_beam_search(prior, init, trans, emit, neg, 3, width=27, prefix=[2])
    lr0 = math.log(init[0, 2] / init[1, 2])
    assert val + lr0 == pytest.approx(bval, rel=1e-10)


def test_sampling_matches_law():
    """Empirical first-two-sentence frequencies match P(s1 s2) (chi-square-free tolerance)."""
    rng = np.random.default_rng(11)
    prior, init, trans, emit, scores, neg = random_hmm_mixture(rng, M=2, Kh=2, S=3)
    n = 40000
    w = np.broadcast_to(prior, (n, 2))
    q0 = np.broadcast_to(init, (n, 2, 2))
    seq, comp = K.sample_sequences(np.random.default_rng(0), w, q0, trans, emit, 2)
    freq = np.zeros((3, 3))
    np.add.at(freq, (seq[:, 0], seq[:, 1]), 1.0 / n)
    law = np.array([[sum(prior[m] * K._slow_joint(init[m], trans[m], emit[m], [a, b])
                         for m in range(2)) for b in range(3)] for a in range(3)])
    assert np.abs(freq - law).max() < 4 * math.sqrt(0.25 / n) * 1.5
    assert abs(comp.mean() - prior[1]) < 0.02


def _slow_best_of_n(p, scores, n):
    """E[max B] by enumerating all S^n draws."""
    import itertools
    tot = 0.0
    for draw in itertools.product(range(len(p)), repeat=n):
        tot += math.prod(p[i] for i in draw) * max(scores[i] for i in draw)
    return tot


@pytest.mark.parametrize("n", [1, 2, 3])
def test_best_of_n_expectation(n):
    rng = np.random.default_rng(n)
    p = rng.dirichlet(np.ones(4))
    scores = np.array([-1.0, 0.3, 0.3, 1.0])  # ties are merged correctly
    assert K.best_of_n_expectation(p, scores, n) == pytest.approx(_slow_best_of_n(p, scores, n))
    if n == 1:
        assert K.best_of_n_expectation(p, scores, 1) == pytest.approx(p @ scores)
