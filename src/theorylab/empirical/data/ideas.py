"""A creativity study's ideas as a table: one row per idea, (participant, condition, prompt, idea).

The format of Anderson, Shah & Kreminski (C&C 2024) generalised: each participant writes ideas
(free text) for prompts (e.g. "alternative uses of a brick") under conditions (e.g. ``chatgpt``
vs ``oblique``). CSV (UTF-8, header row) or Parquet; extra columns are kept. Every problem is a
one-line :class:`~theorylab.errors.DataFormatError` naming the file (and the line for CSV):
missing columns, empty ideas or keys, non-UTF-8 bytes, malformed CSV, and, for a within-subject
design, a participant seen in one condition only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from theorylab.errors import DataFormatError
from theorylab.validation import check_choice

__all__ = ["COLUMNS", "DESIGNS", "read_ideas", "validate_ideas"]

COLUMNS = ("participant", "condition", "prompt", "idea")
DESIGNS = ("within", "between")


def _csv_line(text: str, row_index: int) -> int:
    """Line number (1-based, header = 1) of data row ``row_index`` (0-based), quoted newlines
    counted."""
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    for i, _ in enumerate(r for r in reader if r):  # blank lines hold no row
        if i == row_index:
            return reader.line_num
    return row_index + 2


def _read_csv(path: Path) -> tuple[pd.DataFrame, str]:
    raw = path.read_bytes()
    if b"\0" in raw:
        raise DataFormatError("binary file (NUL byte), not a UTF-8 CSV", path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFormatError(f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                              path, line) from None
    if not text.strip():
        raise DataFormatError("empty file (no header row)", path)
    reader = csv.reader(io.StringIO(text), strict=True)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row and rows and len(row) != len(rows[0]):
                raise DataFormatError(f"row has {len(row)} fields, the header {len(rows[0])} "
                                      "(unquoted comma in an idea?)", path, reader.line_num)
            if row:
                rows.append(row)
    except csv.Error as exc:
        raise DataFormatError(f"malformed CSV ({exc})", path, reader.line_num) from None
    return pd.DataFrame(rows[1:], columns=rows[0], dtype=str), text


def read_ideas(path: str | Path, design: str = "within") -> pd.DataFrame:
    """Read and validate a study's ideas (``.csv`` or ``.parquet``); columns :data:`COLUMNS`
    (str), extra columns kept, the key columns stripped of surrounding blanks."""
    check_choice("read_ideas", "design", design, DESIGNS)
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", path)
    text = None
    if path.suffix.lower() == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
            raise DataFormatError(f"unreadable Parquet ({type(exc).__name__})", path) from None
    else:
        df, text = _read_csv(path)
    return validate_ideas(df, design, path=path, text=text)


def validate_ideas(df: pd.DataFrame, design: str = "within", path: str | Path | None = None,
                   text: str | None = None) -> pd.DataFrame:
    """Check a table of ideas (see module doc); ``text``: the CSV's text, to name lines."""
    check_choice("validate_ideas", "design", design, DESIGNS)
    where = path if path is not None else "<table>"
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataFormatError(f"missing column(s) {', '.join(missing)}; need "
                              f"{', '.join(COLUMNS)}, got {', '.join(map(str, df.columns))}", where)
    df = df.reset_index(drop=True).copy()
    for c in COLUMNS:
        col = df[c]
        if col.isna().any() or not all(isinstance(v, str) for v in col):
            bad = int(next(i for i, v in enumerate(col) if not isinstance(v, str) or pd.isna(v)))
            raise DataFormatError(f"column {c!r} must hold text; row {bad + 1} holds {col[bad]!r}",
                                  where, _csv_line(text, bad) if text else None)
        df[c] = col.str.strip()
        empty = df[c] == ""
        if empty.any():
            bad = int(empty.to_numpy().argmax())
            what = "empty idea" if c == "idea" else f"empty {c}"
            raise DataFormatError(f"{what} (row {bad + 1})", where,
                                  _csv_line(text, bad) if text else None)
    if df.empty:
        raise DataFormatError("no ideas (header only)", where)
    conditions = sorted(df.condition.unique())
    if len(conditions) != 2:
        raise DataFormatError(f"need exactly 2 conditions to compare; got {len(conditions)}: "
                              f"{', '.join(conditions)}", where)
    n_cond = df.groupby("participant").condition.nunique()
    if design == "within" and (n_cond < 2).any():
        p = str(n_cond[n_cond < 2].index[0])
        only = df.loc[df.participant == p, "condition"].iloc[0]
        raise DataFormatError(f"participant {p!r} appears in condition {only!r} only; a "
                              f"within-subject design needs every participant in both "
                              f"({int((n_cond < 2).sum())} such participant(s))", where)
    if design == "between" and (n_cond > 1).any():
        p = str(n_cond[n_cond > 1].index[0])
        raise DataFormatError(f"participant {p!r} appears in both conditions; a between-subject "
                              "design needs each participant in one", where)
    return df
