r"""The taggers of Shen et al. (ICLR 2018): CNN-CNN-LSTM, and a BiLSTM-CRF baseline.

**CNN-CNN-LSTM** (their section 3). Character encoder: embeddings of a word's characters, one
convolution (width ``char_width``), ReLU, max-pool over the characters → :math:`c_i`. Word
encoder: :math:`w^{full}_i = [c_i; w^{emb}_i]`, two convolutions of width 3 (ReLU, dropout) →
:math:`h^{Enc}_i = [h^{conv}_i; w^{full}_i]`. Tag decoder: an LSTM whose input at step i is
:math:`[h^{Enc}_i; y_{i-1}]` (the previous tag's embedding; a GO tag at i = 1) and a softmax
:math:`P(y_i \mid y_{<i}, x)`. Training feeds the gold previous tag (teacher forcing); decoding
is greedy, feeding the predicted one, and returns
:math:`\log P(\hat y \mid x) = \sum_i \log P(\hat y_i \mid \hat y_{<i}, x)` (used by LC and MNLP).
During training each word id is replaced by UNK with probability ``word_dropout``.

**BiLSTM-CRF** (Lample et al. 2016; the paper's LSTM-based comparison): the same character
encoder and word embeddings, a bidirectional LSTM, a linear layer to emissions and a
linear-chain CRF (:mod:`.crf`); decoding is Viterbi, with :math:`\log P(\hat y\mid x) = s(\hat y)
- \log Z`.

Both models: ``loss(batch)`` (the sentence NLL summed over tokens, averaged over sentences),
``predict(batch, mc=False, passes=1)`` → :class:`Prediction`. ``mc=True`` keeps the (non-word)
dropout active at inference: MC dropout for BALD (Gal & Ghahramani 2016). With ``passes=M`` the
M passes run as one batch of M·B rows (row m·B + b: pass m of sentence b), each row with its own
masks; the embedding layer :math:`w^{full}` comes before any dropout, so it is computed once for
the B sentences and repeated. Padded positions are masked after every layer, so a sentence's
outputs do not depend on what it is batched with.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from theorylab.empirical.ner import crf
from theorylab.empirical.ner.encode import PAD, UNK

__all__ = ["Prediction", "CharCNN", "CNNCNNLSTM", "BiLSTMCRF", "ARCHS", "build_tagger"]


class Prediction(NamedTuple):
    """Predicted tag ids (B, T; 0 past each end) and :math:`\\log P(\\hat y \\mid x)` (B,)."""

    tags: torch.Tensor
    logp: torch.Tensor


class CharCNN(nn.Module):
    """Character embeddings → convolution → ReLU → max over the word's characters.

    Words are pooled in groups of similar length (up to 2, 4, 8 characters, and the rest), each
    group padded only to its own longest word; padding words are skipped (their output is 0).
    The values equal those of one (B·T, C) tensor padded to the batch's longest word — the
    padding character embeds to 0, as the convolution's own zero padding does — at a fraction of
    the work: on the shipped corpus words have 1.7 characters on average, and the padded tensor
    of a batch was 88 % padding."""

    GROUPS = (2, 4, 8)

    def __init__(self, n_chars: int, dim: int, filters: int, width: int):
        super().__init__()
        self.emb = nn.Embedding(n_chars, dim, padding_idx=PAD)
        self.conv = nn.Conv1d(dim, filters, width, padding=width // 2)

    def pool(self, chars: torch.Tensor) -> torch.Tensor:
        """(N, C) character ids, each word's left-aligned → (N, filters)."""
        C = chars.shape[1]
        h = F.relu(self.conv(self.emb(chars).transpose(1, 2)))[:, :, :C]   # (N, filters, C)
        return h.masked_fill((chars == PAD).unsqueeze(1), float("-inf")).amax(2)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        B, T, C = chars.shape
        flat = chars.view(B * T, C)
        n = (flat != PAD).sum(1)                                      # characters per word
        idxs, parts, lo = [], [], 0
        for hi in (*(g for g in self.GROUPS if g < C), C):
            idx = ((n > lo) & (n <= hi)).nonzero().squeeze(1)
            if idx.numel():
                idxs.append(idx)
                parts.append(self.pool(flat[idx, :hi]))
            lo = hi
        out = self.conv.weight.new_zeros(B * T, self.conv.out_channels)
        if parts:
            h = torch.cat(parts)
            out = out.to(h.dtype).index_copy(0, torch.cat(idxs), h)
        return out.view(B, T, -1)


