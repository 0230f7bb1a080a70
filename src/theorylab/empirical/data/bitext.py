r"""Parallel text: TSV and Moses-style bitext files, gettext ``.po`` catalogues, SWORD Bibles.

Every reader returns a list of :class:`Pair` (source, target, key); the key names where the pair
came from (``"Gen.1.1"`` for a verse, ``"FILE:LINE"`` for a line or a catalogue entry) and is what
:func:`align` joins on. Text is whitespace-normalised (runs of white space become one space,
ends stripped).

* **TSV**: one pair per line, ``source<TAB>target``.
* **Moses**: two files, line i of one the translation of line i of the other.
* **.po** (gettext): ``msgid`` → ``msgstr`` (``msgstr[0]`` for a plural entry); the header,
  untranslated, fuzzy and obsolete (``#~``) entries are skipped.
* **SWORD** ``zText`` modules (e.g. Debian ``sword-text-kjv``, ``sword-text-sparv``), read with
  ``pysword`` (markup stripped, ``clean=True``), every verse keyed ``Book.chapter.verse``.
  :func:`align` pairs two Bibles by that key, never by position (versifications differ in which
  verses they hold). pysword decompresses a whole block per verse and reads a corrupt block as
  empty text; :func:`read_sword` decompresses each block once and checks it against its recorded
  size, so a corrupt module is an error, not a silently empty Bible.

Bad input is a one-line :class:`~theorylab.errors.DataFormatError` naming the file (and the
1-based line where there is one): bytes that are not UTF-8, a TSV line without exactly one tab,
an empty source or target side, Moses files of different line counts, a ``.po`` line that is not
a keyword, comment or quoted string (or a string without its closing quote, an entry without
``msgstr``), a corrupt or incomplete SWORD module; a file without any pair is one too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from theorylab.empirical.data.conll import read_utf8
from theorylab.errors import ConfigError, DataFormatError

__all__ = ["Pair", "normalize", "read_tsv", "read_moses", "read_po", "read_sword", "align",
           "SWORD_ROOT", "sword_available"]

#: where Debian's sword-text-* packages put their modules (mods.d/ and modules/)
SWORD_ROOT = "/usr/share/sword"
_WS = re.compile(r"\s+")


class Pair(NamedTuple):
    """One translation pair and where it came from."""

    src: str
    tgt: str
    key: str


def normalize(text: str) -> str:
    """``text`` with runs of white space as one space and the ends stripped (SWORD's pilcrow
    paragraph marks removed)."""
    return _WS.sub(" ", text.replace("\u00b6", " ")).strip()


def _checked(path: Path, line: int, src: str, tgt: str, key: str, what=("source", "target")
             ) -> Pair:
    s, t = normalize(src), normalize(tgt)
    for side, text in zip(what, (s, t), strict=True):
        if not text:
            raise DataFormatError(f"empty {side} side", path, line)
    return Pair(s, t, key)


def _nonempty(pairs: list[Pair], path) -> list[Pair]:
    if not pairs:
        raise DataFormatError("no sentence pairs", path)
    return pairs


def read_tsv(path: str | Path) -> list[Pair]:
    """Pairs of a ``source<TAB>target`` file (blank lines skipped)."""
    path = Path(path)
    out = []
    for no, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataFormatError(f"expected 'source<TAB>target' (2 fields), found {len(fields)}",
                                  path, no)
        out.append(_checked(path, no, *fields, key=f"{path.name}:{no}"))
    return _nonempty(out, path)


def read_moses(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Pairs of two line-aligned files (Moses style: line i translates line i)."""
    sp, tp = Path(src_path), Path(tgt_path)
    src, tgt = read_utf8(sp).splitlines(), read_utf8(tp).splitlines()
    if len(src) != len(tgt):
        short, long_, n = (sp, tp, len(src)) if len(src) < len(tgt) else (tp, sp, len(tgt))
        raise DataFormatError(f"has {max(len(src), len(tgt))} lines but {short} has {n}: "
                              "the files are not line-aligned", long_, n + 1)
    out = []
    for no, (s, t) in enumerate(zip(src, tgt, strict=True), start=1):
        if not normalize(s):
            raise DataFormatError(f"empty source side (its target is {tp}:{no})", sp, no)
        if not normalize(t):
            raise DataFormatError(f"empty target side (its source is {sp}:{no})", tp, no)
        out.append(Pair(normalize(s), normalize(t), f"{sp.name}:{no}"))
    return _nonempty(out, sp)


