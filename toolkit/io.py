"""Tables by extension (CSV, Parquet, JSON, JSON lines): id columns read as text, CSV written
formula-safe, every file written atomically (:mod:`toolkit.files`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.errors import InputError
from toolkit.files import atomic_path

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "jsonl"}


def table_format(path: str | os.PathLike[str]) -> str:
    ext = Path(path).suffix.lower()
    if ext not in TABLE_FORMATS:
        raise InputError(f"{path}: unknown table format {ext!r} (use .csv, .parquet, .json or .jsonl)")
    return TABLE_FORMATS[ext]


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection"):
# a rater who registers as ``=HYPERLINK(...)`` must not reach the admin's Excel as one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_value(value: Any) -> Any:
    """``value`` with a leading single quote when it is text a spreadsheet would run as a formula.

    Text that already starts with a quote gets one more, so that :func:`csv_unescape_value`
    gives back every original exactly (a file read back to resume work needs its keys unchanged).
    """
    if isinstance(value, str) and value.startswith((*_FORMULA_STARTS, "'")):
        return "'" + value
    return value


def csv_unescape_value(value: Any) -> Any:
    """The original of a text cell written by :func:`csv_safe_value`."""
    if isinstance(value, str) and value.startswith("'"):
        return value[1:]
    return value


def _safe_labels(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        return index.set_levels([_safe_labels(level) for level in index.levels])
    if index.dtype.kind in "OSU" or isinstance(index.dtype, (pd.StringDtype, pd.CategoricalDtype)):
        return index.map(csv_safe_value)
    return index


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells, column names and index labels cannot start a
    spreadsheet formula. Numeric columns are left alone: a negative number is not text."""
    safe = frame.copy()
    for position in range(safe.shape[1]):
        column = safe.iloc[:, position]
        if column.dtype.kind in "OSU" or isinstance(column.dtype, pd.StringDtype):
            safe.isetitem(position, column.map(csv_safe_value, na_action="ignore"))
        elif isinstance(column.dtype, pd.CategoricalDtype):
            safe.isetitem(position, column.cat.rename_categories(column.cat.categories.map(csv_safe_value)))
    safe.columns = _safe_labels(safe.columns)
    safe.index = _safe_labels(safe.index)
    return safe


def _has_carriage_return(frame: pd.DataFrame) -> bool:
    labels = [*map(str, frame.columns), *(str(v) for v in frame.index if isinstance(v, str))]
    cells = (
        frame[c].map(lambda v: isinstance(v, str) and "\r" in v).any()
        for c in frame.columns
        if frame[c].dtype.kind == "O" or isinstance(frame[c].dtype, pd.StringDtype)
    )
    return any("\r" in label for label in labels) or any(cells)


def _to_csv(frame: pd.DataFrame, target: str | os.PathLike[str] | None, **options: Any) -> str | None:
    safe = csv_safe(frame)
    options.setdefault("index", False)
    # The csv module quotes a field only for the characters of the line terminator: a lone CR in
    # a "\n" file stays bare, and a spreadsheet starts a new row there (whose first cell could be
    # a formula). With CRLF endings such a field is quoted.
    if "lineterminator" not in options and _has_carriage_return(safe):
        options["lineterminator"] = "\r\n"
    return safe.to_csv(target, **options)


