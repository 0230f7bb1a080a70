r"""A small transformer encoder–decoder, its loss, and decoding: greedy, batched beam search,
ensembles; checkpoint averaging.

**Model** (Vaswani et al. 2017, pre-norm): shared source/target embeddings E (one SentencePiece
vocabulary, :mod:`~.subwords`) scaled by :math:`\sqrt{d}` plus sinusoidal positions; encoder
layers (self-attention, feed-forward), decoder layers (causal self-attention, attention over the
encoder output, feed-forward); the output layer is :math:`E^\top` (tied). Attention is written
out (:math:`\mathrm{softmax}(QK^\top/\sqrt{d_k} + M)V`, padding and future keys masked with
:math:`-\infty`), so that a sentence's numbers do not depend on the batch it sits in.

**Loss**: token cross-entropy with label smoothing ε (Szegedy et al.): the target distribution
puts 1 − ε on the reference token and ε/V on every token; padding ignored.

**Decoding.** Source: subword ids, ``</s>``; the decoder starts from ``<s>``. A sentence's output
may be at most ⌊a·|x| + b⌋ tokens long. *Greedy* takes the most probable token each step.
*Beam search* (width K) keeps the K best prefixes by log-probability; at each step it ranks the
2K best extensions of all K prefixes, finishes those among the first K that end in ``</s>``,
and continues with the K best that do not; a sentence is done when it has K finished
hypotheses (or its length limit is reached, which finishes its open prefixes). The output is the
finished hypothesis y with the highest :math:`\log P(y|x) / lp(y)`, with the GNMT length
penalty :math:`lp(y) = ((5 + |y|)/6)^\alpha` (Wu et al. 2016; |y| counts ``</s>``). All B
sentences of a batch are searched at once as B·K rows; a finished sentence's rows keep running
but never change its result, so batched search equals searching one sentence at a time. At
K = 1 it is greedy decoding. An *ensemble* of models scores the next token by the log of the
mean of their probabilities, :math:`\log \frac1M \sum_m p_m(y_t | y_{<t}, x)` (fairseq's rule);
M copies of one model give that model's scores.

**Checkpoint averaging** (the parameters of the last few snapshots, averaged element-wise):
:class:`Snapshots` keeps them during training, :func:`average_states` averages.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from theorylab.empirical.nmt.subwords import BOS, EOS, PAD
from theorylab.errors import InputError

__all__ = ["Seq2Seq", "loss_fn", "make_batch", "token_batches", "greedy", "beam_search",
           "average_states", "Snapshots", "dev_loss", "translate", "reorder"]


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise InputError(f"'d_model' ({d}) must be a multiple of 'heads' ({heads}).")
        self.h, self.dk = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def heads(self, proj: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) → (B, h, T, d_k)."""
        return proj(x).view(x.shape[0], x.shape[1], self.h, self.dk).transpose(1, 2)

    def attend(self, q, k, v, mask) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_k), masked keys -inf) v, heads merged and projected (no
        ``mask``: every key)."""
        att = q @ k.transpose(-1, -2) / math.sqrt(self.dk)
        if mask is not None:
            att = att.masked_fill(mask, float("-inf"))
        out = self.drop(att.softmax(-1)) @ v
        B, _, T, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(B, T, self.h * self.dk))

    def forward(self, x, mem, key_pad, causal: bool = False):
        T, S = x.shape[1], mem.shape[1]
        mask = key_pad[:, None, None, :]
        if causal:
            mask = mask | torch.ones(T, S, dtype=torch.bool, device=x.device).triu(1)
        return self.attend(self.heads(self.q, x), self.heads(self.k, mem),
                           self.heads(self.v, mem), mask)


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, dropout: float, cross: bool):
        super().__init__()
        self.self_att = _Attention(d, heads, dropout)
        self.cross_att = _Attention(d, heads, dropout) if cross else None
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3 if cross else 2))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad, mem=None, mem_pad=None):
        h = self.norms[0](x)
        x = x + self.drop(self.self_att(h, h, pad, causal=self.cross_att is not None))
        if self.cross_att is not None:
            x = x + self.drop(self.cross_att(self.norms[1](x), mem, mem_pad))
        return x + self.drop(self.ff(self.norms[-1](x)))


class Seq2Seq(nn.Module):
    """Transformer encoder–decoder with tied embeddings (see the module docstring)."""

    def __init__(self, vocab: int, d_model: int = 128, heads: int = 4, enc_layers: int = 2,
                 dec_layers: int = 2, ff: int = 256, dropout: float = 0.1, max_len: int = 512):
        super().__init__()
        self.d = d_model
        self.emb = nn.Embedding(vocab, d_model, padding_idx=PAD)
        nn.init.normal_(self.emb.weight, std=d_model ** -0.5)
        pos = torch.arange(max_len)[:, None] / torch.pow(10_000, torch.arange(0, d_model, 2)
                                                         / d_model)
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos), torch.cos(pos)
        self.register_buffer("pe", pe, persistent=False)
        self.enc = nn.ModuleList(_Layer(d_model, heads, ff, dropout, False)
                                 for _ in range(enc_layers))
        self.dec = nn.ModuleList(_Layer(d_model, heads, ff, dropout, True)
                                 for _ in range(dec_layers))
        self.enc_norm, self.dec_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def _embed(self, ids):
        return self.drop(self.emb(ids) * math.sqrt(self.d) + self.pe[: ids.shape[1]])

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder output (B, S, d), source padding mask (B, S))."""
        pad = src == PAD
        x = self._embed(src)
        for layer in self.enc:
            x = layer(x, pad)
        return self.enc_norm(x), pad

    def decode(self, tgt_in: torch.Tensor, mem: torch.Tensor, mem_pad: torch.Tensor):
        """Next-token logits (B, T, V) for every prefix of ``tgt_in``."""
        pad = tgt_in == PAD
        x = self._embed(tgt_in)
        for layer in self.dec:
            x = layer(x, pad, mem, mem_pad)
        return self.dec_norm(x) @ self.emb.weight.T

    def forward(self, src, tgt_in):
        return self.decode(tgt_in, *self.encode(src))

    # -- incremental decoding: cached keys and values, one token per call --------------------
    def start(self, mem: torch.Tensor, mem_pad: torch.Tensor, group: int = 1) -> dict:
        """Decoder state for :meth:`step`: the encoder output's keys and values per layer, one
        set per sentence, shared by the ``group`` consecutive rows (beams) of that sentence."""
        return {"t": 0, "group": group, "mask": mem_pad[:, None, None, :],
                "cross": [(layer.cross_att.heads(layer.cross_att.k, mem),
                           layer.cross_att.heads(layer.cross_att.v, mem)) for layer in self.dec],
                "self": [None] * len(self.dec)}

    def step(self, tok: torch.Tensor, state: dict) -> torch.Tensor:
        """Next-token logits (R, V) after appending ``tok`` (R,) to the prefixes in ``state``
        (updated in place): :meth:`decode`'s last position, computed from the cache. The
        ``group`` rows of a sentence attend to its encoder output as ``group`` queries of one
        product (not ``group`` copies of the keys)."""
        t, g = state["t"], state["group"]
        R = tok.shape[0]
        x = self.emb(tok[:, None]) * math.sqrt(self.d) + self.pe[t:t + 1]
        for i, layer in enumerate(self.dec):
            a = layer.self_att
            h = layer.norms[0](x)
            k, v = a.heads(a.k, h), a.heads(a.v, h)
            if state["self"][i] is not None:
                k, v = (torch.cat([c, n], 2) for c, n in zip(state["self"][i], (k, v),
                                                               strict=True))
            state["self"][i] = (k, v)
            x = x + a.attend(a.heads(a.q, h), k, v, None)
            c = layer.cross_att
            q = c.q(layer.norms[1](x)).view(R // g, g, c.h, c.dk).transpose(1, 2)
            x = x + c.attend(q, *state["cross"][i], state["mask"]).reshape(R, 1, self.d)
            x = x + layer.ff(layer.norms[2](x))
        state["t"] = t + 1
        return (self.dec_norm(x) @ self.emb.weight.T)[:, 0]


def reorder(state: dict, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> dict:
    """The decoder state of the prefixes ``rows`` (beam search's survivors); the encoder side
    is kept, or taken for ``sentences`` when some leave (rows stay within their sentence)."""
    keep = sentences is None
    return {"t": state["t"], "group": state["group"],
            "mask": state["mask"] if keep else state["mask"][sentences],
            "cross": state["cross"] if keep else [(k[sentences], v[sentences])
                                                   for k, v in state["cross"]],
            "self": [(k[rows], v[rows]) for k, v in state["self"]]}


# ------------------------------------------------------------------------------------- batches
def _pad(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [PAD] * (n - len(s)) for s in seqs], dtype=torch.long)


def make_batch(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source + ``</s>``, ``<s>`` + target, target + ``</s>``), padded."""
    return (_pad([[*s, EOS] for s in src]), _pad([[BOS, *t] for t in tgt]),
            _pad([[*t, EOS] for t in tgt]))


def token_batches(lengths: Sequence[int], max_tokens: int, rng) -> list[list[int]]:
    """Indices grouped into batches of similar length with at most ``max_tokens`` (padded)
    tokens each (a seeded shuffle breaks ties, so batch contents vary with the seed)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    out, cur, longest = [], [], 0
    for i in order:
        longest2 = max(longest, lengths[i])
        if cur and longest2 * (len(cur) + 1) > max_tokens:
            out.append(cur)
            cur, longest2 = [], lengths[i]
        cur.append(i)
        longest = longest2
    if cur:
        out.append(cur)
    return out


def loss_fn(smoothing: float):
    """``loss(model, batch)``: label-smoothed token cross-entropy of a ``make_batch`` batch."""
    def loss(model, batch):
        src, tgt_in, tgt_out = batch
        logits = model(src, tgt_in)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                               ignore_index=PAD, label_smoothing=smoothing)
    return loss


