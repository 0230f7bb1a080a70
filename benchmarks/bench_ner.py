"""NER speed, side by side in one run (Shen et al., ICLR 2018):

1. training throughput (sentences/s) of the CNN-CNN-LSTM vs the BiLSTM-CRF at about equal
   parameter count (the paper's reason for the CNN encoder: 11 s vs 49 s per CoNLL epoch);
2. pool scoring for BALD: M MC-dropout passes as one batch vs a Python loop over the passes
   (the target: >= 10x sentences/s).

Data: the shipped Japanese corpus (400 pool sentences). Prints a table and writes
``benchmarks/results/ner.json`` (``ner_quick.json`` with ``--quick``). ``--device cuda`` runs it
on a GPU.
"""

from __future__ import annotations

import time

import torch
from _torch_bench import (  # benchmarks/_torch_bench.py (run as scripts)
    torch_bench_args,
    write_results,
)

from theorylab.empirical.data.conll import load_hironsan
from theorylab.empirical.ner.acquisition import mc_predict, mc_predict_loop
from theorylab.empirical.ner.encode import build_vocab, collate, encode_sentences
from theorylab.empirical.ner.model import build_tagger

# sizes chosen so that both taggers have about the same parameter count (printed)
SIZES = {"cnn": dict(word_dim=50, char_dim=25, char_filters=50, char_width=5, word_filters=200,
                     decoder_dim=100, tag_dim=25),
         "bilstm_crf": dict(word_dim=50, char_dim=25, char_filters=50, char_width=5,
                            hidden=150)}
CHUNK_ROWS = 512  # batched passes in chunks of whole passes up to this many rows (CPU caches)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _clock(dev):
    """Wall seconds on CUDA; on CPU this process's CPU seconds, which a shared machine's load
    does not inflate (with one thread, equal to the wall time of an idle machine)."""
    return time.perf_counter if dev.type == "cuda" else time.process_time


def train_throughput(arch, vocab, items, dev, epochs, batch=32):
    model = build_tagger(arch, len(vocab.words), len(vocab.chars), len(vocab.tags), 0,
                         **SIZES[arch]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [{k: v.to(dev) for k, v in collate(items[i:i + batch]).items()}
               for i in range(0, len(items), batch)]
    model.train()
    for b in batches[:2]:  # warm-up
        model.loss(b).backward()
    _sync(dev)
    clock = _clock(dev)
    t0 = clock()
    for _ in range(epochs):
        for b in batches:
            opt.zero_grad()
            model.loss(b).backward()
            opt.step()
    _sync(dev)
    sec = clock() - t0
    return {"arch": arch, "params": sum(p.numel() for p in model.parameters()),
            "sentences_per_s": epochs * len(items) / sec, "seconds": sec}


def _best_seconds(fn, batches, repeats, dev):
    fn(batches[0], 0)  # warm-up
    _sync(dev)
    best, clock = float("inf"), _clock(dev)
    for _ in range(repeats):
        t0 = clock()
        for k, b in enumerate(batches):
            fn(b, k)
        _sync(dev)
        best = min(best, clock() - t0)
    return best


def bald_scoring(vocab, items, dev, passes, repeats):
    """Sentences/s of M MC-dropout passes, batched vs the per-pass loop, and where the time
    goes: the embedding layer (char CNN + word embeddings, before any dropout: shareable) vs
    the rest of a pass (word CNN, decoder: a different dropout mask per pass, so the same
    arithmetic in both forms). With ``e`` and ``r`` the seconds of the two parts for one pass
    of the pool, the loop costs M(e + r) and the batched form at best e + M·r: the ratio
    cannot exceed (e + r) / r however the passes are batched, unless batching makes the
    per-pass arithmetic itself cheaper (a GPU's idle lanes, launch overhead). On a CPU one
    batch of all M·B rows is slower than the loop: the decoder's per-step tensors (M·B x 4H)
    leave the cache, so the form batched in chunks of whole passes (``CHUNK_ROWS``) is timed
    too."""
    model = build_tagger("cnn", len(vocab.words), len(vocab.chars), len(vocab.tags), 0,
                         **SIZES["cnn"]).to(dev)
    model.eval()
    order = sorted(range(len(items)), key=lambda i: len(items[i]["words"]))
    batches = [{k: v.to(dev) for k, v in collate([items[j] for j in order[i:i + 64]]).items()}
               for i in range(0, len(items), 64)]
    sec = {"batched": _best_seconds(lambda b, k: mc_predict(model, b, passes, k), batches,
                                    repeats, dev),
           "chunked": _best_seconds(lambda b, k: mc_predict(model, b, passes, k,
                                                            max_rows=CHUNK_ROWS),
                                    batches, repeats, dev),
           "loop": _best_seconds(lambda b, k: mc_predict_loop(model, b, passes, k), batches,
                                 repeats, dev)}
    with torch.no_grad():
        e = _best_seconds(lambda b, k: model._inputs(b), batches, repeats, dev)
    r = sec["loop"] / passes - e
    return {"passes": passes, "batched_sentences_per_s": len(items) / sec["batched"],
            "chunked_sentences_per_s": len(items) / sec["chunked"], "chunk_rows": CHUNK_ROWS,
            "loop_sentences_per_s": len(items) / sec["loop"],
            "ratio": sec["loop"] / sec["batched"], "ratio_chunked": sec["loop"] / sec["chunked"],
            "embedding_seconds_per_pass": e, "rest_seconds_per_pass": r,
            "ratio_ceiling": (e + r) / r if r > 0 else float("inf")}


def main():
    args, dev = torch_bench_args(__doc__)
    sents = load_hironsan()[:400]
    vocab = build_vocab(sents, sents, "iobes", "iob2")
    items = encode_sentences(sents, vocab, "iob2")
    epochs, passes, repeats = (1, 10, 1) if args.quick else (3, 20, 3)
    if args.quick:
        items = items[:160]
    train_rows = [train_throughput(a, vocab, items, dev, epochs) for a in SIZES]
    ratio = train_rows[0]["sentences_per_s"] / train_rows[1]["sentences_per_s"]
    bald = bald_scoring(vocab, items, dev, passes, repeats)
    print(f"{'tagger':12s} {'params':>9s} {'train sent/s':>13s}")
    for r in train_rows:
        print(f"{r['arch']:12s} {r['params']:9d} {r['sentences_per_s']:13.1f}")
    print(f"CNN-CNN-LSTM / BiLSTM-CRF training throughput: {ratio:.2f}x (paper: 49/11 = 4.5x)")
    print(f"BALD, {passes} passes: batched {bald['batched_sentences_per_s']:.1f} sent/s, loop "
          f"{bald['loop_sentences_per_s']:.1f} sent/s: {bald['ratio']:.2f}x (target >= 10x)")
    print(f"  batched in chunks of <= {CHUNK_ROWS} rows: {bald['chunked_sentences_per_s']:.1f} "
          f"sent/s: {bald['ratio_chunked']:.2f}x")
    print(f"  one pass of the pool: embedding layer {bald['embedding_seconds_per_pass']:.3f} s "
          f"(shared), the rest {bald['rest_seconds_per_pass']:.3f} s (per pass): ceiling "
          f"(e + r) / r = {bald['ratio_ceiling']:.2f}x")
    write_results(args, dev, "ner", {"train": train_rows, "train_ratio": ratio, "bald": bald})


if __name__ == "__main__":
    main()
