r"""Linear-chain CRF over tag sequences (the BiLSTM-CRF baseline's output layer).

For emissions :math:`E \in \mathbb R^{T \times K}`, transitions :math:`A \in \mathbb R^{K\times K}`
(:math:`A_{ij}`: tag i followed by j), start and end scores :math:`a, b \in \mathbb R^K`, a tag
sequence :math:`y` scores

.. math:: s(y) = a_{y_1} + \sum_{t=1}^{T} E_{t, y_t} + \sum_{t=2}^{T} A_{y_{t-1} y_t} + b_{y_T},

and :math:`P(y \mid x) = e^{s(y)} / Z`, :math:`\log Z = \operatorname{logsumexp}_y s(y)`. The
forward algorithm computes :math:`\log Z` in :math:`O(T K^2)` with
:math:`\alpha_1 = a + E_1`, :math:`\alpha_t(j) = \operatorname{logsumexp}_i (\alpha_{t-1}(i) +
A_{ij}) + E_{t,j}`, :math:`\log Z = \operatorname{logsumexp}_j (\alpha_T(j) + b_j)`; Viterbi is
the same recursion with max and back-pointers. Batches are left-aligned: ``mask[:, t]`` is True
for the real tokens (``mask[:, 0]`` always). ``brute_force`` enumerates all :math:`K^T`
sequences (the slow twin, for tiny T and K).
"""

from __future__ import annotations

import itertools

import torch

__all__ = ["sequence_score", "log_partition", "viterbi", "brute_force"]


def sequence_score(em: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor,
                   start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """:math:`s(y)` per sentence: ``em`` (B, T, K), ``tags`` (B, T), ``mask`` (B, T) → (B,)."""
    m = mask.to(em.dtype)
    emit = em.gather(2, tags.unsqueeze(2)).squeeze(2)
    s = start[tags[:, 0]] + (emit * m).sum(1)
    s = s + (trans[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)
    last = tags.gather(1, (mask.sum(1) - 1).unsqueeze(1)).squeeze(1)
    return s + end[last]


def log_partition(em: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor,
                  start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """:math:`\\log Z` per sentence by the forward algorithm: (B,)."""
    alpha = start + em[:, 0]
    for t in range(1, em.shape[1]):
        nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + em[:, t]
        alpha = torch.where(mask[:, t:t + 1], nxt, alpha)
    return torch.logsumexp(alpha + end, dim=1)


def viterbi(em: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, start: torch.Tensor,
            end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(best tags (B, T), zero after each sentence's end; their scores :math:`\\max_y s(y)`)."""
    B, T, _ = em.shape
    delta = start + em[:, 0]
    back = []
    for t in range(1, T):
        best, arg = (delta.unsqueeze(2) + trans).max(dim=1)
        keep = mask[:, t:t + 1]
        delta = torch.where(keep, best + em[:, t], delta)
        back.append(torch.where(keep, arg, torch.arange(em.shape[2], device=em.device)))
    score, last = (delta + end).max(dim=1)
    path = [last]
    for arg in reversed(back):  # past the end, back-pointers are the identity
        last = arg.gather(1, last.unsqueeze(1)).squeeze(1)
        path.append(last)
    tags = torch.stack(path[::-1], dim=1)
    return tags * mask.long(), score


def brute_force(em: torch.Tensor, trans: torch.Tensor, start: torch.Tensor, end: torch.Tensor
                ) -> tuple[float, tuple[int, ...], float]:
    """(log Z, best sequence, its score) of one sentence ``em`` (T, K) by enumerating
    all K^T sequences straight from the definition of :math:`s(y)`."""
    T, K = em.shape
    scores = {}
    for y in itertools.product(range(K), repeat=T):
        s = start[y[0]] + end[y[-1]] + sum(em[t, y[t]] for t in range(T))
        s = s + sum(trans[y[t - 1], y[t]] for t in range(1, T))
        scores[y] = float(s)
    best = max(scores, key=scores.get)
    logz = float(torch.logsumexp(torch.tensor(list(scores.values()), dtype=torch.float64), 0))
    return logz, best, scores[best]