@torch.no_grad()
def dev_loss(model, batches) -> float:
    """Mean token cross-entropy (no smoothing) over ``batches`` (``make_batch`` tuples)."""
    model.eval()
    dev = next(model.parameters()).device
    total, n = 0.0, 0
    for src, tgt_in, tgt_out in batches:
        logits = model(src.to(dev), tgt_in.to(dev))
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       tgt_out.to(dev).reshape(-1), ignore_index=PAD,
                                       reduction="sum"))
        n += int((tgt_out != PAD).sum())
    return total / max(n, 1)


# -------------------------------------------------------------------------------- checkpoints
def average_states(states: Sequence[dict]) -> dict:
    """Element-wise mean of state dicts (floating tensors; others taken from the last)."""
    if not states:
        raise InputError("'states' is empty: nothing to average.")
    out = {}
    for k, last in states[-1].items():
        if torch.is_floating_point(last):
            out[k] = torch.stack([s[k].detach().to(last.dtype) for s in states]).mean(0)
        else:
            out[k] = last.clone()
    return out


class Snapshots:
    """``after_step`` hook of :func:`~theorylab.empirical.train.train`: the parameters after
    every ``every``-th step, the last ``keep`` of them."""

    def __init__(self, every: int, keep: int):
        self.every, self.step = every, 0
        self.states: deque = deque(maxlen=keep)

    def __call__(self, model) -> None:
        self.step += 1
        if self.step % self.every == 0:
            self.states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})


