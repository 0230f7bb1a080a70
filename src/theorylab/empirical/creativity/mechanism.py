r"""The homogenization mechanism with real language models trained here: "participants" write
ideas by sampling from word-level :class:`~theorylab.empirical.lm.TinyLM` models.

Text: the Debian ``fortunes-min`` collection (fortunes, literature, riddles; about 800 quotes),
split into ``n_participants + 1`` disjoint slices of whole quotes. In the **own sources**
condition participant :math:`i` samples from a model trained on slice :math:`i`; in the
**shared model** condition every participant samples from one model trained on the extra slice
(same architecture, data size and training). An idea for prompt :math:`k` is the prompt word
followed by ``idea_len`` sampled words. The ideas of both conditions are embedded by one
embedder and scored by :mod:`~theorylab.empirical.creativity.metrics`; the measured effect is the
mean over participants of group-level dissimilarity (shared − own).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from theorylab.empirical.lm import TinyLM, sample
from theorylab.errors import DataFormatError

__all__ = ["FORTUNE_FILES", "load_quotes", "Vocab", "windows", "lm_loss", "sample_ideas"]

FORTUNE_DIR = Path("/usr/share/games/fortunes")
FORTUNE_FILES = ("fortunes", "literature", "riddles")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,;:!?]")


def load_quotes(folder: Path = FORTUNE_DIR, names=FORTUNE_FILES) -> list[list[str]]:
    """The quotes of the fortune files as word lists (lower case, punctuation as tokens,
    attribution lines "-- Author" dropped); a missing file is a one-line error naming the
    Debian package."""
    quotes = []
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            raise DataFormatError("no such file; install the Debian package fortunes-min "
                                  "(apt-get install fortunes-min)", path)
        for entry in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            body = " ".join(ln for ln in entry.splitlines() if not ln.strip().startswith("--"))
            words = _WORD.findall(body.lower())
            if len(words) >= 4:
                quotes.append(words)
    return quotes


class Vocab:
    """Word ↔ id over a corpus; id 0 is the quote boundary."""

    def __init__(self, quotes: list[list[str]]):
        counts = Counter(w for q in quotes for w in q)
        self.words = ["<s>", *sorted(counts)]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def stream(self, quotes: list[list[str]]) -> torch.Tensor:
        """The quotes as one id stream, each preceded by the boundary id 0."""
        return torch.tensor([i for q in quotes for i in (0, *(self.index[w] for w in q))])

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids if int(i) != 0)


def windows(stream: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    """Overlapping windows of ``length`` tokens (rows) from ``stream``."""
    starts = range(0, max(len(stream) - length, 0) + 1, stride)
    return torch.stack([stream[s:s + length] for s in starts])


def lm_loss(model: TinyLM, batch: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a batch of windows."""
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def sample_ideas(model: TinyLM, vocab: Vocab, prompt: str, n: int, length: int,
                 generator: torch.Generator, temperature: float = 1.0) -> list[str]:
    """``n`` ideas: the prompt word (after a boundary) and ``length`` sampled words."""
    prefix = torch.tensor([[0, vocab.index[prompt]]] * n)
    with torch.no_grad():
        out = sample(model, prefix, length, generator, temperature)
    return [vocab.decode(row) for row in out[:, 1:].numpy()]


def slices(n_quotes: int, n_slices: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A random partition of the quote indices into ``n_slices`` equal parts."""
    perm = rng.permutation(n_quotes)
    size = n_quotes // n_slices
    return [np.sort(perm[i * size:(i + 1) * size]) for i in range(n_slices)]
