"""Protein sequence data: labelled TSVs (shipped by ``aaanalysis``), labelled FASTA, cluster split.

Readers return a :class:`pandas.DataFrame` with columns ``entry``, ``sequence``, ``label``
(one row per protein). Malformed input raises :class:`~theorylab.errors.DataFormatError`
naming the file and the 1-based line. Files are UTF-8 text; a byte-order mark is skipped, and a
gzip-compressed file (``.fasta.gz`` as UniProt serves them; recognised by its magic bytes, not
its name) is read transparently. Other binary files, and text in another encoding, are one-line
errors.

The split keeps near-duplicate sequences on one side: two sequences are linked when the
Jaccard index of their k-mer sets,

.. math:: J(A, B) = |K_k(A) \\cap K_k(B)| \\, / \\, |K_k(A) \\cup K_k(B)|,

is at least ``threshold``; the connected components (single linkage) are the clusters, and
whole clusters are dealt to test, validation and train.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from theorylab.errors import ConfigError, DataFormatError, InputError
from theorylab.seeding import rng_for
from theorylab.validation import check_choice, check_int, check_real

__all__ = ["AMINO_ACIDS", "SHIPPED_SETS", "shipped_path", "load_shipped", "read_labelled_tsv",
           "read_fasta", "kmer_sets", "kmer_clusters", "Split", "cluster_split"]

#: Letters accepted in a sequence: the 20 standard residues plus the IUPAC extras ESM knows.
AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWYBZXUO")

#: aaanalysis benchmark sets usable here (SEQ_LOCATION ships corrupted: see DATA.md).
SHIPPED_SETS = ("SOLUBLE", "CAPSID", "TAIL", "DISULFIDE", "AMYLO")

_COLUMNS = ("entry", "sequence", "label")


def _check_sequence(seq: str, path, line: int) -> str:
    seq = seq.strip().upper()
    if not seq:
        raise DataFormatError("empty sequence", path, line)
    bad = set(seq) - AMINO_ACIDS
    if bad:
        raise DataFormatError(f"sequence has non-amino-acid letter(s) {''.join(sorted(bad))!r}",
                              path, line)
    return seq


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of a UTF-8 text file, gzip or not.

    A byte-order mark is dropped; undecodable bytes, NUL bytes (a binary file) and a damaged gzip
    stream raise :class:`DataFormatError` naming the line.
    """
    with path.open("rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    lineno = 0
    try:
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if b"\x00" in raw:
                    raise DataFormatError("binary file (NUL byte), not a text file", path, lineno)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataFormatError(
                        f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}): "
                        "a binary file, or text in another encoding (save it as UTF-8)",
                        path, lineno) from None
                yield lineno, text.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataFormatError(f"damaged gzip file ({exc or type(exc).__name__})",
                              path, lineno + 1) from None


# ----------------------------------------------------------------------------- TSV
def read_labelled_tsv(path, *, id_col: str = "entry", seq_col: str = "sequence",
                      label_col: str = "label", invalid: str = "error") -> pd.DataFrame:
    """Read a tab-separated file with a header naming an id, a sequence and an integer label.

    This is the format of ``aaanalysis/_data/benchmarks/SEQ_*.tsv`` (columns entry, gene,
    sequence, label); extra columns are ignored. ``invalid="drop"`` skips rows whose sequence
    has letters outside :data:`AMINO_ACIDS` (e.g. the ``!`` chain breaks of SEQ_DISULFIDE)
    instead of raising.

    Raises
    ------
    DataFormatError
        Missing file or column, wrong field count, empty/invalid sequence, non-integer label.
    """
    check_choice("read_labelled_tsv", "invalid", invalid, ("error", "drop"))
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", path)
    rows: list[tuple[str, str, int]] = []
    lines = _lines(path)
    _, first = next(lines, (1, ""))
    header = first.split("\t")
    cols = {}
    for name in (id_col, seq_col, label_col):
        if name not in header:
            raise DataFormatError(f"header lacks column '{name}' (has {header})", path, 1)
        cols[name] = header.index(name)
    for lineno, text in lines:
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != len(header):
            raise DataFormatError(
                f"expected {len(header)} tab-separated fields, got {len(fields)}", path, lineno)
        try:
            seq = _check_sequence(fields[cols[seq_col]], path, lineno)
        except DataFormatError:
            if invalid == "drop" and fields[cols[seq_col]].strip():
                continue
            raise
        label_text = fields[cols[label_col]].strip()
        try:
            label = int(label_text)
        except ValueError:
            raise DataFormatError(f"label must be an integer, got {label_text!r}",
                                  path, lineno) from None
        rows.append((fields[cols[id_col]].strip(), seq, label))
    if not rows:
        raise DataFormatError("no data rows", path)
    return pd.DataFrame(rows, columns=list(_COLUMNS))


