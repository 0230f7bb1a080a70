"""A small causal transformer language model, shared by the BEB and EXO experiments.

``TinyLM`` maps token ids (B, T) to next-token logits (B, T, V) (nanoGPT-style pre-norm blocks,
built from ``torch.nn.TransformerEncoderLayer`` with a causal mask). ``token_logprobs`` gives
log π(y|x) = Σ_{t≥1} log p(tokens_t | tokens_<t) over the unmasked positions.
"""

from __future__ import annotations

import torch
from torch import nn

from theorylab.errors import InputError

__all__ = ["TinyLM", "token_logprobs", "sample"]


class TinyLM(nn.Module):
    """Causal transformer LM: token + position embeddings, ``n_layers`` pre-norm blocks, tied head."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 128, dropout: float = 0.0):
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok.weight  # weight tying
        for emb in (self.tok, self.pos):  # GPT-2 init: small embeddings keep tied logits O(1)
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) long → logits (B, T, V)."""
        B, T = tokens.shape
        if T > self.max_len:
            raise InputError(f"'tokens' length {T} exceeds max_len {self.max_len} of TinyLM.")
        pos = torch.arange(T, device=tokens.device)
        h = self.tok(tokens) + self.pos(pos)[None]
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=tokens.device)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.head(self.norm(h))


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Σ_{t=1}^{T-1} mask_t · log softmax(logits_{t-1})[tokens_t]  → (B,).

    ``mask`` (B, T) marks the tokens to score (1) and the prompt/padding to skip (0); position 0
    is never scored (nothing predicts it).
    """
    if logits.shape[:2] != tokens.shape:
        raise InputError(f"'logits' (B, T, V) must match 'tokens' (B, T). Got "
                         f"{tuple(logits.shape)} and {tuple(tokens.shape)}.")
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tok_lp = logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    if mask is not None:
        if mask.shape != tokens.shape:
            raise InputError(f"'mask' must have the shape of 'tokens' {tuple(tokens.shape)}. "
                             f"Got {tuple(mask.shape)}.")
        tok_lp = tok_lp * mask[:, 1:].to(tok_lp.dtype)
    return tok_lp.sum(-1)


@torch.no_grad()
def sample(model: TinyLM, prefix: torch.Tensor, n_new: int, generator: torch.Generator,
           temperature: float = 1.0) -> torch.Tensor:
    """Append ``n_new`` tokens sampled from the model to ``prefix`` (B, T0) → (B, T0 + n_new)."""
    model.eval()
    out = prefix
    for _ in range(n_new):
        logits = model(out[:, -model.max_len:])[:, -1].float() / temperature
        probs = torch.softmax(logits, dim=-1)
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(out.device)
        out = torch.cat([out, nxt], dim=1)
    return out
