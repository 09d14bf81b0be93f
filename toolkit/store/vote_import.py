"""Importing votes collected elsewhere, streamed: tables of tens of millions of votes.

A vote table is read ``chunk_rows`` rows at a time (CSV and Parquet are never loaded whole);
each chunk is checked (levels 1-5, text ids, known items) and coded as a packed
(item id, rater id) key and a level, 9 bytes a vote. Only after the whole table has passed
those checks, and no rater votes twice on one item in it, is anything compared with the stored
votes and inserted:

- PostgreSQL: the coded votes go into a temporary staging table by binary COPY; one join finds
  the votes already stored (and any that contradict them), one set-based ``INSERT ... SELECT``
  adds the others in table order;
- SQLite: the stored votes are read once as sorted keys, each chunk is compared against them in
  numpy and its new votes inserted in one ``executemany``.

From :data:`~toolkit.store.bulk_load.BULK_IMPORT_ROWS` new votes on, the per-row work of the
insert (counting trigger, plain indexes on SQLite, foreign-key triggers on PostgreSQL) is set
aside and done set-based instead (:mod:`toolkit.store.bulk_load`).

Everything happens in the caller's session, one transaction: an error anywhere leaves the study
as it was, and a re-import adds nothing and counts every vote as already stored.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table, select, text
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.io import ID_COLUMNS, id_text, long_first_record, read_table, table_format, text_ids
from toolkit.store.bulk_load import (
    BULK_IMPORT_ROWS,
    add_item_counts,
    count_by_item_and_level,
    merge_counts,
    pg_grouped_counts,
    postgresql_bulk_insert,
    sqlite_bulk_insert,
    stored_votes,
)
from toolkit.store.schema import Item, Rater, Rating, Study, utcnow
from toolkit.store.studies import hash_token
from toolkit.store.vote_arrays import PACKED_ID_BITS, read_packed_votes, read_vote_arrays

IMPORT_CHUNK_ROWS = 100_000
"""Votes read, checked and inserted per batch."""

_STAGING = "qalign_vote_import"
# One binary COPY row of the staging table: field count, then (length, value) per field.
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("row_len", ">i4"),
        ("row", ">i8"),
        ("item_len", ">i4"),
        ("item_id", ">i4"),
        ("rater_len", ">i4"),
        ("rater_id", ">i4"),
        ("level_len", ">i4"),
        ("level", ">i2"),
    ]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def pack_keys(item_ids: np.ndarray, rater_ids: np.ndarray) -> np.ndarray:
    """(item id, rater id) as one int64 key; ids are positive 32-bit integers in both back-ends."""
    return (item_ids.astype(np.int64) << 32) | rater_ids.astype(np.int64)


def _unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return keys >> 32, keys & 0xFFFFFFFF


# --------------------------------------------------------------------------- reading a table


def _blank_id_error(path: Path, fmt: str, column: str, row: int) -> InputError:
    """:func:`toolkit.io.read_table`'s message for a blank id: the CSV line, else the row."""
    where = f"row {row + 1}"
    if fmt == "csv":
        from toolkit.io import _csv_lines

        where = _csv_lines(path, row + 1)[row]
    return InputError(f"{path} {where}: column {column!r} is empty")


def _check_blank_ids(chunk: pd.DataFrame, start: int, columns: tuple[str, str], path: Path, fmt: str) -> None:
    for column in columns:
        codes, uniques = pd.factorize(chunk[column], use_na_sentinel=True)
        blank = np.array([id_text(v) is None for v in uniques] + [True], dtype=bool)[codes]
        if blank.any():
            raise _blank_id_error(path, fmt, column, start + int(np.flatnonzero(blank)[0]))


