"""Exporting a study's raw votes.

The raw export is the record of what was stored: every vote, those of raters screened out
included (the admin's decision can be undone; the record should not depend on it). Labels and
per-item aggregates are computed from the valid votes by :mod:`toolkit.analysis.study_labels`, which
the store cannot import.

Votes are read from the database and written ``EXPORT_CHUNK_ROWS`` rating ids at a time (as integer
arrays, see :mod:`toolkit.store.vote_arrays`), so exporting a study of millions of votes never holds
the whole table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from toolkit.errors import StoreError
from toolkit.files import atomic_path
from toolkit.io import csv_text, table_format
from toolkit.store.schema import Item, Rater, Rating, Study
from toolkit.store.vote_arrays import read_vote_arrays, read_vote_times

TEXT_COLUMNS = ("item", "rater", "kind", "content_group", "role", "sha256")
EXPORT_CHUNK_ROWS = 100_000
"""Votes fetched and written per batch by :func:`export_study`."""


def _blocks(session: Session, study: Study, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The study's votes, oldest first, in blocks of at most ``chunk_rows`` rating ids.

    Each block is read as integer arrays (:mod:`toolkit.store.vote_arrays`) and its text columns
    are categoricals over the study's items and raters: no Python row or string per vote.
    """
    from toolkit.store.snapshot import items_frame, votes_from_arrays

    connection = session.connection()
    items = items_frame(session, study)
    raters = pd.Series(
        dict(session.execute(select(Rater.id, Rater.name).where(Rater.study_id == study.id)).all()), dtype=object
    )
    low, high = session.execute(
        select(func.min(Rating.id), func.max(Rating.id)).where(Rating.study_id == study.id)
    ).one()
    zoned = connection.dialect.name == "postgresql"
    step = max(1, chunk_rows)
    for start in range(int(low or 0), int(high or -1) + 1, step):
        ids = f"id >= {start} AND id < {start + step}"  # integers made here, not user text
        votes = read_vote_arrays(connection, study.id, ids)
        if not len(votes):
            continue
        times = read_vote_times(connection, study.id, ids)
        if len(times.answered_us) != len(votes):  # ids are never reused: a block cannot change
            raise StoreError(f"votes of study {study.name!r} changed while they were exported; try again")
        yield votes_from_arrays(items, raters, votes, times, zoned)


def _has_carriage_return(session: Session, study: Study) -> bool:
    """Whether any text the export writes holds a CR (then every line ends in CRLF, see io._to_csv)."""
    item = select(Item.id).where(
        Item.study_id == study.id,
        or_(*(column.contains("\r") for column in (Item.path, Item.kind, Item.content_group, Item.role, Item.sha256))),
    )
    rater = select(Rater.id).where(Rater.study_id == study.id, Rater.name.contains("\r"))
    return session.execute(item.limit(1)).first() is not None or session.execute(rater.limit(1)).first() is not None


def _csv_times(block: pd.DataFrame) -> pd.DataFrame:
    """``block`` with its times as text, always to the microsecond (UTC with its offset when the
    database returns zoned times).

    pandas drops the fraction from a whole column when no value in it has one; per chunk that
    would make one file mix two spellings. Microseconds throughout is what the whole table gets.
    """
    out = block.copy()
    for column in ("shown_at", "answered_at"):
        values = out[column]
        if not values.notna().any():
            continue
        if values.dtype == object:  # zoned times of mixed offsets; SQLite's are naive UTC
            first = values[values.notna()].iloc[0]
            values = pd.to_datetime(values, utc=getattr(first, "tzinfo", None) is not None)
        moments = values
        zoned = getattr(moments.dt, "tz", None) is not None
        naive = moments.dt.tz_convert("UTC").dt.tz_localize(None) if zoned else moments
        stamps = naive.to_numpy(dtype="datetime64[us]")
        present = naive.notna().to_numpy()
        # Each distinct time is spelled once (an import stamps all its votes alike) and the column
        # is a categorical of those spellings: the CSV writer's formula rule then runs per spelling.
        distinct, code = np.unique(stamps[present], return_inverse=True)
        text = np.char.replace(np.datetime_as_string(distinct, unit="us"), "T", " ")
        if zoned:
            text = np.char.add(text, "+00:00")
        codes = np.full(len(out), -1, dtype=np.int64)
        codes[present] = code
        categories = pd.Index(text.astype(object), dtype=object)
        out[column] = pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=out.index)
    return out


