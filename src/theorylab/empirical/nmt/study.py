r"""Domain adaptation for NMT (Chu & Wang, COLING 2018): the survey's methods side by side.

For each domain pair ``"OOD>ID"`` (:mod:`~.corpus`) the corpora are deduplicated and
length-filtered, and each is split once (seeded by ``seed`` and the pair, the same for every
method and training seed, so that all systems are compared on the same sentences) into test,
dev and train parts; the in-domain corpus also gives ``n_mono`` sentences whose *target side*
only is used (in-domain monolingual text for back-translation). One SentencePiece vocabulary is
trained on the out-of-domain training pairs (:mod:`~.subwords`) and kept fixed.

Units ``{"pair", "method", "seed"}``; the methods (:data:`METHODS`):

* ``ood``: trained on the out-of-domain data only — the *base* model (an artifact, also the
  starting point of the continued-training methods);
* ``id``: in-domain data only, from scratch; ``concat``: both corpora concatenated, from scratch;
* ``ft`` (fine-tuning): the base model trained further on the in-domain data;
* ``mixed`` (mixed fine-tuning, Chu et al. 2017): the base model trained further on the
  in-domain data, oversampled ``oversample`` times, mixed with as many out-of-domain pairs;
* ``tags`` (multi-domain training with a domain tag, Kobus et al.): from scratch on both
  corpora, each source prefixed by its domain's tag token, the in-domain data oversampled;
* ``bt`` (back-translation, Sennrich et al.): a reverse (target→source) model trained on the
  out-of-domain data translates the in-domain monolingual target text; the base model is then
  trained further on the in-domain pairs plus these synthetic pairs;
* ``ml`` / ``random``: ``n_select`` out-of-domain pairs chosen by Moore–Lewis cross-entropy
  difference (:mod:`~.selection`, language models on the source side) or at random; the base
  model is trained further on them (the same number of epochs);
* ``ensemble``: the base and the fine-tuned model decoding together (no training).

Every training run is the shared loop (:func:`theorylab.empirical.train.train`): AdamW,
batches of similar length with at most ``max_tokens`` padded tokens (``ft_max_tokens`` for the
continued-training methods and ``id``: more, smaller steps on the small in-domain data), label
smoothing. Training from scratch runs ``base_epochs`` epochs; ``mixed``, ``ml`` and ``random``
run ``ft_epochs``; ``ft``, ``bt`` and ``id``, whose data are the in-domain pairs alone, run
``ft_epochs × oversample``, so that fine-tuning sees every in-domain pair as often as mixed
fine-tuning does. The dev loss
(in-domain dev set; out-of-domain for ``ood``) measured after every epoch and the best epoch's
weights kept. The base model is also averaged over its last ``avg_last`` epoch-end snapshots
(checkpoint averaging), kept if that lowers its dev loss. Every trained model is an artifact
(``stage "model"``). Each unit decodes both test sets with beam search and returns ``score``
records (pair, method, seed, domain, BLEU and chrF from sacrebleu, with signatures) and ``hyp``
records (one per test sentence: hypothesis and reference) from which the claims run the paired
bootstrap, and one ``train`` record (epochs, seconds, tokens/s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from theorylab.constraints import POSITIVE, SEED, Choice, Device, Int, Real, Str, Tuple
from theorylab.errors import ConfigError
from theorylab.seeding import rng_for, torch_seed
from theorylab.study import Study, memory_context, records
from theorylab.threads import single_thread

if TYPE_CHECKING:
    import pandas as pd

    from theorylab.artifacts import UnitContext

__all__ = ["NmtAdaptStudy", "METHODS", "score_records", "hyp_records", "train_records"]

METHODS = ("ood", "id", "concat", "ft", "mixed", "tags", "bt", "ml", "random", "ensemble")
#: methods that continue training the base model
_FROM_BASE = ("ft", "mixed", "bt", "ml", "random")
_TAG_OOD, _TAG_ID = "<2ood>", "<2id>"


@dataclass(frozen=True)
class NmtAdaptStudy(Study):
    """The survey's methods on real English→Spanish bitext (defaults: the book's CPU run, about
    two CPU-hours: 8,000 out-of-domain and at most 1,000 in-domain training pairs of verses or
    strings of at most 20 words, a width-128 model, two seeds; a GPU or more hours take the
    sizes up through the fields)."""

    name: ClassVar[str] = "nmt-adapt"
    # 2: fine-tuning and back-translation run ft_epochs x oversample epochs (as many passes over
    #    the in-domain pairs as mixed fine-tuning); continued training in batches of ft_max_tokens
    version: ClassVar[int] = 2

    pairs: tuple[str, ...] = ("bible>django", "ot>nt")
    methods: tuple[str, ...] = METHODS
    n_seeds: int = 2
    max_words: int = 20            # per side, after whitespace normalisation
    max_ratio: float = 2.5         # word-count ratio between the sides
    n_test: int = 200              # per domain
    n_dev: int = 100               # per domain
    n_mono: int = 150              # in-domain sentences used as target-side monolingual text
    max_ood_train: int = 8_000
    max_id_train: int = 1_000      # in-domain training pairs (the scarce resource)
    vocab: int = 4000
    d_model: int = 128
    heads: int = 4
    layers: int = 2                # encoder and decoder layers each
    ff: int = 256
    dropout: float = 0.1
    smoothing: float = 0.1
    lr: float = 2e-3
    max_tokens: int = 3000         # batch budget (padded tokens) of training from scratch
    ft_max_tokens: int = 1000      # ... and of continued training (more steps on small data)
    base_epochs: int = 10
    ft_epochs: int = 6
    avg_last: int = 3
    oversample: int = 4
    n_select: int = 2000
    beam: int = 4
    alpha: float = 0.6
    device: str = "auto"
    seed: int = 0

    constraints: ClassVar = {
        "pairs": Tuple(Str(), max_len=8),
        "methods": Tuple(Choice(METHODS), max_len=len(METHODS)),
        "n_seeds": Int(1, 50),
        "max_words": Int(1, 200),
        "max_ratio": Real(1, 100),
        "n_test": Int(10, 100_000),
        "n_dev": Int(1, 100_000),
        "n_mono": Int(0, 1_000_000),
        "max_ood_train": Int(10, 10_000_000),
        "max_id_train": Int(10, 10_000_000),
        "vocab": Int(300, 64_000),         # byte fallback alone takes 256 ids
        "d_model": Int(8, 2048),
        "heads": Int(1, 64),
        "layers": Int(1, 24),
        "ff": Int(8, 16_384),
        "dropout": Real(0, 1, hi_open=True),
        "smoothing": Real(0, 1, hi_open=True),
        "lr": POSITIVE,
        "max_tokens": Int(64, 1_000_000),  # one batch is held in memory
        "ft_max_tokens": Int(64, 1_000_000),
        "base_epochs": Int(1, 1000),
        "ft_epochs": Int(1, 1000),
        "avg_last": Int(1, 100),
        "oversample": Int(1, 1000),
        "n_select": Int(1, 10_000_000),
        "beam": Int(1, 64),
        "alpha": Real(0, 10),
        "device": Device(),
        "seed": SEED,
    }

    def check(self) -> None:
        from theorylab.empirical.nmt.corpus import is_builtin, load_corpus, parse_pair
        if self.d_model % self.heads:
            raise ConfigError(f"'d_model' of NmtAdaptStudy must be a multiple of 'heads'. Got "
                              f"{self.d_model} and {self.heads}.")
        if "ensemble" in self.methods and not {"ood", "ft"} <= set(self.methods):
            raise ConfigError("'methods' of NmtAdaptStudy: 'ensemble' needs 'ood' and 'ft'.")
        if "bt" in self.methods and self.n_mono == 0:
            raise ConfigError("'methods' of NmtAdaptStudy: 'bt' needs in-domain monolingual "
                              "text ('n_mono' >= 1). Got n_mono 0.")
        for p in self.pairs:
            for spec in parse_pair(p):
                if not is_builtin(spec):
                    load_corpus(spec)  # a user's file is read now: a bad one fails before any unit

    def quick(self) -> NmtAdaptStudy:
        """CI form: the strong shift only (Bible → Django UI strings), verses of at most 14
        words (3,872 Bible training pairs), a width-64 model, 6 epochs (fine-tuning 12), 500
        selected pairs, two seeds; the methods the claims compare, the same criteria. The
        earlier quick forms' verdicts are recorded in
        :data:`theorylab.papers.nmt.EARLIER_QUICK`."""
        return self.replace(pairs=("bible>django",),
                            methods=("ood", "ft", "mixed", "ml", "random", "ensemble"),
                            n_seeds=2, max_words=14, n_test=150, n_dev=60, n_mono=0,
                            max_ood_train=4000, vocab=800, d_model=64, ff=128, base_epochs=6,
                            ft_epochs=6, oversample=2, n_select=500, max_tokens=2500,
                            ft_max_tokens=500)

    def units(self) -> list[dict]:
        return [{"pair": p, "method": m, "seed": s} for p in self.pairs for m in self.methods
                for s in range(self.n_seeds)]

    # ------------------------------------------------------------------------------- data
    def _data(self, ctx, pair: str) -> dict:
        return ctx.artifact("data", {"pair": pair}, lambda: self._build_data(pair),
                            depends_on=_DATA_FIELDS)

    def _build_data(self, pair: str) -> dict:
        from theorylab.empirical.nmt.corpus import (
            dedup,
            length_filter,
            load_corpus,
            parse_pair,
            split,
        )
        ood_spec, id_spec = parse_pair(pair)
        out = {}
        for dom, spec in (("ood", ood_spec), ("id", id_spec)):
            pairs = length_filter(dedup(load_corpus(spec)), self.max_words, self.max_ratio)
            sizes = {"test": self.n_test, "dev": self.n_dev}
            if dom == "id" and self.n_mono:
                sizes["mono"] = self.n_mono
            cap = self.max_ood_train if dom == "ood" else self.max_id_train
            parts = split(pairs, sizes, rng_for(self.seed, "split", pair, dom), max_rest=cap)
            for name, ps in parts.items():
                out[f"{dom}_{name}_src"] = [p.src for p in ps]
                out[f"{dom}_{name}_tgt"] = [p.tgt for p in ps]
        return out

    def _subwords(self, ctx, pair: str, d: dict):
        from theorylab.empirical.nmt.subwords import Subwords, train_subwords
        raw = ctx.artifact("subwords", {"pair": pair},
                           lambda: train_subwords(d["ood_train_src"] + d["ood_train_tgt"],
                                                  self.vocab),
                           depends_on=_SUBWORD_FIELDS)
        return Subwords(raw)

    # --------------------------------------------------------------------------- training
    def _new_model(self, sw, seed: int, key: str):
        from theorylab.empirical.nmt.model import Seq2Seq
        torch.manual_seed(torch_seed(self.seed, "init", key, seed))
        return Seq2Seq(len(sw), self.d_model, self.heads, self.layers, self.layers, self.ff,
                       self.dropout)

    def _encode(self, sw, src, tgt, tag: str | None = None, reverse: bool = False):
        s, t = sw.encode(src), sw.encode(tgt)
        if reverse:
            s, t = t, s
        if tag is not None:
            s = [[sw.tag_id(tag), *x] for x in s]
        return s, t

    def _train(self, model, sw, data: tuple[list, list], dev: tuple[list, list], epochs: int,
               key: tuple, avg: int = 1, max_tokens: int | None = None) -> tuple[dict, dict]:
        from theorylab.empirical.nmt.model import (
            Snapshots,
            average_states,
            dev_loss,
            loss_fn,
            make_batch,
            token_batches,
        )
        from theorylab.empirical.train import TrainConfig, pick_device, train
        rng = rng_for(self.seed, "batches", *key)
        src, tgt = data
        lens = [max(len(a), len(b)) + 1 for a, b in zip(src, tgt, strict=True)]
        batches = [make_batch([src[i] for i in b], [tgt[i] for i in b])
                   for b in token_batches(lens, max_tokens or self.max_tokens, rng)]
        dlens = [max(len(a), len(b)) + 1 for a, b in zip(*dev, strict=True)]
        dev_b = [make_batch([dev[0][i] for i in b], [dev[1][i] for i in b])
                 for b in token_batches(dlens, 4 * self.max_tokens, rng)]
        snaps = Snapshots(every=len(batches), keep=avg)
        cfg = TrainConfig(epochs=epochs, lr=self.lr, batch_size=1, device=self.device,
                          val_mode="min", seed=torch_seed(self.seed, "train", *key))
        res = train(model, loss_fn(self.smoothing), batches, cfg,
                    val_fn=lambda m: dev_loss(m, dev_b), collate=lambda one: one[0],
                    after_step=snaps if avg > 1 else None)
        info = {"epochs_run": len(res.train_loss), "best_epoch": res.best_epoch,
                "dev_loss": float(res.best_val), "train_seconds": res.seconds,
                "tokens_per_s": sum(int((b[2] != 0).sum()) for b in batches)
                * len(res.train_loss) / max(res.seconds, 1e-9),
                "n_pairs": len(src), "device": res.device, "averaged": False}
        if avg > 1 and len(snaps.states) == avg:
            best = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(average_states(list(snaps.states)))
            model.to(pick_device(self.device))
            avg_loss = dev_loss(model, dev_b)
            info["dev_loss_averaged"] = avg_loss
            if avg_loss <= info["dev_loss"]:
                info["averaged"], info["dev_loss"] = True, avg_loss
            else:
                model.load_state_dict(best)
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return state, info

    def _model(self, ctx, pair: str, method: str, seed: int, d: dict, sw) -> dict:
        return ctx.artifact("model", {"pair": pair, "method": method, "seed": seed},
                            lambda: self._build_model(ctx, pair, method, seed, d, sw),
                            depends_on=_MODEL_FIELDS)

    def _build_model(self, ctx, pair: str, method: str, seed: int, d: dict, sw) -> dict:
        key = (pair, method, seed)
        tags = method == "tags"
        ood = self._encode(sw, d["ood_train_src"], d["ood_train_tgt"],
                           _TAG_OOD if tags else None)
        idd = self._encode(sw, d["id_train_src"], d["id_train_tgt"], _TAG_ID if tags else None)
        dev_id = self._encode(sw, d["id_dev_src"], d["id_dev_tgt"], _TAG_ID if tags else None)
        dev_ood = self._encode(sw, d["ood_dev_src"], d["ood_dev_tgt"])
        rng = rng_for(self.seed, "data", *key)
        model = self._new_model(sw, seed, method if method not in _FROM_BASE else "ood")
        epochs, avg = self.ft_epochs, 1
        extra: dict = {}
        if method in _FROM_BASE:
            model.load_state_dict(self._model(ctx, pair, "ood", seed, d, sw)["state"])
        if method == "ood":
            train, dev, epochs, avg = ood, dev_ood, self.base_epochs, self.avg_last
        elif method == "rev":
            train = self._encode(sw, d["ood_train_src"], d["ood_train_tgt"], reverse=True)
            dev = self._encode(sw, d["ood_dev_src"], d["ood_dev_tgt"], reverse=True)
            epochs = self.base_epochs
        elif method == "id":
            train, dev, epochs = idd, dev_id, self.ft_epochs * self.oversample
        elif method == "ft":
            train, dev, epochs = idd, dev_id, self.ft_epochs * self.oversample
        elif method == "concat":
            train, dev, epochs = (ood[0] + idd[0], ood[1] + idd[1]), dev_id, self.base_epochs
        elif method == "tags":
            k = self.oversample
            train = (ood[0] + idd[0] * k, ood[1] + idd[1] * k)
            dev, epochs = dev_id, self.base_epochs
        elif method == "mixed":
            k = self.oversample
            n = min(len(ood[0]), k * len(idd[0]))
            pick = rng.choice(len(ood[0]), size=n, replace=False)
            train = ([ood[0][i] for i in pick] + idd[0] * k, [ood[1][i] for i in pick]
                     + idd[1] * k)
            dev = dev_id
        elif method == "bt":
            from theorylab.empirical.nmt.model import beam_search
            rev = self._new_model(sw, seed, "rev")
            rev.load_state_dict(self._model(ctx, pair, "rev", seed, d, sw)["state"])
            mono = sw.encode(d["id_mono_tgt"])
            synth = beam_search(rev.eval(), mono, beam=self.beam, alpha=self.alpha)
            keep = [i for i, s in enumerate(synth) if s]
            train = (idd[0] + [synth[i] for i in keep], idd[1] + [mono[i] for i in keep])
            dev, epochs = dev_id, self.ft_epochs * self.oversample
            extra["n_synthetic"] = len(keep)
        elif method in ("ml", "random"):
            from theorylab.empirical.nmt.selection import moore_lewis_scores, select_lowest
            n = min(self.n_select, len(ood[0]))
            if method == "ml":
                scores = moore_lewis_scores(ood[0], idd[0], len(sw), rng)
                pick = select_lowest(scores, n)
            else:
                pick = np.sort(rng.choice(len(ood[0]), size=n, replace=False))
            train = ([ood[0][i] for i in pick], [ood[1][i] for i in pick])
            dev = dev_id
            extra["mean_src_tokens"] = float(np.mean([len(ood[0][i]) for i in pick]))
        else:
            raise ConfigError(f"no model is trained for method {method!r}.")
        state, info = self._train(model, sw, train, dev, epochs, key, avg,
                                  self.ft_max_tokens if method in (*_FROM_BASE, "id") else None)
        return {"state": state, "info": {**info, **extra}}

    # ------------------------------------------------------------------------------- units
    def run_unit(self, unit: dict, ctx: UnitContext | None = None) -> list[dict]:
        with single_thread():  # tiny matrices: torch's thread pool only adds waiting
            return self._run_unit(unit, ctx)

    def _run_unit(self, unit: dict, ctx: UnitContext | None) -> list[dict]:
        from theorylab.empirical.nmt.metrics import score
        from theorylab.empirical.nmt.model import translate
        from theorylab.empirical.train import pick_device
        ctx = memory_context(self, ctx)
        pair, method, seed = unit["pair"], unit["method"], int(unit["seed"])
        d = self._data(ctx, pair)
        sw = self._subwords(ctx, pair, d)
        dev = pick_device(self.device)
        names = ["ood", "ft"] if method == "ensemble" else [method]
        models, info = [], {}
        for name in names:
            art = self._model(ctx, pair, name, seed, d, sw)
            m = self._new_model(sw, seed, name)
            m.load_state_dict(art["state"])
            models.append(m.to(dev).eval())
            info = art["info"] if method != "ensemble" else {}
        base = {"pair": pair, "method": method, "seed": seed}
        out = [{"record": "train", **base, **info}] if info else []
        for dom in ("id", "ood"):
            src, ref = d[f"{dom}_test_src"], d[f"{dom}_test_tgt"]
            tag = (_TAG_ID if dom == "id" else _TAG_OOD) if method == "tags" else None
            t0 = time.perf_counter()
            hyp = translate(models, sw, src, beam=self.beam, alpha=self.alpha, tag=tag)
            secs = time.perf_counter() - t0
            bleu, bsig = score(hyp, ref, "bleu")
            chrf, csig = score(hyp, ref, "chrf")
            out.append({"record": "score", **base, "domain": dom, "bleu": bleu, "chrf": chrf,
                        "n": len(ref), "decode_seconds": secs, "bleu_signature": bsig,
                        "chrf_signature": csig})
            out += [{"record": "hyp", **base, "domain": dom, "i": i, "hyp": h, "ref": r}
                    for i, (h, r) in enumerate(zip(hyp, ref, strict=True))]
        return out


_DATA_FIELDS = ("max_words", "max_ratio", "n_test", "n_dev", "n_mono", "max_ood_train",
                "max_id_train", "seed")
_SUBWORD_FIELDS = (*_DATA_FIELDS, "vocab")
#: a model depends on everything but the methods, seeds and decoding settings
_MODEL_FIELDS = (*_SUBWORD_FIELDS, "d_model", "heads", "layers", "ff", "dropout", "smoothing",
                 "lr", "max_tokens", "ft_max_tokens", "base_epochs", "ft_epochs", "avg_last",
                 "oversample", "n_select", "device")


# ------------------------------------------------------------------------------- long tables
def score_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, method, seed, domain): BLEU, chrF, their signatures."""
    return records(table, "score").astype({"seed": int, "bleu": float, "chrf": float})


def hyp_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (pair, method, seed, domain, test sentence i): hypothesis and reference."""
    return records(table, "hyp").astype({"seed": int, "i": int})


def train_records(table: pd.DataFrame) -> pd.DataFrame:
    """One row per trained (pair, method, seed): epochs, dev loss, seconds, tokens/s."""
    return records(table, "train")
