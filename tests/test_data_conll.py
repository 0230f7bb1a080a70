"""NER file readers and tag schemes: round trips (hypothesis), seqeval agreement, bad input."""

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from theorylab.empirical.data.conll import (
    SCHEMES,
    check_tags,
    convert,
    from_spans,
    load_hironsan,
    read_conll,
    read_file,
    read_tagged,
    to_spans,
    write_tagged,
)
from theorylab.errors import DataFormatError

TYPES = ("PER", "LOC", "ORG")


@st.composite
def spans(draw, max_len=12):
    """A sentence length and non-overlapping spans (adjacent same-type spans included)."""
    n = draw(st.integers(1, max_len))
    out, k = [], 0
    while k < n:
        if draw(st.booleans()):
            j = draw(st.integers(k + 1, min(n, k + 4)))
            out.append((draw(st.sampled_from(TYPES)), k, j))
            k = j
        else:
            k += 1
    return n, out


@given(spans(), st.sampled_from(SCHEMES))
def test_spans_round_trip_through_every_scheme(case, scheme):
    n, sp = case
    tags = from_spans(sp, n, scheme)
    check_tags(tags, scheme)  # the encoder writes valid sequences
    assert to_spans(tags, scheme) == sp


@given(spans(), st.sampled_from(SCHEMES), st.sampled_from(SCHEMES))
def test_convert_round_trip(case, a, b):
    n, sp = case
    tags = from_spans(sp, n, a)
    assert convert(convert(tags, a, b), b, a) == tags


@given(spans())
def test_iob2_spans_agree_with_seqeval(case):
    n, sp = case
    tags = from_spans(sp, n, "iob2")
    assert sorted((t, i, j - 1) for t, i, j in sp) == sorted(get_entities(tags))


def test_iob1_marks_only_adjacent_same_type_starts():
    tags = from_spans([("PER", 0, 2), ("PER", 2, 3), ("LOC", 3, 4), ("LOC", 5, 6)], 6, "iob1")
    assert tags == ["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-LOC"]
    assert convert(tags, "iob1", "iobes") == ["B-PER", "E-PER", "S-PER", "S-LOC", "O", "S-LOC"]


CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
"""


def test_conll_reader_skips_docstart_and_reads_the_chosen_column(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text(CONLL)
    sents = read_conll(p)
    assert [s.tokens for s in sents] == [("EU", "rejects", "German", "call"),
                                         ("Peter", "Blackburn")]
    assert sents[0].tags == ("I-ORG", "O", "I-MISC", "O")
    assert sents[1].lines == (8, 9)
    chunks = read_conll(p, scheme="iob2", column=2)  # the chunk column is IOB2
    assert chunks[0].tags == ("B-NP", "B-VP", "B-NP", "I-NP")
    assert convert(sents[1].tags, "iob1", "iob2") == ["B-PER", "I-PER"]


def test_hironsan_corpus():
    sents = load_hironsan()
    assert len(sents) == 500 and sum(len(s.tokens) for s in sents) == 15520
    types = {t for s in sents for t, _, _ in to_spans(s.tags, "iob2")}
    assert {"DAT", "LOC", "ORG", "ART", "PSN", "TIM", "MON"} <= types
    for s in sents:
        check_tags(s.tags, "iob2")


def test_auto_infers_the_scheme(tmp_path):
    for scheme in SCHEMES:
        p = tmp_path / f"{scheme}.txt"
        write_tagged(p, [(["a", "b", "c"], from_spans([("X", 0, 2), ("X", 2, 3)], 3, scheme))])
        assert read_file(p, "auto")[1] == scheme


BAD = {
    "malformed line": ("a\tB-PER\nb\n", "iob2", 2, "malformed line"),
    "unknown tag": ("a\tB-PER\nb\tX-PER\n", "iob2", 2, "unknown tag 'X-PER'"),
    "E- under IOB2": ("a\tS-PER\n", "iob2", 1, "unknown tag"),
    "I- after O under IOB2": ("a\tO\nb\tI-PER\n", "iob2", 2, "IOB2 starts an entity with B-PER"),
    "I- at sentence start": ("a\tO\n\nb\tI-PER\n", "iob2", 3, "B-PER"),
    "IOBES left open": ("a\tB-PER\nb\tO\n", "iobes", 1, "not closed"),
    "mixed schemes": ("a\tI-PER\nb\tO\n\nc\tB-LOC\nd\tO\n", "auto", 4, "mixed tag schemes"),
    "empty file": ("\n\n", "iob2", 1, "empty file"),
    "only docstart": ("-DOCSTART- O\n\n", "iob2", 1, "empty file"),
}


@pytest.mark.parametrize("text, scheme, line, words", BAD.values(), ids=list(BAD))
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, text, scheme, line, words):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(DataFormatError) as e:
        read_tagged(p, scheme)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}:{line}: ") and words in msg


def test_non_utf8_names_the_line(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("a\tO\nM\u00fcller\tB-PER\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=rf"^{p}:2: not UTF-8"):
        read_tagged(p, "iob2")


def test_unknown_entity_type(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a\tB-PER\nb\tB-FOO\n")
    with pytest.raises(DataFormatError, match=r":2: unknown entity type 'FOO'"):
        read_tagged(p, "iob2", types=TYPES)


def test_cli_bad_file_exits_non_zero_with_one_line(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("a\tO\nb\tI-PER\n")
    r = subprocess.run([sys.executable, "-m", "theorylab.cli", "run", "ner-al", "--quick",
                        "--store", str(tmp_path / "s.sqlite"), "--set", f"data={p}",
                        "--set", "format=iob2"], capture_output=True, text=True)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{p}:2:" in lines[0], r.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is available here")
def test_cli_device_cuda_without_cuda_is_one_line(tmp_path):
    """`--device cuda` reaches the NER study's training and fails with one clear line when
    there is no GPU (on a GPU machine scripts/gpu_check.sh runs the model there)."""
    r = subprocess.run([sys.executable, "-m", "theorylab.cli", "run", "ner-al", "--quick",
                        "--store", str(tmp_path / "s.sqlite"), "--device", "cuda",
                        "--workers", "1", "--no-progress"], capture_output=True, text=True)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert "'device' 'cuda'" in lines[0] and "CUDA is not available" in lines[0]
