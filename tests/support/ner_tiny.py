"""A tiny NER corpus and tagger for the tests (shared by the NER test modules)."""

import torch

from theorylab.empirical.data.conll import Sentence, from_spans
from theorylab.empirical.ner.encode import build_vocab, encode_sentences
from theorylab.empirical.ner.model import build_tagger

WORDS = ["Ann", "met", "Bob", "in", "Paris", "and", "Rome", "today", "with", "Acme", "Corp"]


def tiny_corpus(n: int = 24, seed: int = 0) -> list[Sentence]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        T = int(torch.randint(2, 9, (1,), generator=g))
        toks = [WORDS[int(i)] for i in torch.randint(0, len(WORDS), (T,), generator=g)]
        spans, k = [], 0
        while k < T:
            if toks[k][0].isupper():
                j = k + 1 + int(k + 1 < T and toks[k + 1][0].isupper())
                spans.append(("PER" if toks[k] in ("Ann", "Bob") else "LOC", k, j))
                k = j
            else:
                k += 1
        out.append(Sentence(tuple(toks), tuple(from_spans(spans, T, "iob2"))))
    return out


SIZES = {"cnn": dict(word_dim=8, char_dim=4, char_filters=6, char_width=3, word_filters=10,
                     decoder_dim=12, tag_dim=4, dropout=0.5, word_dropout=0.25),
         "bilstm_crf": dict(word_dim=8, char_dim=4, char_filters=6, char_width=3, hidden=8,
                            dropout=0.5, word_dropout=0.25)}


def tiny_setup(arch: str = "cnn", seed: int = 0):
    sents = tiny_corpus()
    vocab = build_vocab(sents, sents, "iobes", "iob2")
    items = encode_sentences(sents, vocab, "iob2")
    model = build_tagger(arch, len(vocab.words), len(vocab.chars), len(vocab.tags), seed,
                         **SIZES[arch])
    return sents, vocab, items, model
