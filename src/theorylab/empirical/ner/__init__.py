"""Deep active learning for NER (Shen, Yun, Lipton, Kronrod & Anandkumar, ICLR 2018).

Modules: :mod:`~.crf` (linear-chain CRF: forward algorithm, Viterbi, brute-force twins),
:mod:`~.encode` (vocabularies, tensors, batching), :mod:`~.model` (CNN-CNN-LSTM and BiLSTM-CRF
taggers), :mod:`~.metrics` (seqeval entity F1), :mod:`~.acquisition` (random, LC, MNLP, BALD),
:mod:`~.study` (the active-learning study on the engine). The file readers live in
:mod:`theorylab.empirical.data.conll`.
"""
