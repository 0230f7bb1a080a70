"""Domain adaptation for neural machine translation (Chu & Wang, "A Survey of Domain Adaptation
for Neural Machine Translation", COLING 2018).

Modules: :mod:`~.corpus` (named corpora, dedup, length filter, leak-free splits; the file
readers live in :mod:`theorylab.empirical.data.bitext`), :mod:`~.subwords` (one SentencePiece
vocabulary for both languages), :mod:`~.model` (transformer encoder–decoder, greedy and batched
beam search, ensembling, checkpoint averaging), :mod:`~.metrics` (sacrebleu BLEU/chrF and the
paired bootstrap), :mod:`~.selection` (Moore–Lewis data selection), :mod:`~.study` (the methods
side by side on the engine).
"""