# ------------------------------------------------------------------------------------- decoding
def _as_list(models) -> list:
    return list(models) if isinstance(models, (list, tuple)) else [models]


def _step(models, tok, states) -> torch.Tensor:
    """log p(next token | prefix, x) (rows, V) once ``tok`` is appended to each row's prefix:
    one model's, or the ensemble's log mean p."""
    lps = [F.log_softmax(m.step(tok, st), -1) for m, st in zip(models, states, strict=True)]
    if len(lps) == 1:
        return lps[0]
    return torch.logsumexp(torch.stack(lps), 0) - math.log(len(lps))


def _limits(src_lens: torch.Tensor, a: float, b: int) -> torch.Tensor:
    return (a * src_lens.double() + b).floor().long().clamp(min=1)


def _chunks(src: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of ``src`` in batches of ``batch_size`` sentences of similar length (sorted by
    length, ties by position): less padding, and fewer steps run for a batch's short
    sentences. A sentence's output does not depend on its batch, only the speed does."""
    if batch_size < 1:
        raise InputError(f"'batch_size' must be an int >= 1. Got {batch_size}.")
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    return [order[lo:lo + batch_size] for lo in range(0, len(order), batch_size)]


@torch.no_grad()
def greedy(models, src: Sequence[Sequence[int]], max_len_a: float = 1.5, max_len_b: int = 10,
           batch_size: int = 64) -> list[list[int]]:
    """Greedy translations (token ids, without ``</s>``) of the ``src`` id lists, decoded
    ``batch_size`` sentences of similar length at a time."""
    models = _as_list(models)
    dev = next(models[0].parameters()).device
    out: list[list[int]] = [[] for _ in src]
    for chunk in _chunks(src, batch_size):
        x = _pad([[*src[i], EOS] for i in chunk]).to(dev)
        states = [m.start(*m.encode(x)) for m in models]
        limit = _limits((x != PAD).sum(1) - 1, max_len_a, max_len_b)
        prefix = torch.full((len(chunk), 1), BOS, dtype=torch.long, device=dev)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=dev)
        for t in range(int(limit.max())):
            nxt = _step(models, prefix[:, -1], states).argmax(-1)
            nxt = nxt.masked_fill(done, PAD)
            prefix = torch.cat([prefix, nxt[:, None]], 1)
            done = done | (nxt == EOS) | (t + 1 >= limit)
            if bool(done.all()):
                break
        for r, i in enumerate(chunk):
            toks = prefix[r, 1:].tolist()
            out[i] = [tok for tok in toks[:int(limit[r])] if tok not in (PAD,)]
            if EOS in out[i]:
                out[i] = out[i][:out[i].index(EOS)]
    return out