def shipped_path(name: str) -> Path:
    """Path of the shipped ``SEQ_<NAME>.tsv`` of the installed ``aaanalysis`` package.

    Located without importing ``aaanalysis`` (its import pulls heavy dependencies), so
    ``pip install --no-deps aaanalysis==1.1.0`` is enough.
    """
    key = str(name).upper()
    if key not in SHIPPED_SETS:
        raise ConfigError(f"'name' must be one of {', '.join(SHIPPED_SETS)}. Got {name!r}.")
    spec = importlib.util.find_spec("aaanalysis")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the protein benchmark sets need the 'aaanalysis' package: "
                          "pip install --no-deps aaanalysis==1.1.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "_data" / "benchmarks" / f"SEQ_{key}.tsv"
    if not path.is_file():
        raise ConfigError(f"aaanalysis is installed but lacks {path.name} (expected {path}).")
    return path


def load_shipped(name: str) -> pd.DataFrame:
    """The shipped benchmark set ``name`` (e.g. ``"SOLUBLE"``) as entry/sequence/label rows.

    Rows with non-amino-acid letters are dropped (10 rows of SEQ_DISULFIDE carry ``!``).
    """
    return read_labelled_tsv(shipped_path(name), invalid="drop")


# ----------------------------------------------------------------------------- FASTA
_UNIPROT_ID = re.compile(r"^(?:sp|tr)\|([^|\s]+)\|")


