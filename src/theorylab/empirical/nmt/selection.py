r"""Moore–Lewis data selection (Moore & Lewis, ACL 2010; the survey's data-selection family).

Score every sentence s of the out-of-domain pool by the cross-entropy difference

.. math:: \mathrm{score}(s) = H_{in}(s) - H_{out}(s),\qquad
          H_{LM}(s) = -\frac{1}{|s| + 1}\sum_{i=1}^{|s|+1} \log p_{LM}(w_i \mid w_{i-1}),

(:math:`w_0` = ``<s>``, :math:`w_{|s|+1}` = ``</s>``) with :math:`LM_{in}` trained on the
in-domain text and :math:`LM_{out}` on a random sample of the pool of about the same number of
tokens, and keep the lowest-scoring sentences: those the in-domain model finds likely *and*
the general model does not (plain in-domain perplexity would favour short, common sentences).

The language models are bigram models over the shared subword ids with Witten–Bell
interpolation (parameter-free): :math:`p(w|v) = \lambda_v \frac{c(v, w)}{c(v)} +
(1 - \lambda_v)\, p_1(w)`, :math:`1 - \lambda_v = \frac{N_{1+}(v\,\cdot)}{N_{1+}(v\,\cdot) + c(v)}`
(:math:`N_{1+}(v\,\cdot)` the number of distinct successors of v), and the add-one unigram
:math:`p_1(w) = \frac{c(w) + 1}{N + V}`; a context never seen uses :math:`p_1`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from theorylab.empirical.nmt.subwords import BOS, EOS

__all__ = ["BigramLM", "moore_lewis_scores", "select_lowest"]


class BigramLM:
    """Witten–Bell-interpolated bigram model over ids < ``vocab``."""

    def __init__(self, sentences: Sequence[Sequence[int]], vocab: int):
        self.V = vocab
        prev, nxt = self._bigrams(sentences)
        self.uni = (np.bincount(nxt, minlength=vocab) + 1.0) / (len(nxt) + vocab)
        codes, counts = np.unique(prev.astype(np.int64) * vocab + nxt, return_counts=True)
        self.pair = dict(zip(codes.tolist(), counts.tolist(), strict=True))
        self.ctx = np.bincount(prev, minlength=vocab).astype(float)       # c(v)
        self.types = np.bincount(codes // vocab, minlength=vocab).astype(float)  # N1+(v .)

    @staticmethod
    def _bigrams(sentences) -> tuple[np.ndarray, np.ndarray]:
        prev, nxt = [], []
        for s in sentences:
            seq = [BOS, *s, EOS]
            prev.extend(seq[:-1])
            nxt.extend(seq[1:])
        return np.asarray(prev, dtype=np.int64), np.asarray(nxt, dtype=np.int64)

    def prob(self, v: int, w: int) -> float:
        """p(w | v)."""
        c, t = self.ctx[v], self.types[v]
        if c == 0:
            return float(self.uni[w])
        lam = c / (c + t)
        return float(lam * self.pair.get(v * self.V + w, 0) / c + (1 - lam) * self.uni[w])

    def cross_entropy(self, sentences: Sequence[Sequence[int]]) -> np.ndarray:
        """H(s) per sentence (nats per token, ``</s>`` counted)."""
        out = np.empty(len(sentences))
        for k, s in enumerate(sentences):
            seq = [BOS, *s, EOS]
            out[k] = -np.mean([np.log(self.prob(v, w)) for v, w in zip(seq[:-1], seq[1:],
                                                                        strict=True)])
        return out


def moore_lewis_scores(pool: Sequence[Sequence[int]], in_domain: Sequence[Sequence[int]],
                       vocab: int, rng: np.random.Generator) -> np.ndarray:
    """H_in(s) − H_out(s) for every s in ``pool``; LM_out on a random pool sample with about as
    many tokens as ``in_domain``."""
    need = sum(len(s) + 1 for s in in_domain)
    order = rng.permutation(len(pool))
    cum = np.cumsum([len(pool[i]) + 1 for i in order])
    sample = [pool[i] for i in order[: max(1, int(np.searchsorted(cum, need)) + 1)]]
    lm_in, lm_out = BigramLM(in_domain, vocab), BigramLM(sample, vocab)
    return lm_in.cross_entropy(pool) - lm_out.cross_entropy(pool)


def select_lowest(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` lowest scores (ties by index), in pool order."""
    return np.sort(np.argsort(scores, kind="stable")[:n])