class _Tagger(nn.Module):
    def __init__(self, n_words, n_chars, n_tags, word_dim, char_dim, char_filters, char_width,
                 dropout, word_dropout):
        super().__init__()
        self.n_tags, self.p, self.word_dropout = n_tags, dropout, word_dropout
        self.mc = False
        self.word_emb = nn.Embedding(n_words, word_dim, padding_idx=PAD)
        self.char = CharCNN(n_chars, char_dim, char_filters, char_width)
        self.in_dim = word_dim + char_filters

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """Inverted dropout; the mask from ``rand >= p`` (on CPU about 2.5x cheaper than
        ``F.dropout``'s Bernoulli draw, same distribution)."""
        if not (self.training or self.mc) or self.p == 0:
            return x
        return x * (torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p))

    def _inputs(self, batch: dict) -> torch.Tensor:
        """:math:`w^{full} = [c; w^{emb}]` (B, T, in_dim), zero at padding; the only random
        part is word dropout, in training."""
        words = batch["words"]
        if self.training and self.word_dropout > 0:
            drop = torch.rand(words.shape, device=words.device) < self.word_dropout
            words = torch.where(drop & (words != PAD), torch.full_like(words, UNK), words)
        x = torch.cat([self.char(batch["chars"]), self.word_emb(words)], dim=-1)
        return x * batch["mask"].unsqueeze(-1)

    @torch.no_grad()
    def predict(self, batch: dict, mc: bool = False, passes: int = 1,
                max_rows: int | None = None) -> Prediction:
        """Decoded tags and :math:`\\log P(\\hat y \\mid x)`: (B, T) and (B,), or with
        ``passes`` = M > 1 (M·B, T) and (M·B,), row m·B + b for pass m of sentence b. The M·B
        rows run in chunks of whole passes of at most ``max_rows`` rows (None: one chunk)."""
        was = self.training
        self.eval()
        self.mc = mc
        try:
            x = self._inputs(batch)  # deterministic in eval mode: computed once
            if passes == 1:
                return self._predict(batch, x)
            B = x.shape[0]
            per = passes if max_rows is None else max(1, min(passes, max_rows // B))
            out = [self._predict({"mask": batch["mask"].repeat(k, 1)}, x.repeat(k, 1, 1))
                   for k in [per] * (passes // per) + [passes % per] * (passes % per > 0)]
            return Prediction(torch.cat([o.tags for o in out]), torch.cat([o.logp for o in out]))
        finally:
            self.mc = False
            self.train(was)


class CNNCNNLSTM(_Tagger):
    """Shen et al.'s tagger: char CNN, word CNN, greedy LSTM decoder (see the module doc)."""

    def __init__(self, n_words: int, n_chars: int, n_tags: int, word_dim: int = 50,
                 char_dim: int = 25, char_filters: int = 50, char_width: int = 5,
                 word_filters: int = 200, decoder_dim: int = 100, tag_dim: int = 25,
                 dropout: float = 0.5, word_dropout: float = 0.5):
        super().__init__(n_words, n_chars, n_tags, word_dim, char_dim, char_filters, char_width,
                         dropout, word_dropout)
        self.conv1 = nn.Conv1d(self.in_dim, word_filters, 3, padding=1)
        self.conv2 = nn.Conv1d(word_filters, word_filters, 3, padding=1)
        self.tag_emb = nn.Embedding(n_tags + 1, tag_dim)               # id n_tags = GO
        self.decoder = nn.LSTM(word_filters + self.in_dim + tag_dim, decoder_dim, batch_first=True)
        self.out = nn.Linear(decoder_dim, n_tags)

    def encode(self, batch: dict, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`h^{Enc}` (B, T, word_filters + in_dim); ``inputs``: :math:`w^{full}` if
        already computed."""
        m = batch["mask"].unsqueeze(1)
        x = self._drop(self._inputs(batch) if inputs is None else inputs)
        h = x.transpose(1, 2)
        h = self._drop(F.relu(self.conv1(h)) * m)
        h = self._drop(F.relu(self.conv2(h)) * m)
        return torch.cat([h.transpose(1, 2), x], dim=-1)

    def _prev(self, tags: torch.Tensor) -> torch.Tensor:
        go = torch.full_like(tags[:, :1], self.n_tags)
        return torch.cat([go, tags[:, :-1]], dim=1)

    def loss(self, batch: dict) -> torch.Tensor:
        enc = self.encode(batch)
        dec, _ = self.decoder(torch.cat([enc, self.tag_emb(self._prev(batch["tags"]))], -1))
        logits = self.out(self._drop(dec))
        nll = F.cross_entropy(logits.transpose(1, 2), batch["tags"], reduction="none")
        return (nll * batch["mask"]).sum() / nll.shape[0]

    def _predict(self, batch: dict, inputs: torch.Tensor) -> Prediction:
        """Greedy decoding; the LSTM step written out (one call of ``nn.LSTM`` per step costs
        more than the step): gates = W_ih [h_enc; y_prev] + b_ih + W_hh h + b_hh."""
        enc = self.encode(batch, inputs)
        B, T, d_enc = enc.shape
        lstm = self.decoder
        w_enc, w_tag = lstm.weight_ih_l0[:, :d_enc], lstm.weight_ih_l0[:, d_enc:]
        x_enc = enc @ w_enc.T + lstm.bias_ih_l0 + lstm.bias_hh_l0   # (B, T, 4H), all steps
        tag_in = self.tag_emb.weight @ w_tag.T                        # (n_tags + 1, 4H)
        w_hh, H = lstm.weight_hh_l0.T, lstm.hidden_size
        h = enc.new_zeros(B, H)
        c = enc.new_zeros(B, H)
        prev = torch.full((B,), self.n_tags, dtype=torch.long, device=enc.device)
        tags, logps = [], []
        for t in range(T):
            gates = torch.addmm(x_enc[:, t] + tag_in[prev], h, w_hh)    # order i, f, g, o
            s = torch.sigmoid(gates)
            c = s[:, H:2 * H] * c + s[:, :H] * torch.tanh(gates[:, 2 * H:3 * H])
            h = s[:, 3 * H:] * torch.tanh(c)
            logp = F.log_softmax(self.out(self._drop(h)), dim=-1)
            lp, prev = logp.max(-1)
            tags.append(prev)
            logps.append(lp)
        mask = batch["mask"]
        tags = torch.stack(tags, 1) * mask
        return Prediction(tags, (torch.stack(logps, 1) * mask).sum(1))

    def _slow_predict(self, batch: dict) -> Prediction:
        """Reference twin of :meth:`_predict`: one sentence at a time, ``nn.LSTM`` per step."""
        tags, logps = [], []
        for b in range(batch["words"].shape[0]):
            n = int(batch["mask"][b].sum())
            one = {k: v[b:b + 1, :n] for k, v in batch.items()}
            enc = self.encode(one)
            prev = torch.full((1,), self.n_tags, dtype=torch.long, device=enc.device)
            state, seq, total = None, [], 0.0
            for t in range(n):
                step = torch.cat([enc[:, t], self.tag_emb(prev)], -1).unsqueeze(1)
                out, state = self.decoder(step, state)
                logp = F.log_softmax(self.out(self._drop(out[:, 0])), dim=-1)
                lp, prev = logp.max(-1)
                seq.append(int(prev))
                total = total + lp
            row = torch.zeros(batch["words"].shape[1], dtype=torch.long)
            row[:n] = torch.tensor(seq)
            tags.append(row)
            logps.append(total)
        return Prediction(torch.stack(tags), torch.cat(logps))


class BiLSTMCRF(_Tagger):
    """Char CNN + word embeddings → BiLSTM → emissions → linear-chain CRF."""

    def __init__(self, n_words: int, n_chars: int, n_tags: int, word_dim: int = 50,
                 char_dim: int = 25, char_filters: int = 50, char_width: int = 5,
                 hidden: int = 100, dropout: float = 0.5, word_dropout: float = 0.5):
        super().__init__(n_words, n_chars, n_tags, word_dim, char_dim, char_filters, char_width,
                         dropout, word_dropout)
        self.lstm = nn.LSTM(self.in_dim, hidden, batch_first=True, bidirectional=True)
        self.emit = nn.Linear(2 * hidden, n_tags)
        self.trans = nn.Parameter(torch.zeros(n_tags, n_tags))
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))

    def emissions(self, batch: dict, inputs: torch.Tensor | None = None) -> torch.Tensor:
        x = self._drop(self._inputs(batch) if inputs is None else inputs)
        lengths = batch["mask"].sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=x.shape[1])
        return self.emit(self._drop(h))

    def loss(self, batch: dict) -> torch.Tensor:
        em, mask = self.emissions(batch), batch["mask"]
        p = (self.trans, self.start, self.end)
        nll = crf.log_partition(em, mask, *p) - crf.sequence_score(em, batch["tags"], mask, *p)
        return nll.mean()

    def _predict(self, batch: dict, inputs: torch.Tensor) -> Prediction:
        em, mask = self.emissions(batch, inputs), batch["mask"]
        p = (self.trans, self.start, self.end)
        tags, best = crf.viterbi(em, mask, *p)
        return Prediction(tags, best - crf.log_partition(em, mask, *p))


ARCHS = {"cnn": CNNCNNLSTM, "bilstm_crf": BiLSTMCRF}


def build_tagger(arch: str, n_words: int, n_chars: int, n_tags: int, seed: int, **sizes
                 ) -> _Tagger:
    """A freshly initialised tagger (``arch`` in :data:`ARCHS`), its weights drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHS[arch](n_words, n_chars, n_tags, **sizes)
