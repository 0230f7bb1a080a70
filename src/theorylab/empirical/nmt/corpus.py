r"""The corpora of the NMT domain-adaptation study: named corpora, filters and leak-free splits.

A *corpus spec* names English→Spanish parallel text:

* ``"bible"``, ``"ot"``, ``"nt"``: the King James Version (SWORD ``engKJV2006eb``) and the
  Reina-Valera 1909 (``spaRV1909eb``), verses aligned by book/chapter/verse
  (:func:`~theorylab.empirical.data.bitext.align`); the whole Bible, the Old or the New
  Testament (Debian ``sword-text-kjv`` and ``sword-text-sparv``); ``"bible@DIR"`` (and
  ``ot@DIR``, ``nt@DIR``) reads those modules from the SWORD folder DIR instead (a user's
  copy: read, and checked, when the study is configured);
* ``"django"``: Django's Spanish UI catalogues (``django/conf/locale/es`` and every
  ``django/contrib/*/locale/es`` ``django.po``, their union), the installed ``django`` package;
* a path: ``*.tsv`` (``source<TAB>target``), ``*.po``, or ``SRC,TGT`` (two Moses files).

A *domain pair* ``"OOD>ID"`` (e.g. ``"ot>nt"``, the mild shift; ``"bible>django"``, the strong
one) names the out-of-domain and in-domain corpora.

Before splitting, :func:`dedup` keeps the first pair of each source string and each target
string, so that no string appears on either side of two pairs; :func:`split` then deals out
disjoint random parts. Hence no verse (key) and no string is shared between train and test.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from theorylab.empirical.data.bitext import (
    SWORD_ROOT,
    Pair,
    align,
    read_moses,
    read_po,
    read_sword,
    read_tsv,
)
from theorylab.errors import ConfigError

__all__ = ["BUILTIN", "SWORD_MODULES", "INSTALL_HINT", "load_corpus", "parse_pair", "dedup",
           "length_filter", "split", "django_po_files", "builtin_missing", "is_builtin"]

BUILTIN = ("bible", "ot", "nt", "django")
SWORD_MODULES = ("engKJV2006eb", "spaRV1909eb")
INSTALL_HINT = ("install them with `apt-get install sword-text-kjv sword-text-sparv` (the Bible) "
                "and `pip install -e .[nmt]` (django's catalogues)")
#: the first book of the New Testament in the canon order of read_sword
_NT_FIRST = "Matt"


def is_builtin(spec: str) -> bool:
    return spec in BUILTIN


def django_po_files() -> list[Path]:
    """The Spanish ``django.po`` catalogues of the installed Django (empty if none)."""
    import importlib.util
    found = importlib.util.find_spec("django")
    if found is None or found.origin is None:
        return []
    root = Path(found.origin).parent
    return sorted([*root.glob("conf/locale/es/LC_MESSAGES/django.po"),
                   *root.glob("contrib/*/locale/es/LC_MESSAGES/django.po")])


def builtin_missing(specs: Sequence[str], root: str = SWORD_ROOT) -> str | None:
    """Why the built-in corpora in ``specs`` cannot be read here (None if they can)."""
    from theorylab.empirical.data.bitext import sword_available
    need_bible = any(s in ("bible", "ot", "nt") for s in specs)
    if need_bible and not sword_available(SWORD_MODULES, root):
        return f"the SWORD modules {', '.join(SWORD_MODULES)} are not under {root}"
    if "django" in specs and not django_po_files():
        return "the django package (its Spanish .po catalogues) is not installed"
    return None


@functools.cache
def _bible(root: str) -> tuple[Pair, ...]:
    return tuple(align(*(read_sword(m, root) for m in SWORD_MODULES)))


def load_corpus(spec: str, root: str = SWORD_ROOT) -> list[Pair]:
    """The pairs a corpus spec names (see the module docstring)."""
    name, at, folder = spec.partition("@")
    if at and name in ("bible", "ot", "nt"):
        if not Path(folder).is_dir():
            raise ConfigError(f"SWORD folder {folder!r} of corpus {spec!r} does not exist.")
        spec, root = name, folder
    if spec in ("bible", "ot", "nt"):
        pairs = list(_bible(root))
        first_nt = next(i for i, p in enumerate(pairs) if p.key.startswith(_NT_FIRST + "."))
        return {"bible": pairs, "ot": pairs[:first_nt], "nt": pairs[first_nt:]}[spec]
    if spec == "django":
        files = django_po_files()
        if not files:
            raise ConfigError(f"corpus 'django' needs the django package; {INSTALL_HINT}.")
        return [p for f in files for p in read_po(f)]
    if "," in spec:
        src, tgt = spec.split(",", 1)
        for f in (src, tgt):
            if not Path(f).is_file():
                raise ConfigError(f"Moses file {f!r} of corpus {spec!r} does not exist.")
        return read_moses(src, tgt)
    path = Path(spec)
    if path.suffix in (".tsv", ".po"):
        if not path.is_file():
            raise ConfigError(f"corpus file {spec!r} does not exist.")
        return read_tsv(path) if path.suffix == ".tsv" else read_po(path)
    raise ConfigError(f"a corpus must be one of {', '.join(BUILTIN)}, a .tsv or .po file, or "
                      f"'SRC,TGT' (two Moses files). Got {spec!r}.")


def parse_pair(pair: str) -> tuple[str, str]:
    """``"OOD>ID"`` → (out-of-domain spec, in-domain spec)."""
    parts = pair.split(">")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"a domain pair must be 'OOD>ID' (e.g. 'ot>nt', 'bible>django'). "
                          f"Got {pair!r}.")
    return parts[0], parts[1]


def dedup(pairs: Sequence[Pair]) -> list[Pair]:
    """The pairs whose source and target strings (and key) were not seen in an earlier pair."""
    seen_s, seen_t, seen_k, out = set(), set(), set(), []
    for p in pairs:
        if p.src in seen_s or p.tgt in seen_t or p.key in seen_k:
            continue
        seen_s.add(p.src)
        seen_t.add(p.tgt)
        seen_k.add(p.key)
        out.append(p)
    return out


def length_filter(pairs: Sequence[Pair], max_words: int, max_ratio: float) -> list[Pair]:
    """Pairs with at most ``max_words`` words a side and a word-count ratio
    max(|s|, |t|) / min(|s|, |t|) of at most ``max_ratio``."""
    out = []
    for p in pairs:
        a, b = len(p.src.split()), len(p.tgt.split())
        if max(a, b) <= max_words and max(a, b) <= max_ratio * min(a, b):
            out.append(p)
    return out


def split(pairs: Sequence[Pair], sizes: dict[str, int], rng: np.random.Generator,
          rest: str = "train", max_rest: int | None = None) -> dict[str, list[Pair]]:
    """Disjoint random parts of ``pairs``: ``sizes[name]`` pairs each (in the dict's order),
    the remainder (at most ``max_rest``) as ``rest``."""
    need = sum(sizes.values())
    if need >= len(pairs):
        raise ConfigError(f"the corpus has {len(pairs)} pairs after filtering: too few for parts "
                          f"of {need} ({', '.join(f'{k} {v}' for k, v in sizes.items())}) "
                          f"and a {rest} part.")
    order = rng.permutation(len(pairs))
    out, at = {}, 0
    for name, n in sizes.items():
        out[name] = [pairs[i] for i in order[at:at + n]]
        at += n
    tail = order[at:] if max_rest is None else order[at:at + max_rest]
    out[rest] = [pairs[i] for i in tail]
    return out
