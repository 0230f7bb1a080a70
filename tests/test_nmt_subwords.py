"""SentencePiece: one vocabulary, exact round trips (byte fallback), fixed tag ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorylab.empirical.data.bitext import normalize
from theorylab.empirical.nmt.subwords import BOS, EOS, PAD, TAGS, UNK, Subwords, train_subwords

CORPUS = [f"the {w} of the {v} is {n}" for w in ("house", "lord", "king", "city")
          for v in ("people", "land", "sea") for n in ("good", "great", "holy")] + [
    "la casa del señor es grande", "y dijo Dios: sea la luz"]


@pytest.fixture(scope="module")
def sw():
    return Subwords(train_subwords(CORPUS * 5, vocab_size=320))


def test_special_ids_and_tags(sw):
    assert [sw.sp.pad_id(), sw.sp.unk_id(), sw.sp.bos_id(), sw.sp.eos_id()] == [PAD, UNK, BOS,
                                                                               EOS]
    assert [sw.tag_id(t) for t in TAGS] == [4, 5]
    assert all(sw.tag_id(t) in sw.encode([f"x {t} y"])[0] for t in TAGS)  # one piece each


def test_training_is_deterministic():
    assert bool((train_subwords(CORPUS * 5, 320) == train_subwords(CORPUS * 5, 320)).all())


@given(st.text(min_size=1, max_size=40))
def test_round_trip_of_any_normalized_text(sw, text):
    text = normalize(text)
    if text:
        ids = sw.encode([text])[0]
        assert UNK not in ids  # unseen characters become bytes, not <unk>
        assert sw.decode([ids]) == [text]