def read_vote_chunks(
    path: str | Path, item: str = "item", rater: str = "rater", vote: str = "vote", chunk_rows: int = IMPORT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """The ``item, rater, vote`` columns of a vote table, ``chunk_rows`` rows at a time.

    The cells are read as :func:`toolkit.io.read_table` reads them (ids as written, a blank item
    or rater an error naming its line); CSV and Parquet are streamed, JSON is read whole. A
    missing column yields the columns that are there, for :func:`import_vote_chunks` to name.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    fmt = table_format(path)
    columns = (item, rater)
    wanted = {c.lower() for c in (item, rater, *ID_COLUMNS)}
    try:
        if fmt == "csv":
            header = pd.read_csv(path, nrows=0).columns
            long_row = long_first_record(path, len(header))
            if long_row is not None:
                line, found = long_row
                raise InputError(f"{path} line {line}: malformed row, expected {len(header)} fields and found {found}")
            if not {item, rater, vote} <= set(header):
                yield pd.DataFrame(columns=header)
                return
            ids = [c for c in (item, rater, vote) if str(c).strip().lower() in wanted]
            reader = pd.read_csv(
                path,
                usecols=[item, rater, vote],
                dtype={c: object for c in ids},
                keep_default_na=False,
                na_values={c: _na_tokens() for c in (vote,) if c not in ids},
                chunksize=max(1, chunk_rows),
            )
            start = 0
            with reader:
                for chunk in reader:
                    _check_blank_ids(chunk, start, columns, path, fmt)
                    start += len(chunk)
                    yield chunk
            return
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            if not {item, rater, vote} <= set(names):
                yield pd.DataFrame(columns=names)
                return
            start = 0
            for batch in parquet.iter_batches(batch_size=max(1, chunk_rows), columns=[item, rater, vote]):
                chunk = batch.to_pandas()
                _check_blank_ids(chunk, start, columns, path, fmt)
                start += len(chunk)
                yield chunk
            return
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot read table: {str(exc).splitlines()[0]}") from None
    frame = read_table(path, text_columns={item, rater, *ID_COLUMNS}, required=columns)
    for start in range(0, max(1, len(frame)), max(1, chunk_rows)):
        yield frame.iloc[start : start + chunk_rows]


def _na_tokens() -> tuple[str, ...]:
    from toolkit.io import _NA_TOKENS

    return _NA_TOKENS


# --------------------------------------------------------------------------- checking and coding


def _text_id_codes(values: pd.Series, what: str, source: str, start: int) -> tuple[np.ndarray, list[str]]:
    """``values`` as text ids (:func:`toolkit.io.text_ids`): a code per row and the distinct ids.

    The id rule runs once per distinct value, not once per row: a table of millions of votes
    names a few thousand items and raters, and no per-row string column is built.
    """
    codes, uniques = pd.factorize(values.reset_index(drop=True), use_na_sentinel=True)
    cleaned = text_ids(pd.Series(uniques, dtype=object), what, source, required=False)
    # A code of -1 is a missing cell; appending False keeps it in range when every cell is one.
    blank = (codes < 0) | np.append(cleaned.isna().to_numpy(), False)[codes]
    if blank.any():
        # The same message text_ids gives for the whole column, naming the first blank row.
        text_ids(pd.Series([None], index=[start + int(np.flatnonzero(blank)[0])], dtype=object), what, source)
    # Values that differ only as written ("7" and 7, "a " and "a") are one id.
    merged, names = pd.factorize(cleaned)
    return merged[codes].astype(np.int64), [str(name) for name in names]


def _levels(raw: pd.Series, source: str, start: int) -> np.ndarray:
    """The vote column as int8 levels 1-5; errors name the row (data rows counted from 0)."""
    # true/false would pass as the numbers 1 and 0; a vote column of booleans is a wrong column.
    if pd.api.types.is_bool_dtype(raw):
        is_flag = np.ones(len(raw), dtype=bool)
    elif raw.dtype == object:
        is_flag = raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    else:
        is_flag = np.zeros(len(raw), dtype=bool)
    if is_flag.any():
        row = int(np.flatnonzero(is_flag)[0])
        raise InputError(f"{source}, row {start + row}: vote {raw.iloc[row]!r} is true/false, not a level 1-5")
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(values, (1.0, 2.0, 3.0, 4.0, 5.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: vote {float(values[i])!r} at row {start + i} is not an integer level 1-5 "
            "(row numbers count data rows from 0)"
        )
    return values.astype(np.int8)


@dataclass
class _CodedVotes:
    """The votes of a whole table, checked and coded, in table order."""

    keys: list[np.ndarray] = field(default_factory=list)
    levels: list[np.ndarray] = field(default_factory=list)
    item_path: dict[int, str] = field(default_factory=dict)
    rater_name: dict[int, str] = field(default_factory=dict)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.concatenate(self.keys) if self.keys else np.empty(0, dtype=np.int64)
        levels = np.concatenate(self.levels) if self.levels else np.empty(0, dtype=np.int8)
        self.keys, self.levels = [], []
        return keys, levels

    def names(self, key: int) -> tuple[str, str]:
        """(rater name, item path) of a packed key."""
        return self.rater_name[key & 0xFFFFFFFF], self.item_path[key >> 32]


def _create_raters(session: Session, study: Study, names: list[str], known: dict[str, int]) -> None:
    """Add the raters of ``names`` not in ``known`` (one batch) and their ids to ``known``."""
    new = [name for name in dict.fromkeys(names) if name not in known]
    if not new:
        return
    # Imported raters get an unguessable token nobody knows: they cannot log in.
    session.execute(
        cast(Table, Rater.__table__).insert(),
        [
            dict(study_id=study.id, name=name, token_hash=hash_token(f"imported:{secrets.token_hex(16)}"))
            for name in new
        ],
    )
    rows = session.execute(select(Rater.name, Rater.id).where(Rater.study_id == study.id, Rater.name.in_(new)))
    known.update({name: id_ for name, id_ in rows})


def _code_table(
    session: Session, study: Study, chunks: Iterable[pd.DataFrame], item: str, rater: str, vote: str, source: str
) -> _CodedVotes:
    known = {path: id_ for path, id_ in session.execute(select(Item.path, Item.id).where(Item.study_id == study.id))}
    raters = {
        name: id_ for name, id_ in session.execute(select(Rater.name, Rater.id).where(Rater.study_id == study.id))
    }
    coded = _CodedVotes()
    start = 0
    for chunk in chunks:
        missing = [c for c in (item, rater, vote) if c not in chunk.columns]
        if missing:
            raise InputError(
                f"{source}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, chunk.columns))})"
            )
        if chunk.empty:
            continue
        levels = _levels(chunk[vote].reset_index(drop=True), source, start)
        # Text ids, stripped, never "nan": a blank item or rater fails the import (rows from 0).
        item_codes, item_names = _text_id_codes(chunk[item], f"item ({item!r})", source, start)
        rater_codes, rater_names = _text_id_codes(chunk[rater], f"rater ({rater!r})", source, start)
        item_id_of_code = np.array([known.get(name, -1) for name in item_names], dtype=np.int64)
        unknown = item_id_of_code[item_codes] < 0
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise InputError(
                f"{source}, row {start + row}: item {item_names[item_codes[row]]!r} is not in study {study.name!r}"
            )
        _create_raters(session, study, rater_names, raters)
        rater_id_of_code = np.array([raters[name] for name in rater_names], dtype=np.int64)
        coded.item_path.update(zip(item_id_of_code.tolist(), item_names))
        coded.rater_name.update(zip(rater_id_of_code.tolist(), rater_names))
        coded.keys.append(pack_keys(item_id_of_code[item_codes], rater_id_of_code[rater_codes]))
        coded.levels.append(levels)
        start += len(chunk)
    return coded


def _check_no_repeats(keys: np.ndarray, coded: _CodedVotes, source: str) -> None:
    """Refuse a table in which a rater votes twice on one item, naming every row of the first."""
    ordered = np.sort(keys)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    del ordered
    if repeated.size == 0:
        return
    first = int(np.flatnonzero(np.isin(keys, repeated))[0])
    rows = np.flatnonzero(keys == keys[first]).tolist()
    rater_name, item_path = coded.names(int(keys[first]))
    raise InputError(f"{source}: rater {rater_name!r} votes more than once on {item_path!r} (rows {rows})")


def _clash(source: str, row: int, key: int, stored: int, given: int, coded: _CodedVotes) -> InputError:
    rater_name, item_path = coded.names(key)
    return InputError(
        f"{source}, row {row}: rater {rater_name!r} already has vote {stored} on {item_path!r}, the table says {given}"
    )


# --------------------------------------------------------------------------- storing


class _StoredVotes:
    """The study's stored votes, sorted for lookups by packed (item id, rater id) key.

    Kept as one sorted int64 a vote (``item << 33 | rater << 3 | level``, sorted in place) when
    the ids allow it, else as sorted keys and levels (9 bytes a vote plus a sort's index).
    """

    def __init__(self, connection: Connection, study: Study) -> None:
        self.packed = read_packed_votes(connection, study.id)
        if self.packed is not None:
            self.packed.sort()
            return
        votes = read_vote_arrays(connection, study.id)
        key = pack_keys(votes.item_id, votes.rater_id)
        order = np.argsort(key, kind="stable")
        self.keys, self.levels = key[order], votes.level[order]

    def lookup(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For keys of :func:`pack_keys`: whether each is stored, and the stored level (where it is)."""
        if self.packed is not None:
            item_ids, rater_ids = _unpack(key)
            fits = (item_ids < 2**PACKED_ID_BITS) & (rater_ids < 2**PACKED_ID_BITS)
            probe = (item_ids << 33) | (rater_ids << 3)
            stored = self.packed
        else:
            fits = np.ones(key.size, dtype=bool)
            probe, stored = key, self.keys
        if stored.size == 0:
            return np.zeros(key.size, dtype=bool), np.zeros(key.size, dtype=np.int8)
        at = np.minimum(np.searchsorted(stored, probe), stored.size - 1)
        if self.packed is not None:
            found = fits & ((stored[at] >> 3) == (probe >> 3))
            return found, (stored[at] & 7).astype(np.int8)
        return fits & (stored[at] == probe), self.levels[at]


def _insert_rows(connection: Connection, study_id: int, keys: np.ndarray, levels: np.ndarray, at: datetime) -> None:
    """New votes in one executemany of plain tuples: SQLAlchemy's per-row parameter processing
    would cost as much as the insert itself."""
    ratings = cast(Table, Rating.__table__)
    # The time as SQLAlchemy's SQLite DateTime stores it, so every vote reads back alike.
    process = connection.dialect.type_descriptor(ratings.c.answered_at.type).bind_processor(connection.dialect)
    stamp = process(at) if process else at
    item_ids, rater_ids = _unpack(keys)
    rows = zip(repeat(study_id), item_ids.tolist(), rater_ids.tolist(), levels.tolist())
    if connection.dialect.paramstyle == "qmark":
        connection.exec_driver_sql(
            f"INSERT INTO {ratings.name} (study_id, item_id, rater_id, level, answered_at) VALUES (?, ?, ?, ?, ?)",
            [(*row, stamp) for row in rows],
        )
    else:  # another driver: SQLAlchemy's own executemany
        names = ("study_id", "item_id", "rater_id", "level")
        connection.execute(ratings.insert(), [dict(zip(names, row), answered_at=at) for row in rows])


def _store_in_chunks(
    session: Session,
    study: Study,
    keys: np.ndarray,
    levels: np.ndarray,
    chunk_rows: int,
    coded: _CodedVotes,
    source: str,
    bulk_rows: int,
) -> tuple[int, int]:
    """Compare with the stored votes in numpy, then insert the new ones chunk by chunk.

    Plain inserts, not ON CONFLICT DO NOTHING: a vote the app stored since the comparison fails
    the whole import (unique constraint) instead of being counted as imported.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # A larger page cache (256 MiB) for this connection: the rater indexes take inserts at
        # thousands of places at once, which the default 2 MiB cache reads back from the file.
        connection.exec_driver_sql("PRAGMA cache_size = -262144")
    stored = _StoredVotes(connection, study)
    new = np.empty(len(keys), dtype=bool)
    step = max(1, chunk_rows)
    for start in range(0, len(keys), step):
        key, level = keys[start : start + step], levels[start : start + step]
        found, stored_level = stored.lookup(key)
        clash = found & (stored_level != level)
        if clash.any():
            i = int(np.flatnonzero(clash)[0])
            raise _clash(source, start + i, int(key[i]), int(stored_level[i]), int(level[i]), coded)
        new[start : start + step] = ~found
    del stored
    added = int(new.sum())
    now = utcnow()
    sqlite = connection.dialect.name == "sqlite"
    with sqlite_bulk_insert(connection, added, bulk_rows) if sqlite else nullcontext(False) as bulk:
        per_item: list[tuple[np.ndarray, np.ndarray]] = []  # (item ids, counts per level) of each chunk's new votes
        for start in range(0, len(keys), step):
            chosen = new[start : start + step]
            if chosen.any():
                key = keys[start : start + step][chosen]
                level = levels[start : start + step][chosen]
                _insert_rows(connection, study.id, key, level, now)
                if bulk:
                    per_item.append(count_by_item_and_level(key >> 32, level))
        if bulk and per_item:
            # Counted chunk by chunk: the new votes' item ids all at once would be 8 bytes a vote more.
            add_item_counts(connection, *merge_counts(per_item))
    return added, len(keys) - added


def _copy_staging(driver: Any, keys: np.ndarray, levels: np.ndarray, chunk_rows: int) -> None:
    """The coded votes into the staging table by binary COPY, built in numpy (no Python row)."""
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY {_STAGING} (row, item_id, rater_id, level) FROM STDIN (FORMAT binary)") as copy,
    ):
        copy.write(_COPY_HEADER)
        for start in range(0, len(keys), max(1, chunk_rows)):
            key = keys[start : start + chunk_rows]
            block = np.empty(len(key), dtype=_COPY_ROW)
            block["fields"] = 4
            block["row_len"], block["item_len"], block["rater_len"], block["level_len"] = 8, 4, 4, 2
            block["row"] = np.arange(start, start + len(key))
            item_ids, rater_ids = _unpack(key)
            block["item_id"], block["rater_id"] = item_ids, rater_ids
            block["level"] = levels[start : start + chunk_rows]
            copy.write(block.tobytes())
        copy.write(_COPY_TRAILER)


def _store_postgresql(
    session: Session,
    study: Study,
    keys: np.ndarray,
    levels: np.ndarray,
    chunk_rows: int,
    coded: _CodedVotes,
    source: str,
    bulk_rows: int,
) -> tuple[int, int]:
    """Stage by COPY, then compare and insert set-based in the server."""
    connection = session.connection()
    bulk = len(keys) >= bulk_rows
    if bulk:
        # Nobody else adds votes from here to the commit (the app's votes wait; reading goes on), so
        # what the comparison finds stored is what the insert must skip.
        connection.exec_driver_sql("LOCK TABLE ratings IN SHARE ROW EXCLUSIVE MODE")
    # Sorting and grouping millions of staged rows in memory instead of in temporary files.
    connection.exec_driver_sql("SET LOCAL work_mem = '256MB'")
    connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_STAGING} (row bigint, item_id integer, rater_id integer, level smallint) "
        "ON COMMIT DROP"
    )
    _copy_staging(connection.connection.driver_connection, keys, levels, chunk_rows)
    connection.exec_driver_sql(f"ANALYZE {_STAGING}")
    # A rater belongs to one study, so (rater, item) finds the study's stored vote.
    stored, clash_row = connection.execute(
        text(
            f"SELECT count(*), min(s.row) FILTER (WHERE r.level <> s.level) FROM {_STAGING} s "
            "JOIN ratings r ON r.rater_id = s.rater_id AND r.item_id = s.item_id"
        )
    ).one()
    if clash_row is not None:
        key = int(keys[clash_row])
        item_id, rater_id = _unpack(np.array([key]))
        level = connection.scalar(
            select(Rating.level).where(Rating.item_id == int(item_id[0]), Rating.rater_id == int(rater_id[0]))
        )
        raise _clash(source, int(clash_row), key, int(level or 0), int(levels[clash_row]), coded)
    expected = len(keys) - int(stored)
    if expected == 0:
        return 0, int(stored)
    if bulk and expected >= bulk_rows:
        if stored:
            connection.exec_driver_sql(
                f"DELETE FROM {_STAGING} s USING ratings r WHERE r.rater_id = s.rater_id AND r.item_id = s.item_id"
            )
        rebuild = expected >= stored_votes(connection) // 2
        with postgresql_bulk_insert(connection, rebuild) as set_aside:
            added = _insert_staged(connection, study, check_stored=False)
            if set_aside:
                connection.exec_driver_sql(pg_grouped_counts(_STAGING))
    else:
        added = _insert_staged(connection, study, check_stored=True)
    if added != expected:
        raise StoreError(
            f"{source}: votes of study {study.name!r} changed during the import; nothing imported, run it again"
        )
    return added, int(stored)


def _insert_staged(connection: Connection, study: Study, check_stored: bool) -> int:
    """The staged votes into ratings in table order; with ``check_stored``, those not stored now.

    A plain insert of what was not stored at the comparison: a vote the app stores meanwhile fails
    the import (unique constraint) or, if already committed, shows as a count that differs.
    """
    skip = (
        "WHERE NOT EXISTS (SELECT 1 FROM ratings r WHERE r.rater_id = s.rater_id AND r.item_id = s.item_id) "
        if check_stored
        else ""
    )
    return connection.execute(
        text(
            "INSERT INTO ratings (study_id, item_id, rater_id, level, answered_at) "
            f"SELECT :study, s.item_id, s.rater_id, s.level, :at FROM {_STAGING} s {skip}ORDER BY s.row"
        ),
        {"study": study.id, "at": utcnow()},
    ).rowcount


def import_vote_chunks(
    session: Session,
    study: Study,
    chunks: Iterable[pd.DataFrame],
    item: str = "item",
    rater: str = "rater",
    vote: str = "vote",
    source: str = "votes table",
    chunk_rows: int = IMPORT_CHUNK_ROWS,
    bulk_rows: int = BULK_IMPORT_ROWS,
) -> tuple[int, int]:
    """Import a vote table given as consecutive chunks; see :func:`toolkit.store.import_votes`.

    Returns (added, skipped). Nothing is committed here. From ``bulk_rows`` new votes on, the
    import takes the bulk way (:mod:`toolkit.store.bulk_load`).
    """
    coded = _code_table(session, study, chunks, item, rater, vote, source)
    keys, levels = coded.arrays()
    if keys.size == 0:
        return 0, 0
    _check_no_repeats(keys, coded, source)
    connection = session.connection()
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        added, skipped = _store_postgresql(session, study, keys, levels, chunk_rows, coded, source, bulk_rows)
    else:
        added, skipped = _store_in_chunks(session, study, keys, levels, chunk_rows, coded, source, bulk_rows)
    session.flush()
    return added, skipped


def import_vote_file(
    session: Session,
    study: Study,
    path: str | Path,
    item: str = "item",
    rater: str = "rater",
    vote: str = "vote",
    chunk_rows: int = IMPORT_CHUNK_ROWS,
    bulk_rows: int = BULK_IMPORT_ROWS,
) -> tuple[int, int]:
    """Import the vote table at ``path`` (CSV, Parquet, JSON), streamed ``chunk_rows`` rows at a time."""
    chunks = read_vote_chunks(path, item, rater, vote, chunk_rows)
    return import_vote_chunks(
        session, study, chunks, item, rater, vote, source=str(path), chunk_rows=chunk_rows, bulk_rows=bulk_rows
    )