@torch.no_grad()
def beam_search(models, src: Sequence[Sequence[int]], beam: int = 4, alpha: float = 0.6,
                max_len_a: float = 1.5, max_len_b: int = 10, batch_size: int = 64,
                return_scores: bool = False):
    """Beam-search translations (token ids, without ``</s>``) of the ``src`` id lists, searched
    ``batch_size`` sentences of similar length at a time (see the module docstring); with
    ``return_scores`` also each output's length-normalised log-probability. A sentence that
    is done leaves the batch (its rows are dropped), so the others' steps get cheaper."""
    models = _as_list(models)
    if beam < 1:
        raise InputError(f"'beam' must be an int >= 1. Got {beam}.")
    dev = next(models[0].parameters()).device
    out: list = [None] * len(src)
    K = beam
    rank = torch.arange(2 * K, device=dev)
    for chunk in _chunks(src, batch_size):
        B = len(chunk)
        x = _pad([[*src[i], EOS] for i in chunk]).to(dev)
        limit = _limits((x != PAD).sum(1) - 1, max_len_a, max_len_b)
        states = [m.start(*m.encode(x), group=K) for m in models]
        prefix = torch.full((B * K, 1), BOS, dtype=torch.long, device=dev)
        scores = torch.full((B, K), float("-inf"), device=dev, dtype=torch.float64)
        scores[:, 0] = 0.0
        finished: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(B)]
        alive = torch.arange(B, device=dev)       # chunk positions of the rows' sentences
        n_fin = torch.zeros(B, dtype=torch.long, device=dev)
        t = 0
        while alive.numel():
            n = alive.numel()
            lp = _step(models, prefix[:, -1], states).view(n, K, -1)
            V = lp.shape[-1]
            cand = (scores[:, :, None] + lp).view(n, K * V)
            top_s, top_i = cand.topk(2 * K, dim=1)
            src_beam, tok = top_i // V, top_i % V
            is_eos = tok == EOS
            # finish the EOS extensions ranked among the first K
            fin = is_eos & (rank < K) & torch.isfinite(top_s)
            for r, j in fin.nonzero().tolist():
                toks = prefix[r * K + int(src_beam[r, j]), 1:].tolist()
                s = float(top_s[r, j])
                finished[int(alive[r])].append((s / ((6 + len(toks)) / 6) ** alpha, s, toks))
            n_fin = n_fin + fin.sum(1)
            # continue with the K best non-EOS extensions (EOS sorted after them, stably)
            keep = torch.sort(is_eos.long() * 2 * K + rank, dim=1).indices[:, :K]
            scores = top_s.gather(1, keep)
            rows = (torch.arange(n, device=dev)[:, None] * K + src_beam.gather(1, keep)).view(-1)
            prefix = torch.cat([prefix[rows], tok.gather(1, keep).view(-1, 1)], 1)
            t += 1
            # at its length limit a sentence's open prefixes finish as they are
            at_limit = (n_fin < K) & (t >= limit)
            for r in at_limit.nonzero()[:, 0].tolist():
                for k in range(K):
                    s = float(scores[r, k])
                    if math.isfinite(s):
                        toks = prefix[r * K + k, 1:].tolist()
                        finished[int(alive[r])].append((s / ((5 + len(toks)) / 6) ** alpha, s,
                                                        toks))
            done = (n_fin >= K) | (t >= limit)
            if bool(done.any()):  # drop the done sentences' rows
                left = (~done).nonzero()[:, 0]
                kept = (left[:, None] * K + torch.arange(K, device=dev)).view(-1)
                prefix, scores = prefix[kept], scores[left]
                # the survivors' caches, gathered once (not reordered, then filtered)
                states = [reorder(st, rows[kept], left) for st in states]
                alive, n_fin, limit = alive[left], n_fin[left], limit[left]
            else:
                states = [reorder(st, rows) for st in states]
        for r, i in enumerate(chunk):
            best = max(finished[r], key=lambda f: f[0])
            out[i] = (best[2], best[0]) if return_scores else best[2]
    return out


def translate(models, subwords, texts: Sequence[str], beam: int = 4, alpha: float = 0.6,
              tag: str | None = None, batch_size: int = 64, **kw) -> list[str]:
    """Detokenised translations of ``texts`` (beam search; ``beam=0`` greedy), the domain
    ``tag`` (if any) prepended to every source."""
    ids = subwords.encode(texts)
    if tag is not None:
        ids = [[subwords.tag_id(tag), *x] for x in ids]
    hyp = (greedy(models, ids, batch_size=batch_size, **kw) if beam == 0 else
           beam_search(models, ids, beam=beam, alpha=alpha, batch_size=batch_size, **kw))
    return subwords.decode(hyp)
