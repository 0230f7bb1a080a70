r"""Acquisition functions of Shen et al. (ICLR 2018, section 4) and the word-budgeted selection.

For a sentence :math:`x` of :math:`n` tokens and the decoded tags :math:`\hat y` (greedy for the
CNN-CNN-LSTM, Viterbi for the CRF, both approximating :math:`\max_y P(y \mid x)`):

* **LC** (least confidence): :math:`1 - P(\hat y \mid x)`;
* **MNLP** (maximum normalised log-probability): the paper queries the sentences with the lowest
  :math:`\frac1n \sum_i \log P(\hat y_i \mid \hat y_{<i}, x)`; the score here is its negative,
  :math:`-\frac1n \log P(\hat y \mid x)` (higher = more uncertain, like the others);
* **BALD** with MC dropout: :math:`M` forward passes with independent dropout masks decode
  :math:`\hat y^1, \dots, \hat y^M`; the score is the fraction that disagree with the most
  frequent one, :math:`1 - \max_y |\{m : \hat y^m = y\}| / M` (the paper's form for sequences).
  The M passes run as one batch of :math:`M \cdot B` sentences, so the masks are drawn in one
  call per layer, not in a Python loop over passes, and the embedding layer (before any dropout)
  runs once (:func:`mc_predict_loop` is the loop, for the benchmark);
* **random**: uniform scores.

The pool is scored in batches of ``batch_size`` sentences of similar length (any pool size). :func:`select` takes
sentences in decreasing score (ties in a seeded random order) while the words taken stay within
the round's budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from theorylab.empirical.ner.encode import collate
from theorylab.empirical.ner.model import Prediction

__all__ = ["STRATEGIES", "lc_scores", "mnlp_scores", "bald_scores", "mc_predict",
           "mc_predict_loop", "score_pool", "select"]

STRATEGIES = ("random", "lc", "mnlp", "bald")


def lc_scores(logp: torch.Tensor) -> torch.Tensor:
    """:math:`1 - P(\\hat y \\mid x)` from :math:`\\log P(\\hat y \\mid x)`."""
    return -torch.expm1(logp)


def mnlp_scores(logp: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """:math:`-\\frac1n \\log P(\\hat y \\mid x)`."""
    return -logp / lengths.to(logp.dtype)


def bald_scores(tags: torch.Tensor) -> torch.Tensor:
    """``tags`` (M, B, T) decoded by M dropout passes (zero past each end) → (B,) disagreement
    :math:`1 - \\max_y |\\{m: \\hat y^m = y\\}| / M`."""
    M = tags.shape[0]
    same = (tags.unsqueeze(1) == tags.unsqueeze(0)).all(-1)   # (M, M, B): pass m equals pass m'
    return 1.0 - same.sum(1).amax(0).to(torch.float32) / M


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


@torch.no_grad()
def mc_predict(model, batch: dict, passes: int, seed: int, max_rows: int | None = None
               ) -> Prediction:
    """Tags (M, B, T) and log-probabilities (M, B) of ``passes`` MC-dropout passes, run as one
    batch of M·B sentences (the embedding layer, before any dropout, computed once); same seed
    → same masks."""
    B = batch["words"].shape[0]
    with torch.random.fork_rng(devices=_rng_devices(batch["words"].device)):
        torch.manual_seed(seed)
        pred = model.predict(batch, mc=True, passes=passes, max_rows=max_rows)  # row m·B + b
    return Prediction(pred.tags.view(passes, B, -1), pred.logp.view(passes, B))


@torch.no_grad()
def mc_predict_loop(model, batch: dict, passes: int, seed: int) -> Prediction:
    """The per-pass Python loop that :func:`mc_predict` replaces (same output shapes)."""
    with torch.random.fork_rng(devices=_rng_devices(batch["words"].device)):
        torch.manual_seed(seed)
        preds = [model.predict(batch, mc=True) for _ in range(passes)]
    return Prediction(torch.stack([p.tags for p in preds]), torch.stack([p.logp for p in preds]))


@torch.no_grad()
def score_pool(model, items: Sequence[dict], strategy: str, *, seed: int, batch_size: int = 256,
               passes: int = 10, max_rows: int | None = None) -> np.ndarray:
    """Uncertainty scores (higher = query first) of encoded pool sentences, in batches; BALD's
    M·B rows in chunks of whole passes of at most ``max_rows`` rows (None: one batch; on a CPU
    chunks of about 512 rows stay in cache and run faster)."""
    if strategy == "random":
        return np.random.default_rng(seed).random(len(items))
    dev = next(model.parameters()).device
    order = np.argsort([len(it["words"]) for it in items], kind="stable")  # little padding
    out = []
    for k, s in enumerate(range(0, len(items), batch_size)):
        chunk = [items[i] for i in order[s:s + batch_size]]
        batch = {n: v.to(dev) for n, v in collate(chunk).items()}
        if strategy == "bald":
            out.append(bald_scores(mc_predict(model, batch, passes, seed + k, max_rows).tags)
                       .cpu())
            continue
        logp = model.predict(batch).logp.double()
        out.append((lc_scores(logp) if strategy == "lc"
                    else mnlp_scores(logp, batch["mask"].sum(1))).cpu())
    scores = np.empty(len(items))
    scores[order] = torch.cat(out).numpy().astype(float)
    return scores


def select(scores: np.ndarray, lengths: np.ndarray, budget: int, rng: np.random.Generator
           ) -> np.ndarray:
    """Indices taken in decreasing score (seeded random tie order) while the summed lengths stay
    ≤ ``budget`` (at least one sentence; a sentence that does not fit is skipped)."""
    order = rng.permutation(len(scores))
    order = order[np.argsort(-scores[order], kind="stable")]
    taken, words = [], 0
    for i in order:
        if words + lengths[i] <= budget or not taken:
            taken.append(int(i))
            words += int(lengths[i])
        if words >= budget:
            break
    return np.array(taken, dtype=int)
