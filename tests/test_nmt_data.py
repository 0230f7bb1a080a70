"""NMT data: bitext readers and their one-line errors, verse alignment by key, leak-free splits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorylab.empirical.data.bitext import (
    SWORD_ROOT,
    Pair,
    align,
    read_moses,
    read_po,
    read_sword,
    read_tsv,
)
from theorylab.empirical.nmt.corpus import (
    SWORD_MODULES,
    builtin_missing,
    dedup,
    length_filter,
    load_corpus,
    parse_pair,
    split,
)
from theorylab.errors import ConfigError, DataFormatError

NO_BIBLE = builtin_missing(["bible"])
NO_DJANGO = builtin_missing(["django"])
needs_bible = pytest.mark.skipif(NO_BIBLE is not None, reason=f"{NO_BIBLE}; apt-get install "
                                 "sword-text-kjv sword-text-sparv")
needs_django = pytest.mark.skipif(NO_DJANGO is not None, reason=f"{NO_DJANGO}; pip install "
                                  "-e .[nmt]")


# ------------------------------------------------------------------------------------ TSV, Moses
def test_tsv_and_moses_read_the_same_pairs(tmp_path):
    (tmp_path / "a.tsv").write_text("Hello  world\tHola mundo\n\nYes\t Sí\n")
    (tmp_path / "a.en").write_text("Hello  world\nYes\n")
    (tmp_path / "a.es").write_text("Hola mundo\n Sí\n")
    tsv = read_tsv(tmp_path / "a.tsv")
    moses = read_moses(tmp_path / "a.en", tmp_path / "a.es")
    assert [(p.src, p.tgt) for p in tsv] == [(p.src, p.tgt) for p in moses] == [
        ("Hello world", "Hola mundo"), ("Yes", "Sí")]


@pytest.mark.parametrize("files, bad, line, words", [
    ({"a.en": "a\nb\nc\n", "a.es": "x\ny\n"}, "a.en", 3, "not line-aligned"),
    ({"a.en": "a\n", "a.es": "x\ny\n"}, "a.es", 2, "not line-aligned"),
    ({"a.en": "a\n \n", "a.es": "x\ny\n"}, "a.en", 2, "empty source side"),
    ({"a.en": "a\nb\n", "a.es": "x\n\n"}, "a.es", 2, "empty target side"),
    ({"a.en": b"a\nb\xe9\n", "a.es": "x\ny\n"}, "a.en", 2, "not UTF-8"),
    ({"a.en": "", "a.es": ""}, "a.en", None, "no sentence pairs"),
])
def test_moses_bad_input_names_file_and_line(tmp_path, files, bad, line, words):
    for name, text in files.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataFormatError) as e:
        read_moses(tmp_path / "a.en", tmp_path / "a.es")
    msg = str(e.value)
    where = f"{tmp_path / bad}:{line}:" if line else f"{tmp_path / bad}:"
    assert msg.startswith(where) and words in msg and "\n" not in msg, msg


@pytest.mark.parametrize("text, line, words", [
    ("a\tb\nc\n", 2, "2 fields"), ("a\tb\tc\n", 1, "found 3"), ("a\tb\n\t x\n", 2, "empty source"),
    ("a\t \n", 1, "empty target"), (b"a\tb\n\xff\tx\n", 2, "not UTF-8")])
def test_tsv_bad_input_names_file_and_line(tmp_path, text, line, words):
    p = tmp_path / "c.tsv"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataFormatError, match=rf"^{p}:{line}: .*{words}"):
        read_tsv(p)


# ------------------------------------------------------------------------------------- .po files
PO = r'''# comment
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"

#: file.py:1
msgid "Save"
msgstr "Guardar"

msgctxt "month"
msgid "May"
msgstr "Mayo"

#, fuzzy
msgid "Old"
msgstr "Viejo"

msgid "Untranslated"
msgstr ""

msgid "One item"
msgid_plural "%(n)s items"
msgstr[0] "Un elemento"
msgstr[1] "%(n)s elementos"

msgid ""
"A \"long\" "
"string"
msgstr "Una cadena "
"\"larga\""

#~ msgid "Gone"
#~ msgstr "Ido"
'''


def test_po_reader_keeps_translated_entries(tmp_path):
    p = tmp_path / "django.po"
    p.write_text(PO)
    got = [(q.src, q.tgt) for q in read_po(p)]
    assert got == [("Save", "Guardar"), ("May", "Mayo"), ("One item", "Un elemento"),
                   ('A "long" string', 'Una cadena "larga"')]


@pytest.mark.parametrize("bad, line, words", [
    ('msgid "Save"\nmsgstr "Guardar\n', 2, "broken .po string"),
    ('msgid "Save"\nmsgtxt "Guardar"\n', 2, "broken .po entry"),
    ('msgid "a"\nmsgstr "b"\n\nmsgid "Save"\n', 4, "has no msgstr"),
    ('"orphan"\n', 1, "continues no keyword"),
    ('msgid "a\\q"\nmsgstr "b"\n', 1, "unknown escape"),
    ('msgid "a"\nmsgid_plural "b"\nmsgid_plural "c"\nmsgstr[0] "x"\n', 3, "twice"),
])
def test_po_broken_entry_names_file_and_line(tmp_path, bad, line, words):
    p = tmp_path / "bad.po"
    p.write_text(bad)
    with pytest.raises(DataFormatError) as e:
        read_po(p)
    assert str(e.value).startswith(f"{p}:{line}: ") and words in str(e.value), str(e.value)


# -------------------------------------------------------------------------------- SWORD, align
def test_align_joins_by_key_not_position():
    a = {"Gen.1.1": "a1", "Gen.1.2": "a2", "Gen.1.3": "a3"}
    b = {"Gen.1.1": "b1", "Gen.1.3": "b3", "Gen.1.4": "b4"}  # b lacks 1.2: positions disagree
    assert align(a, b) == [Pair("a1", "b1", "Gen.1.1"), Pair("a3", "b3", "Gen.1.3")]


@needs_bible
def test_bible_verses_aligned_by_reference():
    en, es = (read_sword(m) for m in SWORD_MODULES)
    pairs = align(en, es)
    assert len(pairs) == len(set(en) & set(es)) > 30_000
    by_key = {p.key: p for p in pairs}
    assert by_key["Gen.1.1"].src == "In the beginning God created the heaven and the earth."
    assert by_key["John.3.16"].tgt.startswith("Porque de tal manera amó Dios al mundo")
    assert not any("<" in p.src or "<" in p.tgt for p in pairs)  # markup stripped
    nt = load_corpus("nt")
    assert nt[0].key == "Matt.1.1" and nt[-1].key == "Rev.22.21"
    assert len(load_corpus("ot")) + len(nt) == len(pairs)


def _copy_module(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "sword"
    (root / "mods.d").mkdir(parents=True)
    conf = next(c for c in Path(SWORD_ROOT, "mods.d").glob("*.conf")
                if f"[{name}]" in c.read_text(errors="replace"))
    shutil.copy(conf, root / "mods.d")
    data = next(line.split("=", 1)[1].strip() for line in conf.read_text().splitlines()
                if line.startswith("DataPath="))
    shutil.copytree(Path(SWORD_ROOT, data), root / data)
    return root / data


@needs_bible
def test_corrupt_sword_block_is_one_line_error(tmp_path):
    folder = _copy_module(tmp_path, "engKJV2006eb")
    text = folder / "nt.bzz"
    raw = bytearray(text.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\0" * 64  # inside a zlib stream
    text.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError) as e:
        read_sword("engKJV2006eb", str(tmp_path / "sword"))
    msg = str(e.value)
    assert msg.startswith(f"{text}: corrupt SWORD module") and "\n" not in msg, msg


@needs_bible
def test_truncated_sword_index_is_one_line_error(tmp_path):
    folder = _copy_module(tmp_path, "engKJV2006eb")
    table = folder / "ot.bzs"
    table.write_bytes(table.read_bytes()[:24])  # two block records: verses point past them
    with pytest.raises(DataFormatError, match=r"ot\.bzs: corrupt SWORD module .*past the block"):
        read_sword("engKJV2006eb", str(tmp_path / "sword"))


def test_missing_sword_module_says_how_to_install(tmp_path):
    with pytest.raises(ConfigError, match="apt-get install sword-text-kjv sword-text-sparv"):
        read_sword("engKJV2006eb", str(tmp_path))


@needs_django
def test_django_catalogues_are_the_union_of_the_po_files():
    pairs = load_corpus("django")
    assert len(pairs) > 800 and len({p.key.split(":")[0] for p in pairs}) >= 10
    assert ("Enter a valid value.", "Introduzca un valor válido.") in {(p.src, p.tgt)
                                                                       for p in pairs}


# ----------------------------------------------------------------------------- filters, splits
texts = st.text(alphabet="abcxyz ", min_size=1, max_size=12).filter(str.strip)


@given(st.lists(st.tuples(texts, texts, st.integers(0, 30)), min_size=12, max_size=60),
       st.integers(0, 2**32 - 1))
def test_split_shares_no_key_and_no_string(rows, seed):
    pairs = dedup([Pair(" ".join(s.split()), " ".join(t.split()), f"k{k}") for s, t, k in rows])
    if len(pairs) < 5:
        return
    parts = split(pairs, {"test": 2, "dev": 1}, np.random.default_rng(seed))
    assert sum(map(len, parts.values())) == len(pairs)
    for a in parts:
        for b in parts:
            if a < b:
                for field in ("src", "tgt", "key"):
                    assert not ({getattr(p, field) for p in parts[a]}
                                & {getattr(p, field) for p in parts[b]}), (a, b, field)


def test_dedup_keeps_first_of_each_string():
    ps = [Pair("a", "x", "1"), Pair("a", "y", "2"), Pair("b", "x", "3"), Pair("c", "z", "4")]
    assert dedup(ps) == [ps[0], ps[3]]


def test_length_filter_bounds_words_and_ratio():
    ps = [Pair("a b c", "x", "1"), Pair("a b", "x y", "2"), Pair("a " * 9, "x " * 9, "3")]
    assert length_filter(ps, max_words=8, max_ratio=2.0) == [ps[1]]


def test_parse_pair_rejects_malformed():
    assert parse_pair("ot>nt") == ("ot", "nt")
    for bad in ("ot", "ot>", ">nt", "a>b>c"):
        with pytest.raises(ConfigError, match="'OOD>ID'"):
            parse_pair(bad)


def _cli_error_line(store, pair: str) -> str:
    """`theorylab run nmt-adapt --quick` on domain pair ``pair``: it must exit non-zero with
    exactly one line on stderr, which is returned."""
    r = subprocess.run([sys.executable, "-m", "theorylab.cli", "run", "nmt-adapt", "--quick",
                        "--store", str(store), "--set", f'pairs=["{pair}"]'],
                       capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    return lines[0]


def test_cli_bad_bitext_exits_non_zero_writes_nothing(tmp_path):
    (tmp_path / "a.en").write_text("a\nb\nc\n")
    (tmp_path / "a.es").write_text("x\ny\n")
    store = tmp_path / "s.sqlite"
    line = _cli_error_line(store, f"{tmp_path}/a.en,{tmp_path}/a.es>django")
    assert f"{tmp_path / 'a.en'}:3:" in line and "not line-aligned" in line
    assert not store.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.en", "a.es"]


@needs_bible
def test_cli_corrupt_sword_copy_exits_non_zero_writes_nothing(tmp_path):
    folder = _copy_module(tmp_path, "engKJV2006eb")
    _copy_module(tmp_path / "es", "spaRV1909eb")  # a second root: move it beside the first
    es_conf = next((tmp_path / "es" / "sword" / "mods.d").glob("*.conf"))
    shutil.copy(es_conf, tmp_path / "sword" / "mods.d")
    shutil.copytree(tmp_path / "es" / "sword" / "modules" / "texts" / "ztext" / "spaRV1909eb",
                    tmp_path / "sword" / "modules" / "texts" / "ztext" / "spaRV1909eb")
    text = folder / "ot.bzz"
    raw = bytearray(text.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\0" * 64  # inside a block that verses use
    text.write_bytes(bytes(raw))
    store = tmp_path / "s.sqlite"
    line = _cli_error_line(store, f"bible@{tmp_path / 'sword'}>django")
    assert line.startswith(f"error: {text}: corrupt SWORD module"), line
    assert not store.exists()
