"""NMT decoding and training speed, side by side in one run (the NMT study's model):

1. beam search (width 4) over many sentences at once (64 per batch) vs one sentence at a time
   (the target: >= 10x sentences/s), and batched greedy decoding;
2. training throughput (target tokens/s) of the shared loop's step.

Data: Bible verses (SWORD modules; Django UI strings when those are absent) encoded with a
SentencePiece model trained on them; the model is the quick study's size (d_model 64, 2+2
layers), randomly initialised, and every output runs to its length limit (a fixed amount of work
per sentence: ⌊|x| + 5⌋ tokens). Prints a table and writes ``benchmarks/results/nmt.json``
(``nmt_quick.json`` with ``--quick``). ``--device cuda`` runs it on a GPU.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _torch_bench import (  # benchmarks/_torch_bench.py (run as scripts)
    torch_bench_args,
    write_results,
)

from theorylab.empirical.nmt.corpus import builtin_missing, length_filter, load_corpus
from theorylab.empirical.nmt.model import (
    Seq2Seq,
    beam_search,
    greedy,
    loss_fn,
    make_batch,
    token_batches,
)
from theorylab.empirical.nmt.subwords import Subwords, train_subwords


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _clock(dev):
    """Wall seconds on CUDA; on CPU this process's CPU seconds (one thread: robust to load)."""
    return time.perf_counter if dev.type == "cuda" else time.process_time


def _timed(fn, dev):
    _sync(dev)
    clock = _clock(dev)
    t0 = clock()
    out = fn()
    _sync(dev)
    return out, clock() - t0


def main():
    args, dev = torch_bench_args(__doc__)
    corpus = "bible" if builtin_missing(["bible"]) is None else "django"
    pairs = length_filter(load_corpus(corpus), 14, 2.5)
    rng = np.random.default_rng(0)
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:3000]]
    sw = Subwords(train_subwords([x for p in pairs for x in (p.src, p.tgt)], 800))
    n_dec = 64 if args.quick else 256
    src = sw.encode([p.src for p in pairs[:n_dec]])
    torch.manual_seed(0)
    model = Seq2Seq(len(sw), 64, 4, 2, 2, 128, 0.0).to(dev).eval()
    kw = dict(max_len_a=1.0, max_len_b=5)
    beam_search(model, src[:4], beam=4, **kw)  # warm-up
    batched, t_b = _timed(lambda: beam_search(model, src, beam=4, batch_size=64, **kw), dev)
    n_single = 16 if args.quick else 64
    single, t_s = _timed(lambda: [beam_search(model, [s], beam=4, batch_size=1, **kw)[0]
                                  for s in src[:n_single]], dev)
    assert single == batched[:n_single], "batched beam search differs from one at a time"
    _, t_g = _timed(lambda: greedy(model, src, batch_size=64, **kw), dev)
    dec = {"sentences": n_dec, "beam": 4, "batch": 64,
           "batched_beam_sentences_per_s": n_dec / t_b,
           "single_beam_sentences_per_s": n_single / t_s,
           "greedy_sentences_per_s": n_dec / t_g}
    dec["batched_over_single"] = dec["batched_beam_sentences_per_s"] / dec[
        "single_beam_sentences_per_s"]
    dec["greedy_over_batched_beam"] = dec["greedy_sentences_per_s"] / dec[
        "batched_beam_sentences_per_s"]
    # training throughput: one epoch of the shared loop's steps (AdamW, label smoothing)
    s_ids, t_ids = sw.encode([p.src for p in pairs]), sw.encode([p.tgt for p in pairs])
    lens = [max(len(a), len(b)) + 1 for a, b in zip(s_ids, t_ids, strict=True)]
    batches = [tuple(x.to(dev) for x in make_batch([s_ids[i] for i in b], [t_ids[i] for i in b]))
               for b in token_batches(lens, 2500, rng)]
    if args.quick:
        batches = batches[:20]
    train_model = Seq2Seq(len(sw), 64, 4, 2, 2, 128, 0.1).to(dev).train()
    opt = torch.optim.AdamW(train_model.parameters(), lr=2e-3)
    lf = loss_fn(0.1)

    def epoch():
        for b in batches:
            opt.zero_grad()
            lf(train_model, b).backward()
            opt.step()
    _, t_t = _timed(epoch, dev)
    tokens = sum(int((b[2] != 0).sum()) for b in batches)
    tr = {"batches": len(batches), "target_tokens": tokens, "tokens_per_s": tokens / t_t}
    print(f"corpus {corpus}: {n_dec} sentences, beam 4")
    print(f"batched beam (64/batch) {dec['batched_beam_sentences_per_s']:8.1f} sent/s")
    print(f"one at a time           {dec['single_beam_sentences_per_s']:8.1f} sent/s  -> "
          f"{dec['batched_over_single']:.1f}x (target >= 10x)")
    print(f"greedy (64/batch)       {dec['greedy_sentences_per_s']:8.1f} sent/s  -> "
          f"{dec['greedy_over_batched_beam']:.1f}x the batched beam")
    print(f"training                {tr['tokens_per_s']:8.0f} target tokens/s")
    write_results(args, dev, "nmt", {"decode": dec, "train": tr},
                  clock="wall" if dev.type == "cuda" else "process CPU seconds")


if __name__ == "__main__":
    main()