def _categorical_text(block: pd.DataFrame) -> pd.DataFrame:
    # Item and rater text repeats across votes: as categories the formula rule runs once per
    # distinct value instead of once per cell, and the cells written are the same.
    out = block.copy()
    for column in TEXT_COLUMNS:
        out[column] = out[column].astype("category")
    return out


def _write_csv(blocks: Iterator[pd.DataFrame], handle: IO[str], crlf: bool) -> None:
    # Each block goes through the toolkit's CSV writer (formula-safe cells); the line ending is
    # decided once for the whole file, as write_table would for the whole frame.
    options: dict[str, Any] = {"lineterminator": "\r\n" if crlf else os.linesep}
    for n, block in enumerate(blocks):
        handle.write(csv_text(_csv_times(_categorical_text(block)), header=n == 0, **options))


def _write_json(blocks: Iterator[pd.DataFrame], handle: IO[str], lines: bool) -> None:
    if lines:
        for block in blocks:
            text = block.to_json(orient="records", lines=True, date_format="iso")
            handle.write(text if text.endswith("\n") else text + "\n")
        return
    handle.write("[")
    for n, block in enumerate(blocks):
        records = block.to_json(orient="records", indent=1, date_format="iso").strip()[1:-1].strip("\n")
        handle.write(("," if n else "") + "\n" + records)
    handle.write("\n]")


def _parquet_block(block: pd.DataFrame) -> pd.DataFrame:
    # One schema for every row group: types fixed here, not inferred per block (a block whose
    # shown_at is all empty would otherwise come out as a null column).
    out = block.copy()
    for column in TEXT_COLUMNS:
        out[column] = out[column].astype(object)  # plain strings, as the schema says
    for column in ("shown_at", "answered_at"):
        out[column] = pd.to_datetime(out[column], utc=True)  # the store writes UTC; SQLite returns it naive
    out["tolerance"] = pd.to_numeric(out["tolerance"]).astype("Int64")
    out["response_ms"] = pd.to_numeric(out["response_ms"]).astype("float64")
    return out


def _write_parquet(blocks: Iterator[pd.DataFrame], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = pa.string()
    moment = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("item", text),
            ("rater", text),
            ("vote", pa.int64()),
            ("kind", text),
            ("content_group", text),
            ("role", text),
            ("expected_level", pa.int64()),
            ("tolerance", pa.int64()),
            ("sha256", text),
            ("shown_at", moment),
            ("answered_at", moment),
            ("response_ms", pa.float64()),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for block in blocks:
            table = pa.Table.from_pandas(_parquet_block(block), schema=schema, preserve_index=False, safe=False)
            writer.write_table(table.replace_schema_metadata(None))


def export_study(session: Session, study: Study, out: str | Path, chunk_rows: int = EXPORT_CHUNK_ROWS) -> Path:
    """Write the study's raw votes (``VOTE_COLUMNS``, one row per vote, oldest first) to ``out``
    (.csv/.parquet/.json/.jsonl), reading and writing ``chunk_rows`` votes at a time."""
    fmt = table_format(out)
    if session.execute(select(Rating.id).where(Rating.study_id == study.id).limit(1)).first() is None:
        raise StoreError(f"study {study.name!r} has no votes to export")
    crlf = fmt == "csv" and _has_carriage_return(session, study)
    with atomic_path(out) as tmp:
        blocks = _blocks(session, study, chunk_rows)
        if fmt == "parquet":
            _write_parquet(blocks, tmp)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                if fmt == "csv":
                    _write_csv(blocks, handle, crlf)
                else:
                    _write_json(blocks, handle, lines=fmt == "jsonl")
    return Path(out)
