"""Entity-level scores from seqeval (strict mode: an entity counts only with the exact span and
type under the declared scheme). No hand-written F1."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from theorylab.empirical.ner.encode import Vocab, collate

__all__ = ["SEQEVAL_SCHEMES", "entity_f1", "per_type", "predict_tags", "evaluate"]


def _scheme(name: str):
    from seqeval import scheme
    return {"iob1": scheme.IOB1, "iob2": scheme.IOB2, "iobes": scheme.IOBES}[name]


SEQEVAL_SCHEMES = ("iob1", "iob2", "iobes")


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str) -> float:
    """Micro entity F1 (seqeval, strict, ``scheme``)."""
    from seqeval.metrics import f1_score
    return float(f1_score([list(g) for g in gold], [list(p) for p in pred], mode="strict",
                          scheme=_scheme(scheme), zero_division=0))


def per_type(gold, pred, scheme: str) -> dict[str, dict[str, float]]:
    """Per entity type: precision, recall, f1, support (seqeval's classification report)."""
    from seqeval.metrics import classification_report
    rep = classification_report([list(g) for g in gold], [list(p) for p in pred], mode="strict",
                                scheme=_scheme(scheme), output_dict=True, zero_division=0)
    return {k: {m: float(v[m]) for m in ("precision", "recall", "f1-score", "support")}
            for k, v in rep.items() if " avg" not in k}


@torch.no_grad()
def predict_tags(model, items: Sequence[dict], vocab: Vocab, batch_size: int = 256
                 ) -> list[list[str]]:
    """The model's tag strings for encoded sentences (scored in batches)."""
    dev = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda i: len(items[i]["words"]))  # little padding
    out: list = [None] * len(items)
    for s in range(0, len(items), batch_size):
        chunk = order[s:s + batch_size]
        batch = {k: v.to(dev) for k, v in collate([items[i] for i in chunk]).items()}
        tags = model.predict(batch).tags.cpu()
        for b, i in enumerate(chunk):
            out[i] = [vocab.tags[t] for t in tags[b, :len(items[i]["words"])].tolist()]
    return out


def evaluate(model, items: Sequence[dict], vocab: Vocab) -> float:
    """Entity F1 of the model on encoded sentences (gold from their tag ids)."""
    gold = [[vocab.tags[i] for i in it["tags"].tolist()] for it in items]
    return entity_f1(gold, predict_tags(model, items, vocab), vocab.scheme)