# ------------------------------------------------------------------------------------ .po files
_PO_KEY = re.compile(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*)$')
_PO_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


def _po_string(path: Path, no: int, text: str) -> str:
    m = _PO_STR.fullmatch(text.strip())
    if m is None:
        raise DataFormatError(f"broken .po string {text.strip()[:40]!r} (a quoted string "
                              "expected)", path, no)

    def unescape(e: re.Match) -> str:
        c = e.group(1)
        if c not in _ESCAPES:
            raise DataFormatError(f"unknown escape '\\{c}' in a .po string", path, no)
        return _ESCAPES[c]
    return re.sub(r"\\(.)", unescape, m.group(1))


def read_po(path: str | Path) -> list[Pair]:
    """Translated entries of a gettext catalogue: (msgid, msgstr) pairs."""
    path = Path(path)
    entries: list[dict] = []
    cur: dict | None = None
    last: str | None = None
    fuzzy = False
    for no, raw in enumerate(read_utf8(path).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                fuzzy = True
            continue
        if line.startswith('"'):
            if cur is None or last is None:
                raise DataFormatError("a string continues no keyword", path, no)
            cur[last] += _po_string(path, no, line)
            continue
        m = _PO_KEY.fullmatch(line)
        if m is None:
            raise DataFormatError(f"broken .po entry: {line[:40]!r} is not a keyword, comment "
                                  "or quoted string", path, no)
        key, value = m.group(1), _po_string(path, no, m.group(2))
        if key in ("msgctxt", "msgid") and (cur is None or "msgstr" in cur or
                                             any(k.startswith("msgstr") for k in cur)):
            if cur is not None:
                entries.append(cur)
            cur = {"line": no, "fuzzy": fuzzy}
            fuzzy = False
        if cur is None:
            raise DataFormatError(f"{key} before any msgid", path, no)
        if key in cur:
            raise DataFormatError(f"{key} twice in one entry", path, no)
        cur[key] = value
        last = key
    if cur is not None:
        entries.append(cur)
    out = []
    for e in entries:
        if "msgid" not in e:
            raise DataFormatError("entry without msgid", path, e["line"])
        strs = [k for k in e if k.startswith("msgstr")]
        if not strs:
            raise DataFormatError(f"entry {e['msgid'][:30]!r} has no msgstr", path, e["line"])
        tgt = e.get("msgstr", e.get("msgstr[0]", ""))
        if e["fuzzy"] or not e["msgid"] or not normalize(tgt):
            continue  # fuzzy, the header, untranslated
        if not normalize(e["msgid"]):
            continue
        ctx = f"{e['msgctxt']}|" if "msgctxt" in e else ""
        out.append(Pair(normalize(e["msgid"]), normalize(tgt), f"{path}:{ctx}{e['line']}"))
    return _nonempty(out, path)


# ---------------------------------------------------------------------------------- SWORD Bibles
def sword_available(modules: Iterable[str], root: str = SWORD_ROOT) -> bool:
    """Whether ``root`` holds every SWORD module in ``modules``."""
    return all(_module_conf(root, m) is not None for m in modules)


def _module_conf(root: str, name: str) -> Path | None:
    folder = Path(root) / "mods.d"
    if not folder.is_dir():
        return None
    for conf in folder.glob("*.conf"):
        try:
            head = conf.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if re.search(rf"^\[{re.escape(name)}\]\s*$", head, re.M):
            return conf
    return None


def read_sword(name: str, root: str = SWORD_ROOT) -> dict[str, str]:
    """Every non-empty verse of SWORD Bible module ``name`` under ``root``: ``{"Gen.1.1": text}``
    in canon order (Old Testament, then New)."""
    import struct

    from pysword.modules import SwordModules
    if _module_conf(root, name) is None:
        raise ConfigError(f"no SWORD module {name!r} under {root} (install the Debian packages: "
                          "apt-get install sword-text-kjv sword-text-sparv).")
    try:
        mods = SwordModules(root)
        mods.parse_modules()
        bible = mods.get_bible_from_module(name)
    except Exception as e:  # noqa: BLE001 - pysword raises bare errors on a broken conf
        raise DataFormatError(f"SWORD module {name!r} cannot be opened ({e})",
                              _module_conf(root, name)) from None
    folder = Path(bible._module_path)
    if not hasattr(bible, "_decompress"):
        raise ConfigError(f"SWORD module {name!r} is not a zText module (the reader handles "
                          "the compressed Bibles of Debian's sword-text-* packages).")
    blocks: dict[tuple[str, int], bytes] = {}

    def block(testament: str, buf_num: int) -> bytes:
        # pysword 0.2.8's zText layout: .bzs holds (offset, size, uncompressed size) per block
        if (testament, buf_num) in blocks:
            return blocks[testament, buf_num]
        t = bible._testaments[testament]
        where = Path(t.text_name.name)
        if (buf_num + 1) * 12 > t.b2l_size:
            raise DataFormatError(f"corrupt SWORD module {name!r}: verse index points at block "
                                  f"{buf_num}, past the block table", t.b2l_name.name)
        t.b2l_name.seek(buf_num * 12)
        offset, size, uc_size = struct.unpack("<III", t.b2l_name.read(12))
        if offset + size > t.text_size:
            raise DataFormatError(f"corrupt SWORD module {name!r}: block {buf_num} ends at byte "
                                  f"{offset + size}, past the end of the file", where)
        t.text_name.seek(offset)
        data = bible._decompress(t.text_name.read(size))
        if len(data) != uc_size:
            raise DataFormatError(f"corrupt SWORD module {name!r}: block {buf_num} does not "
                                  f"decompress to its recorded {uc_size} bytes", where)
        blocks[testament, buf_num] = data
        return data

    rec = bible._verse_record_size
    out: dict[str, str] = {}
    for testament, books in bible.get_structure().get_books().items():
        if testament not in bible._testaments:
            raise DataFormatError(f"SWORD module {name!r} lacks its {testament!r} files",
                                  folder)
        t = bible._testaments[testament]
        for book in books:
            refs = [(c, v) for c, n in enumerate(book.chapter_lengths, start=1)
                    for v in range(1, n + 1)]
            idx = bible._structure.ref_to_indicies(books=[book.osis_name])[testament]
            for (c, v), i in zip(refs, idx, strict=True):
                if rec * (i + 1) > t.v2b_size:
                    continue
                t.v2b_name.seek(rec * i)
                buf, start, length = struct.unpack(bible._verse_record_format,
                                                   t.v2b_name.read(rec))
                if length == 0:
                    continue
                data = block(testament, buf)
                if start + length > len(data):
                    raise DataFormatError(f"corrupt SWORD module {name!r}: verse {book.osis_name}"
                                          f".{c}.{v} lies past the end of its block",
                                          t.v2b_name.name)
                text = bible._decode_bytes(data[start:start + length])
                if "<" in text and bible._cleaner is not None:
                    text = bible._cleaner.clean(text)
                text = normalize(text)
                if text:
                    out[f"{book.osis_name}.{c}.{v}"] = text
    if not out:
        raise DataFormatError(f"SWORD module {name!r} holds no verse text", folder)
    return out


def align(src: dict[str, str], tgt: dict[str, str]) -> list[Pair]:
    """Pairs of the keys present in both (in ``src``'s order): verses joined by reference."""
    return [Pair(s, tgt[k], k) for k, s in src.items() if k in tgt]
