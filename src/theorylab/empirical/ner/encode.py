"""Vocabularies and tensors for the taggers: word, character and tag ids, padded batches.

Id 0 is padding and id 1 the unknown word / character in every vocabulary; tags have no padding
id (padded positions are masked). Words are lower-cased (case is kept in the characters).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from theorylab.empirical.data.conll import convert

__all__ = ["PAD", "UNK", "Vocab", "build_vocab", "encode_sentences", "collate", "length_batches"]

PAD, UNK = 0, 1
MAX_CHARS = 20  # characters kept per word (the char CNN max-pools over them)


@dataclass(frozen=True)
class Vocab:
    """Word, character and tag vocabularies (lists; index = id) and the tag scheme."""

    words: tuple[str, ...]
    chars: tuple[str, ...]
    tags: tuple[str, ...]
    scheme: str = "iobes"

    def __post_init__(self):
        for name in ("words", "chars", "tags"):
            object.__setattr__(self, f"_{name}", {w: i for i, w in enumerate(getattr(self, name))})

    def word_id(self, w: str) -> int:
        return self._words.get(w.lower(), UNK)

    def char_id(self, c: str) -> int:
        return self._chars.get(c, UNK)

    def tag_id(self, t: str) -> int:
        return self._tags[t]


def build_vocab(sentences: Sequence, tag_sentences: Sequence, scheme: str, src_scheme: str,
                min_count: int = 1) -> Vocab:
    """Words seen ``min_count`` times in ``sentences`` (unlabelled text: any split may count),
    their characters, and the tags of ``tag_sentences`` written in ``scheme``."""
    wc = Counter(w.lower() for s in sentences for w in s.tokens)
    cc = Counter(c for s in sentences for w in s.tokens for c in w)
    types = sorted({t.split("-", 1)[1] for s in tag_sentences for t in s.tags if t != "O"})
    prefixes = "BIES" if scheme == "iobes" else "BI"
    tags = ("O", *(f"{p}-{t}" for t in types for p in prefixes))
    return Vocab(("<pad>", "<unk>", *sorted(w for w, n in wc.items() if n >= min_count)),
                 ("<pad>", "<unk>", *sorted(cc)), tags, scheme)


def encode_sentences(sentences: Sequence, vocab: Vocab, src_scheme: str) -> list[dict]:
    """Each sentence as {"words": (T,), "chars": (T, C), "tags": (T,)} long tensors."""
    out = []
    for s in sentences:
        tags = convert(s.tags, src_scheme, vocab.scheme)
        chars = torch.zeros(len(s.tokens), min(MAX_CHARS, max(len(w) for w in s.tokens)),
                            dtype=torch.long)
        for i, w in enumerate(s.tokens):
            ids = [vocab.char_id(c) for c in w[:MAX_CHARS]]
            chars[i, :len(ids)] = torch.tensor(ids)
        out.append({"words": torch.tensor([vocab.word_id(w) for w in s.tokens]),
                    "chars": chars, "tags": torch.tensor([vocab.tag_id(t) for t in tags])})
    return out


def collate(items: Sequence[dict]) -> dict:
    """Pad a list of encoded sentences: words/tags (B, T), chars (B, T, C), mask (B, T)."""
    B = len(items)
    T = max(int(it["words"].shape[0]) for it in items)
    C = max(int(it["chars"].shape[1]) for it in items)
    words = torch.zeros(B, T, dtype=torch.long)
    tags = torch.zeros(B, T, dtype=torch.long)
    chars = torch.zeros(B, T, C, dtype=torch.long)
    for b, it in enumerate(items):
        n, c = it["chars"].shape
        words[b, :n], tags[b, :n], chars[b, :n, :c] = it["words"], it["tags"], it["chars"]
    return {"words": words, "chars": chars, "tags": tags, "mask": words != PAD}


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator
                   ) -> list[np.ndarray]:
    """Index batches of sentences of similar length: a seeded shuffle, stably sorted by length,
    cut into runs of ``batch_size`` (the last may be shorter). Padding to the longest sentence
    of a random batch wastes about half of every layer's work on this corpus; these batches
    hold over 90 % real tokens."""
    order = rng.permutation(len(lengths))
    order = order[np.argsort(np.asarray(lengths)[order], kind="stable")]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
