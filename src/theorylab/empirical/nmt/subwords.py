r"""One SentencePiece vocabulary for both languages, trained on the out-of-domain data only.

The survey's model-centric methods continue training an out-of-domain model on in-domain data;
that needs the vocabulary to stay fixed (fine-tuning a fairseq / OpenNMT / Marian model with a
new vocabulary breaks its embeddings). So the subword model is trained once, on both sides of
the out-of-domain training pairs (Kudo & Richardson's unigram model), and every method encodes
with it. ``byte_fallback`` spells a character the out-of-domain text never had (``%``, ``“`` in
UI strings) as its UTF-8 bytes, and the ``identity`` normalisation keeps every character, so
``decode(encode(s)) == s`` for any whitespace-normalised ``s`` (checked on the corpora).

Ids: 0 pad, 1 unk, 2 bos, 3 eos, then the domain tags :data:`TAGS` (user-defined symbols, one
piece each), then the learnt pieces.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import torch

__all__ = ["Subwords", "train_subwords", "TAGS", "PAD", "UNK", "BOS", "EOS"]

PAD, UNK, BOS, EOS = 0, 1, 2, 3
#: domain tags prepended to the source by the domain-tag method (Kobus et al., in the survey)
TAGS = ("<2ood>", "<2id>")


def train_subwords(sentences: Iterable[str], vocab_size: int, model_type: str = "unigram"
                   ) -> torch.Tensor:
    """A SentencePiece model trained on ``sentences``, as its serialized bytes (a uint8 tensor,
    storable as an artifact)."""
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences)), model_writer=buf, vocab_size=vocab_size,
        model_type=model_type, character_coverage=1.0, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, user_defined_symbols=list(TAGS),
        num_threads=1, shuffle_input_sentence=False, hard_vocab_limit=False,
        minloglevel=2)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8).clone()


class Subwords:
    """Encode / decode with a serialized SentencePiece model."""

    def __init__(self, model: torch.Tensor | bytes):
        import sentencepiece as spm
        raw = bytes(model.numpy().tobytes()) if isinstance(model, torch.Tensor) else model
        self.sp = spm.SentencePieceProcessor(model_proto=raw)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def tag_id(self, tag: str) -> int:
        return self.sp.piece_to_id(tag)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return self.sp.decode([[int(i) for i in x] for x in ids])

    def pieces(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)
