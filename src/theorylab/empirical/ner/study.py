r"""Active learning for NER (Shen et al., ICLR 2018) as a staged study.

The corpus (default: the shipped Japanese IOB2 corpus; or a user's file, ``data=PATH`` with
``format`` one of :data:`~theorylab.empirical.data.conll.FORMATS`) is split in file order into
a pool (the first sentences), a dev set and a test set (the last ``test_fraction``; the corpus
package holds out its last 10 %, here 20 % so that one test F1 has a standard error near 0.03). Tags are trained and scored in ``scheme`` (IOBES, as the paper).

Units:

* ``{"arch": a, "seed": s}``, s < ``full_seeds``: a tagger (``cnn`` = CNN-CNN-LSTM,
  ``bilstm_crf``) trained on the whole pool: one ``full`` record (test and dev entity F1,
  training sentences/s) and one ``per_type`` record per entity type;
* ``{"strategy": q, "seed": s}``: an active-learning run. Round 0 labels random sentences up to
  ``init_words`` words and trains (one artifact shared by every strategy of seed s) the CNN-CNN-LSTM from
  the seed's initial weights; each later round scores the unlabelled pool with the previous
  round's model, labels the top sentences up to ``round_words`` words, and trains again —
  from the previous weights (``retrain="incremental"``, the paper's choice) or from the initial
  weights (``"scratch"``). Every round's model is an artifact (``stage "round"``, keyed by
  strategy, seed and round; its config scope leaves out the fields that only add units), and
  the unit returns one ``curve`` record per round: words labelled, their share of the pool's
  words, test and dev F1. Every strategy runs seeds 0 .. ``n_seeds`` − 1; the
  ``extra_strategies`` also run the ``extra_seeds`` seeds after those.

Training is the shared loop (:func:`theorylab.empirical.train.train`), maximising dev F1
(seqeval, strict, ``scheme``): every epoch runs, dev F1 is measured ``dev_evals`` times per
training run (every ⌈epochs / dev_evals⌉-th epoch and the last) and the best of those weights
are kept (no early stop: on little data dev F1 sits at 0 for the first epochs, and a patience
rule stopped a full-data CNN-CNN-LSTM there in the first quick run). Batches hold sentences of
similar length (:func:`~theorylab.empirical.ner.encode.length_batches`, formed once per training
run from a seeded shuffle, visited in a new random order every epoch): random batches were 55 %
padding. Study version 4 brought both (version 3 measured dev F1 after every epoch, 120 times in
a quick round 0, and used random batches); together they halved the CPU time of a quick
active-learning unit (21.5 to 12.1 CPU-seconds for MNLP, seed 0). AdamW's learning rate is 3e-3: at 1e-2
(study version 2) the full-data CNN-CNN-LSTM stayed on the all-``O`` plateau (train loss flat
at the tag-frequency entropy, dev F1 0 in every epoch) for some seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import torch

from theorylab.constraints import POSITIVE, SEED, Choice, Device, Int, Real, Str, Tuple
from theorylab.empirical.data.conll import FORMATS, load_hironsan, read_file, to_spans
from theorylab.empirical.ner.acquisition import STRATEGIES, score_pool, select
from theorylab.empirical.ner.encode import build_vocab, collate, encode_sentences, length_batches
from theorylab.empirical.ner.metrics import entity_f1, per_type, predict_tags
from theorylab.empirical.ner.model import ARCHS, build_tagger
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, seed_for, torch_seed
from theorylab.study import Study, memory_context, records

if TYPE_CHECKING:
    from theorylab.artifacts import UnitContext

__all__ = ["NerActiveStudy", "curve_records", "full_records", "per_type_records", "ROUND_FIELDS"]

ARCH_NAMES = tuple(ARCHS)


@dataclass(frozen=True)
class NerActiveStudy(Study):
    """Learning curves of each acquisition strategy and full-data baselines (defaults: the full
    CPU run of the book chapter on the shipped corpus)."""

    name: ClassVar[str] = "ner-al"
    # 2: no early stop; test split 20 %. 3: lr 3e-3; quick: 120 steps/round, 20 epochs.
    # 4: length-sorted batches, dev F1 dev_evals times per training run, init_steps, full_seeds
    version: ClassVar[int] = 4

    data: str = "hironsan"           # "hironsan" (shipped) or a path to a token-per-line file
    format: str = "iob2"             # the file's format (FORMATS); ignored for "hironsan"
    dev_fraction: float = 0.1
    test_fraction: float = 0.2       # ~100 test sentences: one F1 evaluation's s.e. ~ 0.03
    scheme: str = "iobes"            # tags the models are trained on (the paper: IOBES)
    strategies: tuple[str, ...] = STRATEGIES
    archs: tuple[str, ...] = ARCH_NAMES   # full-data baselines
    retrain: str = "incremental"     # "incremental" (continue from the last round) | "scratch"
    n_seeds: int = 5                 # active-learning runs per strategy
    extra_seeds: int = 0             # further seeds n_seeds, n_seeds + 1, ... run for ...
    extra_strategies: tuple[str, ...] = ("random", "mnlp")  # ... these strategies only
    full_seeds: int = 5              # full-data runs per tagger
    init_words: int = 250            # labelled words before round 1 (the paper: 1 % of the data)
    round_words: int = 500           # words labelled per round
    n_rounds: int = 12
    init_steps: int = 200            # optimiser steps of round 0 (from the initial weights)
    round_steps: int = 200           # optimiser steps per later round (epochs = steps / batches, capped)
    epochs_round: int = 50           # cap on a round's epochs (best dev epoch kept, no early stop)
    epochs_full: int = 30
    dev_evals: int = 10              # dev F1 evaluations per training run (evenly spaced, last included)
    lr: float = 3e-3                 # AdamW; at 1e-2 the CNN-CNN-LSTM can stall at all-O
    batch_size: int = 16
    word_dim: int = 50
    char_dim: int = 25
    char_filters: int = 50
    char_width: int = 5              # the paper's width
    word_filters: int = 200          # the paper: 800 (CoNLL); 200 suits 12k words
    decoder_dim: int = 100
    tag_dim: int = 25
    lstm_hidden: int = 100           # BiLSTM-CRF, per direction
    dropout: float = 0.5             # the paper's
    word_dropout: float = 0.5        # the paper's
    mc_passes: int = 20              # BALD (the paper: 100)
    score_batch: int = 256
    device: str = "auto"
    seed: int = 0

    constraints: ClassVar = {
        "data": Str(),
        "format": Choice(FORMATS),
        "dev_fraction": Real(0, 0.5, lo_open=True),
        "test_fraction": Real(0, 0.5, lo_open=True),
        "scheme": Choice(("iob2", "iobes")),
        "strategies": Tuple(Choice(STRATEGIES), max_len=len(STRATEGIES)),
        "archs": Tuple(Choice(ARCH_NAMES), min_len=0, max_len=len(ARCH_NAMES)),
        "retrain": Choice(("incremental", "scratch")),
        "n_seeds": Int(1, 100),
        "extra_seeds": Int(0, 100),
        "extra_strategies": Tuple(Choice(STRATEGIES), min_len=0, max_len=len(STRATEGIES)),
        "full_seeds": Int(1, 100),
        "init_words": Int(1, 10**7),
        "round_words": Int(1, 10**7),
        "n_rounds": Int(0, 200),             # each round's model is an artifact on disk
        "init_steps": Int(1, 10**6),
        "round_steps": Int(1, 10**6),
        "epochs_round": Int(1, 1000),
        "epochs_full": Int(1, 1000),
        "dev_evals": Int(1, 1000),
        "lr": POSITIVE,
        "batch_size": Int(1, 4096),
        "word_dim": Int(1, 1024),
        "char_dim": Int(1, 1024),
        "char_filters": Int(1, 1024),
        "char_width": Int(1, 15),
        "word_filters": Int(1, 4096),
        "decoder_dim": Int(1, 4096),
        "tag_dim": Int(1, 1024),
        "lstm_hidden": Int(1, 4096),
        "dropout": Real(0, 1, hi_open=True),
        "word_dropout": Real(0, 1, hi_open=True),
        "mc_passes": Int(2, 1000),           # one batch holds mc_passes x score_batch sentences
        "score_batch": Int(1, 65536),
        "device": Device(),
        "seed": SEED,
    }

    def check(self) -> None:
        if self.dev_fraction + self.test_fraction >= 0.9:
            raise ConfigError(f"'dev_fraction' + 'test_fraction' of NerActiveStudy must be < 0.9 "
                              f"(a pool must remain). Got {self.dev_fraction + self.test_fraction}.")
        if self.data != "hironsan":
            self.corpus()  # a user's file is checked here: a bad line fails before any unit runs

    def quick(self) -> NerActiveStudy:
        """CI form: a smaller model, fewer rounds, shorter training; same corpus, strategies and
        criteria. Every strategy runs on seeds 0-4 and random and MNLP (the must-hold pair) on
        seeds 5-11 too: their AULC difference has a standard deviation near 0.04 over seeds, so
        the precision rule (half-width <= 0.03) needs about 9 seeds. Incremental rounds of 500
        words take 60 optimiser steps (round 0, from the initial weights, 120); full-data
        baselines on 3 seeds. The earlier quick forms' verdicts are recorded in
        :data:`theorylab.papers.ner.EARLIER_QUICK`."""
        return self.replace(word_dim=32, char_dim=16, char_filters=32, char_width=3,
                            word_filters=64, decoder_dim=64, tag_dim=16, lstm_hidden=48,
                            dropout=0.3, word_dropout=0.2, init_words=400, round_words=500,
                            n_rounds=6, init_steps=120, round_steps=60, epochs_round=120,
                            epochs_full=20, mc_passes=8, dev_evals=3, n_seeds=5,
                            extra_seeds=7, full_seeds=3)

    def units(self) -> list[dict]:
        extra = range(self.n_seeds, self.n_seeds + self.extra_seeds)
        return ([{"arch": a, "seed": s} for a in self.archs for s in range(self.full_seeds)]
                + [{"strategy": q, "seed": s} for q in self.strategies
                   for s in range(self.n_seeds)]
                + [{"strategy": q, "seed": s} for q in self.strategies
                   if q in self.extra_strategies for s in extra])

    # ------------------------------------------------------------------------------ data
    def corpus(self) -> tuple[list, str]:
        """(sentences, their scheme) of the configured data."""
        if self.data == "hironsan":
            return load_hironsan(), "iob2"
        if not Path(self.data).is_file():
            raise ConfigError(f"'data' of NerActiveStudy must be 'hironsan' or an existing file. "
                              f"Got {self.data!r}.")
        return read_file(self.data, self.format)

    def _prepared(self) -> dict:
        sents, src = self.corpus()
        n = len(sents)
        n_test = max(1, round(n * self.test_fraction))
        n_dev = max(1, round(n * self.dev_fraction))
        pool, dev, test = sents[:n - n_test - n_dev], sents[n - n_test - n_dev:n - n_test], \
            sents[n - n_test:]
        if len(pool) < 2:
            raise ConfigError(f"the corpus has {n} sentences: too few for a pool, a dev and a "
                              "test set.")
        vocab = build_vocab(pool, sents, self.scheme, src)
        enc = {k: encode_sentences(v, vocab, src) for k, v in
               (("pool", pool), ("dev", dev), ("test", test))}
        lengths = np.array([len(s.tokens) for s in pool])
        return {"vocab": vocab, **enc, "lengths": lengths}

    def _sizes(self, arch: str) -> dict:
        common = dict(word_dim=self.word_dim, char_dim=self.char_dim,
                      char_filters=self.char_filters, char_width=self.char_width,
                      dropout=self.dropout, word_dropout=self.word_dropout)
        if arch == "cnn":
            return {**common, "word_filters": self.word_filters, "decoder_dim": self.decoder_dim,
                    "tag_dim": self.tag_dim}
        return {**common, "hidden": self.lstm_hidden}

    def new_model(self, arch: str, d: dict, seed: int):
        v = d["vocab"]
        return build_tagger(arch, len(v.words), len(v.chars), len(v.tags),
                            torch_seed(self.seed, "init", arch, seed), **self._sizes(arch))

    # --------------------------------------------------------------------------- training
    def _train(self, model, d: dict, idx: np.ndarray, epochs: int, key: tuple):
        from theorylab.empirical.train import TrainConfig, train
        rng = rng_for(self.seed, "batches", *key)
        batches = [[d["pool"][i] for i in idx[b]]
                   for b in length_batches(d["lengths"][idx], self.batch_size, rng)]
        cfg = TrainConfig(epochs=epochs, lr=self.lr, batch_size=1, device=self.device,
                          patience=None, val_mode="max", val_every=-(-epochs // self.dev_evals),
                          seed=torch_seed(self.seed, "train", *key))
        return train(model, lambda m, b: m.loss(b), batches, cfg,
                     val_fn=lambda m: _f1(m, d["dev"], d["vocab"]),
                     collate=lambda one: collate(one[0]))  # one item = one length batch

    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> list[dict]:
        ctx = memory_context(self, ctx)
        d = self._prepared()
        if "arch" in unit:
            return self._full(unit["arch"], int(unit["seed"]), d)
        s, q = int(unit["seed"]), unit["strategy"]
        out = []
        for r in range(self.n_rounds + 1):
            rnd = self._round(ctx, d, q, s, r)
            out.append({**{k: v for k, v in rnd.items() if k not in ("state", "labelled")},
                        "record": "curve", "strategy": q, "seed": s, "round": r})
        return out

    def _full(self, arch: str, s: int, d: dict) -> list[dict]:
        model = self.new_model(arch, d, s)
        idx = np.arange(len(d["pool"]))
        res = self._train(model, d, idx, self.epochs_full, ("full", arch, s))
        gold, pred = _gold(d["test"], d["vocab"]), predict_tags(model, d["test"], d["vocab"])
        n_words = int(d["lengths"].sum())
        out = [{"record": "full", "arch": arch, "seed": s,
                "f1": entity_f1(gold, pred, self.scheme), "dev_f1": res.best_val,
                "epochs_run": len(res.train_loss), "train_seconds": res.seconds,
                "sentences_per_s": res.examples_per_second,
                "n_pool_words": n_words, "n_params": sum(p.numel() for p in model.parameters()),
                "device": res.device}]
        for t, m in per_type(gold, pred, self.scheme).items():
            out.append({"record": "per_type", "arch": arch, "seed": s, "type": t,
                        "precision": m["precision"], "recall": m["recall"],
                        "f1": m["f1-score"], "support": m["support"]})
        return out

    def _round(self, ctx, d: dict, q: str, s: int, r: int) -> dict:
        if r == 0:
            q = "init"  # round 0 (random sentences, no acquisition) is shared by the strategies
        return ctx.artifact("round", {"strategy": q, "seed": s, "round": r},
                            lambda: self._build_round(ctx, d, q, s, r), depends_on=ROUND_FIELDS)

    def _build_round(self, ctx, d: dict, q: str, s: int, r: int) -> dict:
        """Round r of strategy q, seed s: select (r > 0) with round r−1's model, then train."""
        t0 = time.perf_counter()
        lengths = d["lengths"]
        model = self.new_model("cnn", d, s)
        init_state = {k: v.clone() for k, v in model.state_dict().items()}
        if r == 0:
            order = rng_for(self.seed, "init", s).permutation(len(lengths))
            take = order[np.cumsum(lengths[order]) <= self.init_words]
            labelled = order[:max(1, len(take))]
            score_seconds = 0.0
        else:
            prev = self._round(ctx, d, q, s, r - 1)
            labelled = prev["labelled"].numpy()
            model.load_state_dict(prev["state"])
            unl = np.setdiff1d(np.arange(len(lengths)), labelled)
            if unl.size == 0:
                return {**prev, "round": r}
            from theorylab.empirical.train import pick_device
            model.to(pick_device(self.device))
            ts = time.perf_counter()
            scores = score_pool(model, [d["pool"][i] for i in unl], q,
                                seed=seed_for(self.seed, "score", q, s, r),
                                batch_size=self.score_batch, passes=self.mc_passes)
            score_seconds = time.perf_counter() - ts
            pick = select(scores, lengths[unl], self.round_words, rng_for(self.seed, "tie", q, s, r))
            labelled = np.concatenate([labelled, unl[pick]])
            if self.retrain == "scratch":
                model.load_state_dict(init_state)
        batches = -(-len(labelled) // self.batch_size)
        steps = self.init_steps if r == 0 else self.round_steps
        epochs = min(self.epochs_round, max(1, -(-steps // batches)))
        res = self._train(model, d, labelled, epochs, ("round", q, s, r))
        words = int(lengths[labelled].sum())
        return {"state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "labelled": torch.as_tensor(labelled, dtype=torch.long),
                "round": r, "words": words, "frac_words": words / float(lengths.sum()),
                "n_sentences": int(len(labelled)), "f1": _f1(model, d["test"], d["vocab"]),
                "dev_f1": float(res.best_val), "epochs_run": len(res.train_loss),
                "score_seconds": score_seconds, "seconds": time.perf_counter() - t0}


#: the fields a round's model depends on: everything except those that only add units
ROUND_FIELDS = tuple(f.name for f in fields(NerActiveStudy)
                     if f.name not in ("strategies", "archs", "n_seeds", "extra_seeds",
                                       "extra_strategies", "full_seeds", "n_rounds",
                                       "epochs_full"))


def _gold(items, vocab) -> list[list[str]]:
    return [[vocab.tags[i] for i in it["tags"].tolist()] for it in items]


def _f1(model, items, vocab) -> float:
    return entity_f1(_gold(items, vocab), predict_tags(model, items, vocab), vocab.scheme)


# ------------------------------------------------------------------------------- long tables
def curve_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (strategy, seed, round): words, frac_words, f1 (test), dev_f1, seconds."""
    return records(table, "curve").astype({"seed": int, "round": int, "frac_words": float,
                                           "f1": float})


def full_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, seed): full-data test F1, dev F1, training throughput."""
    return records(table, "full").astype({"seed": int, "f1": float})


def per_type_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (arch, seed, entity type): precision, recall, f1, support."""
    return records(table, "per_type")


def entity_types(sentences, scheme: str = "iob2") -> list[str]:
    """The entity types present in ``sentences``."""
    return sorted({t for s in sentences for t, _, _ in to_spans(s.tags, scheme)})
