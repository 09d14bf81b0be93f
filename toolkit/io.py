"""Writing files so that a crash never leaves a half-written one: write beside, then rename."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import pandas as pd

from toolkit.errors import InputError

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json", ".jsonl": "jsonl"}


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; it replaces ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle


def table_format(path: str | Path) -> str:
    ext = Path(path).suffix.lower()
    if ext not in TABLE_FORMATS:
        raise InputError(f"{path}: unknown table format {ext!r} (use .csv, .parquet, .json or .jsonl)")
    return TABLE_FORMATS[ext]


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV, Parquet, JSON (records) or JSON lines, chosen by the extension."""
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        elif fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        elif fmt == "json":
            frame.to_json(tmp, orient="records", indent=1, date_format="iso")
        else:
            frame.to_json(tmp, orient="records", lines=True, date_format="iso")
    return Path(path)


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, Parquet or JSON table; a clear error naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    fmt = table_format(path)
    try:
        if fmt == "csv":
            return pd.read_csv(path)
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, orient="records", lines=fmt == "jsonl")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read table: {str(exc).splitlines()[0]}") from None
