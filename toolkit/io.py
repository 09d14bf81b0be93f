"""File helpers: atomic writes, content hashes, and tables by extension.

Every file the toolkit produces is first written under a temporary name in the destination
folder and then renamed over the target, so that a crash or a full disk never leaves a
half-written JSON, CSV or Parquet file where a training run or an analysis would pick it up.
The results get the permissions a plain ``open(path, "w")`` or ``mkdir`` would give them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from toolkit.errors import InputError

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "jsonl"}
_HASH_CHUNK = 1 << 20
_NAME_TRIES = 100


# ``tempfile.mkstemp`` and ``mkdtemp`` create their entries 0600 / 0700 on purpose (private
# scratch space); renamed into place, they would make results unreadable to the rest of a group
# that shares them. The temporary names are therefore created here with the modes of ``open()``
# (0666) and ``mkdir`` (0777), and the kernel applies the umask (or a folder's default ACL) exactly
# as for any other new file. Reading the umask instead would mean setting it with ``os.umask`` and
# restoring it, which changes it for the whole process in between and races other threads.
def _new_sibling(target: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    for _ in range(_NAME_TRIES):
        candidate = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name beside {target}")


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))


def new_sibling_file(target: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """Create an empty file with a fresh hidden name beside ``target``, mode as ``open()`` gives."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _new_sibling(target, suffix, _create_file)


def new_sibling_dir(target: str | os.PathLike[str], suffix: str = ".tmp") -> Path:
    """Create an empty folder with a fresh hidden name beside ``target`` (same file system, so it
    can be renamed into place atomically), mode as ``mkdir`` gives."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return _new_sibling(target, suffix, lambda path: path.mkdir(0o777))


def give_default_modes(folder: str | os.PathLike[str]) -> None:
    """Give everything under ``folder`` the mode a new file or folder gets there, read off
    ``folder`` itself (made by :func:`new_sibling_dir`, so 0777 less the umask).

    Libraries that write through private temporary files leave their results 0600 (safetensors
    does so for model weights), which would lock the rest of a group out of a shared output.
    Execute bits are kept where the folder's mode allows them.
    """
    root = Path(folder)
    dir_mode = stat.S_IMODE(root.stat().st_mode)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        if path.is_dir():
            mode = dir_mode
        else:
            mode = (dir_mode & 0o666) | (stat.S_IMODE(path.stat().st_mode) & 0o111 & dir_mode)
        if stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    The caller writes the file at the yielded path by any means (``json.dump``, pyarrow,
    matplotlib ...). On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    tmp = new_sibling_file(target, suffix + ".tmp")
    mode = tmp.stat().st_mode & 0o7777
    try:
        yield tmp
        # A writer that deletes and recreates the path (rather than truncating it) would leave
        # its own mode; put back the one the file was created with.
        if tmp.stat().st_mode & 0o7777 != mode:
            tmp.chmod(mode)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``target`` atomically; return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(target)


OUTPUT_MARKER = ".qalign-output"
"""File the toolkit writes into every output folder it creates (JSON: what wrote it, when).

Only a folder holding it may be replaced: a command never deletes what it did not write."""


def read_output_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The marker of a toolkit output folder, or None when ``folder`` is not one."""
    try:
        record = json.loads((Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_output_marker(folder: str | os.PathLike[str], written_by: str) -> Path:
    """Mark ``folder`` as the toolkit's own output (``written_by``: the command or function)."""
    from toolkit import __version__

    record = {
        "written_by": written_by,
        "toolkit_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return atomic_write_text(Path(folder) / OUTPUT_MARKER, json.dumps(record, indent=1) + "\n")


def is_toolkit_output(folder: str | os.PathLike[str], legacy: Sequence[str] = ()) -> bool:
    """Whether ``folder`` holds the marker, or one of the ``legacy`` entries by which outputs
    written before the marker existed are recognised (a training run's record, say)."""
    root = Path(folder)
    return (root / OUTPUT_MARKER).is_file() or any((root / name).exists() for name in legacy)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def claim_output_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    legacy: Sequence[str] = (),
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Path:
    """Check that ``path`` may become (or be replaced by) a toolkit output folder; raise
    :class:`InputError` before anything is written when it may not.

    Accepted: a new path, an empty folder, and, with ``overwrite``, an earlier toolkit output
    (see :func:`is_toolkit_output`). Refused: a file, a non-empty folder the toolkit did not
    write (a folder of photos, a home directory), an earlier output without ``overwrite``, and
    any folder that holds one of ``inputs`` (the media a dataset is built from).
    """
    target = Path(path)
    if not target.exists():
        return target
    if not target.is_dir():
        raise InputError(f"output {target} exists and is not a folder")
    for source in inputs:
        if source is not None and _inside(Path(source), target):
            raise InputError(f"output folder {target} holds the input {source}; choose another output folder")
    if not any(target.iterdir()):
        return target
    if not is_toolkit_output(target, legacy):
        raise InputError(
            f"output folder {target} is not empty and was not written by qalign; nothing was changed, "
            "choose a new or empty folder"
        )
    if not overwrite:
        raise InputError(f"output folder {target} holds an earlier qalign output; pass --overwrite to replace it")
    return target


def prepare_output_dir(
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    written_by: str = "qalign",
    legacy: Sequence[str] = (),
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Path:
    """:func:`claim_output_dir`, then create the folder with the output marker: for outputs
    written file by file into place (a report folder) rather than swapped in whole."""
    target = claim_output_dir(path, overwrite=overwrite, legacy=legacy, inputs=inputs)
    target.mkdir(parents=True, exist_ok=True)
    write_output_marker(target, written_by)
    return target


@contextmanager
def atomic_directory(
    target: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    written_by: str = "qalign",
    legacy: Sequence[str] = (),
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it takes ``target``'s place.

    ``target`` must pass :func:`claim_output_dir` (checked before the caller writes anything, and
    again just before the swap); the new folder gets the output marker. An existing ``target``
    folder is moved aside first and deleted only once the new one is in place, so at every moment
    either the old or the new complete folder exists.
    """
    target = Path(target)
    claim_output_dir(target, overwrite=overwrite, legacy=legacy, inputs=inputs)
    tmp = new_sibling_dir(target)
    try:
        yield tmp
        write_output_marker(tmp, written_by)
        give_default_modes(tmp)
        # The folder may have changed while the output was being built.
        claim_output_dir(target, overwrite=overwrite, legacy=legacy, inputs=inputs)
        old: Path | None = None
        if target.exists():
            old = new_sibling_dir(target, ".old")  # reserves a free name; the rename needs it absent
            old.rmdir()
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except IsADirectoryError:
        return sha256_tree(path)
    return digest.hexdigest()


def sha256_tree(folder: str | os.PathLike[str]) -> str:
    """Hash of a folder of files (a video stored as frames): names and bytes, in sorted order."""
    digest = hashlib.sha256()
    root = Path(folder)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle


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