def read_fasta(path, *, label_key: str | None = "EC", level: int | None = None,
               require_label: bool = True) -> pd.DataFrame:
    """Read a FASTA file whose headers carry a ``KEY=value`` label (UniProt style).

    Example header: ``>sp|P00330|ADH1_YEAST Alcohol dehydrogenase 1 OS=Saccharomyces OX=559292
    EC=1.1.1.1``. The entry is the UniProt accession (``P00330``) or else the first word; the
    label is the value of ``label_key``; for EC numbers ``level`` keeps the first ``level``
    fields (``level=1`` → the enzyme class ``"1"``).

    Raises
    ------
    DataFormatError
        Sequence before any header, empty header or sequence, invalid letters, missing label
        (when ``require_label``), duplicate entry.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", path)
    if level is not None:
        level = check_int("read_fasta", "level", level, lo=1)
    key_re = re.compile(rf"(?:^|\s){re.escape(label_key)}=(\S+)") if label_key else None
    records: list[list] = []  # [entry, seq_parts, label, header_line]
    seen: dict[str, int] = {}

    def finish(rec):
        if rec is None:
            return
        seq = _check_sequence("".join(rec[1]), path, rec[3])
        records.append((rec[0], seq, rec[2]))

    current = None
    for lineno, raw in _lines(path):
        text = raw.strip()
        if not text or text.startswith(";"):
            continue
        if text.startswith(">"):
            finish(current)
            header = text[1:].strip()
            if not header:
                raise DataFormatError("empty FASTA header", path, lineno)
            m = _UNIPROT_ID.match(header)
            entry = m.group(1) if m else header.split()[0]
            if entry in seen:
                raise DataFormatError(f"duplicate entry {entry!r} (first at line "
                                      f"{seen[entry]})", path, lineno)
            seen[entry] = lineno
            label = None
            if key_re is not None:
                lm = key_re.search(header)
                if lm:
                    label = lm.group(1).rstrip(";,")
                    if level is not None:
                        label = ".".join(label.split(".")[:level])
                elif require_label:
                    raise DataFormatError(f"header lacks '{label_key}=...'", path, lineno)
            current = [entry, [], label, lineno]
        else:
            if current is None:
                raise DataFormatError("sequence line before any '>' header", path, lineno)
            current[1].append(text.replace(" ", ""))
    finish(current)
    if not records:
        raise DataFormatError("no FASTA records", path)
    return pd.DataFrame(records, columns=list(_COLUMNS))


# ----------------------------------------------------------------------------- split
def kmer_sets(sequences: Sequence[str], k: int) -> list[frozenset]:
    """k-mer set of each sequence; a sequence shorter than k is its own single 'k-mer'."""
    out = []
    for s in sequences:
        if len(s) < k:
            out.append(frozenset([s]))
        else:
            out.append(frozenset(s[i:i + k] for i in range(len(s) - k + 1)))
    return out


def kmer_clusters(sequences: Sequence[str], k: int = 5, threshold: float = 0.3,
                  block: int = 2048) -> np.ndarray:
    """Cluster ids (0..C-1, in order of first appearance) of single-linkage k-mer Jaccard clusters.

    Sparse implementation: X is the (n, #k-mers) 0/1 incidence matrix, the intersections are
    X Xᵀ (computed in row blocks), |A ∪ B| = |A| + |B| − |A ∩ B|.
    """
    k = check_int("kmer_clusters", "k", k, lo=1)
    threshold = check_real("kmer_clusters", "threshold", threshold, lo=0, hi=1, lo_open=True)
    n = len(sequences)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sets = kmer_sets(sequences, k)
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for s in sets:
        indices.extend(vocab.setdefault(m, len(vocab)) for m in s)
        indptr.append(len(indices))
    X = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                      shape=(n, len(vocab)))
    sizes = np.diff(X.indptr).astype(np.float64)
    XT = X.T.tocsc()
    rows, cols = [], []
    for start in range(0, n, block):
        inter = (X[start:start + block] @ XT).tocoo()
        i = inter.row + start
        keep = i < inter.col
        i, j, c = i[keep], inter.col[keep], inter.data[keep].astype(np.float64)
        jac = c / (sizes[i] + sizes[j] - c)
        hit = jac >= threshold
        rows.append(i[hit])
        cols.append(j[hit])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    graph = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # renumber by first appearance so ids do not depend on scipy's internal order
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels].astype(np.int64)


class Split(NamedTuple):
    """Row indices of each part (sorted); no k-mer cluster spans two parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def cluster_split(sequences: Sequence[str], *, test_frac: float = 0.2, val_frac: float = 0.1,
                  k: int = 5, threshold: float = 0.3, seed: int = 0) -> Split:
    """Deterministic train/val/test split that keeps each k-mer Jaccard cluster on one side.

    Clusters are visited in a seeded random order; each goes to test until test holds
    ``test_frac`` of the sequences, then to validation until ``val_frac``, then to train.
    """
    test_frac = check_real("cluster_split", "test_frac", test_frac, lo=0, hi=1, hi_open=True)
    val_frac = check_real("cluster_split", "val_frac", val_frac, lo=0, hi=1, hi_open=True)
    if test_frac + val_frac >= 1:
        raise ConfigError(f"'test_frac' + 'val_frac' of cluster_split must be < 1. "
                          f"Got {test_frac + val_frac}.")
    n = len(sequences)
    if n < 3:
        raise InputError(f"'sequences' of cluster_split must hold at least 3 sequences. Got {n}.")
    labels = kmer_clusters(sequences, k=k, threshold=threshold)
    n_clusters = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_clusters)
    order = rng_for(seed, "cluster_split").permutation(n_clusters)
    part = np.empty(n_clusters, dtype=np.int8)  # 0 train, 1 val, 2 test
    n_test = n_val = 0
    for cl in order:
        if n_test < test_frac * n:
            part[cl], n_test = 2, n_test + counts[cl]
        elif n_val < val_frac * n:
            part[cl], n_val = 1, n_val + counts[cl]
        else:
            part[cl] = 0
    where = part[labels]
    return Split(*(np.flatnonzero(where == p) for p in (0, 1, 2)))