def csv_text(frame: pd.DataFrame, **options: Any) -> str:
    """``frame`` as CSV text (``DataFrame.to_csv`` options), formula-safe (:func:`csv_safe`).

    Every CSV or TSV the toolkit writes goes through here or :func:`write_table`; Parquet and
    JSON keep the raw values."""
    text = _to_csv(frame, None, **options)
    assert text is not None  # to_csv returns the text when given no file
    return text


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` as CSV, Parquet, JSON (records) or JSON lines, chosen by the extension.
    CSV text cells are made formula-safe (:func:`csv_safe`)."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            _to_csv(frame, tmp)
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "json":
            frame.to_json(tmp, orient="records", indent=1, date_format="iso")
        else:
            frame.to_json(tmp, orient="records", lines=True, date_format="iso")
    return Path(path)


ID_COLUMNS: frozenset[str] = frozenset(
    {
        *("item", "path", "image", "img_path", "image_name"),
        *("rater", "rater_id", "worker_id", "subject"),
        *("group", "content_group", "content"),
    }
)
"""Columns :func:`read_table` reads as text by default (names matched case-insensitively)."""

# pandas' default NA tokens. Only columns that are not ids get them: a rater called "NA" or
# "null" is a person, not a missing value.
_NA_TOKENS = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)


def id_text(value: object) -> str | None:
    """An id cell as text, or None when it is missing or blank.

    Strings lose leading and trailing spaces (``"007 "`` and ``"007"`` are one rater); numbers,
    as Parquet and JSON store ids, become their decimal text, integral floats without ``.0``
    (a Parquet integer column with gaps arrives as floats).
    """
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        if value.is_integer():
            return str(int(value))
        return repr(value)
    text = str(value).strip()
    return text or None


def text_ids(
    values: pd.Series, what: str, source: str, *, required: bool = True, rows: Sequence[str] | None = None
) -> pd.Series:
    """``values`` as text ids (see :func:`id_text`), missing ones as None.

    With ``required`` a missing id raises naming the first such row: ``rows[i]`` (``"line 7"``)
    when given, else ``"row <index>"``.
    """
    out = pd.Series([id_text(v) for v in values.tolist()], index=values.index, dtype=object)
    if required:
        absent = out.isna().to_numpy()
        if absent.any():
            i = int(np.flatnonzero(absent)[0])
            where = rows[i] if rows is not None else f"row {values.index[i]}"
            raise InputError(f"{source} {where}: {what} is empty")
    return out


def _csv_lines(path: Path, n_rows: int) -> list[str]:
    """``"line N"`` of each data record of a CSV, as pandas reads it (blank lines skipped)."""
    lines: list[str] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # header
        for record in reader:
            if record:
                lines.append(f"line {reader.line_num}")
    return lines + [f"row {i + 1}" for i in range(len(lines), n_rows)]


def long_first_record(
    path: str | os.PathLike[str], n_fields: int, delimiter: str = ",", encoding: str = "utf-8"
) -> tuple[int, int] | None:
    """``(line, fields)`` when the first data record of a CSV has more than ``n_fields`` fields.

    pandas reads such a table by taking the first column as the index, which shifts every column
    by one (item <- rater, rater <- vote) without an error; readers check with this instead.
    A later record that is too long is pandas' own error.
    """
    with open(path, newline="", encoding=encoding, errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)  # header
        for record in reader:
            if record:
                return (reader.line_num, len(record)) if len(record) > n_fields else None
    return None


def read_table(
    path: str | os.PathLike[str], text_columns: Iterable[str] = ID_COLUMNS, required: Iterable[str] = ()
) -> pd.DataFrame:
    """A CSV, Parquet or JSON table; a clear error naming the file when it cannot be read.

    Columns named in ``text_columns`` (case-insensitively; by default :data:`ID_COLUMNS`) hold
    ids: they come back as text (see :func:`id_text`), CSV cells as written with no NA guessing,
    so ``007`` and ``7`` stay two raters and a rater called ``NA`` stays ``"NA"``; a blank cell is
    None. A blank cell in a ``required`` column is an error naming its line (row, for Parquet and
    JSON). Other columns keep pandas' types.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    fmt = table_format(path)
    wanted = {str(c).strip().lower() for c in text_columns}
    try:
        if fmt == "csv":
            header = pd.read_csv(path, nrows=0).columns
            ids = [c for c in header if str(c).strip().lower() in wanted]
            frame = pd.read_csv(
                path,
                dtype={c: object for c in ids},
                keep_default_na=False,
                na_values={c: _NA_TOKENS for c in header if c not in ids},
            )
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, orient="records", lines=fmt == "jsonl", dtype=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read table: {str(exc).splitlines()[0]}") from None
    long_row = long_first_record(path, len(header)) if fmt == "csv" else None
    if long_row is not None:
        line, found = long_row
        raise InputError(f"{path} line {line}: malformed row, expected {len(header)} fields and found {found}")
    must = {str(c).strip().lower() for c in required}
    rows: list[str] | None = None
    for column in frame.columns:
        name = str(column).strip().lower()
        if name not in wanted:
            continue
        what = f"column {str(column)!r}"
        values = text_ids(frame[column], what, str(path), required=False)
        if name in must and values.isna().any():
            # Line numbers are worked out only for the message: most tables have no blank id.
            if rows is None:
                rows = _csv_lines(path, len(frame)) if fmt == "csv" else [f"row {i + 1}" for i in range(len(frame))]
            text_ids(values, what, str(path), rows=rows)
        frame[column] = values
    return frame
