"""A study's votes read as integer arrays, not as one Python row per vote.

Every path that reads all of a study's votes (the snapshot the analysis and the converters
read, the import's comparison with the stored votes) goes through here. The database packs
each vote into one integer, ``item_id << 33 | rater_id << 3 | level``, so the driver hands over
one number a vote, turned into numpy arrays a batch at a time; times come as microseconds since
the epoch (exact in a float64 for the next 200 years). On a 2-core machine that reads about
three million votes a second from SQLite and from PostgreSQL.

Two readers skip the Python object per vote altogether: a SQLite study of ``COLUMNAR_MIN_VOTES``
votes or more is read as Arrow columns through an ADBC connection to the same file
(:mod:`toolkit.store.sqlite_columns`), and PostgreSQL (psycopg) sends a block of votes at a time as
arrays in a binary COPY on the session's own connection (:mod:`toolkit.store.pg_copy`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Any, Protocol, cast

import numpy as np
from sqlalchemy import Connection, func, select

from toolkit.errors import StoreError
from toolkit.store import pg_copy
from toolkit.store.schema import Item, Rater
from toolkit.store.sqlite_columns import ColumnReader, column_reader, database_uri

FETCH_ROWS = 200_000
"""Rows fetched from the driver per batch."""

_ID_BITS = 30  # item and rater ids below 2**30 fit the packed layout; larger ones use three columns

COLUMNAR_MIN_VOTES = 200_000
"""A SQLite study with this many votes or more is read through ADBC (below, opening a second
connection costs more than the Python objects it saves)."""


@dataclass(frozen=True)
class VoteArrays:
    """A study's votes in rating order (oldest first): ids and levels, one entry per vote."""

    item_id: np.ndarray  # int64 (int32 from read_votes_with_times: its ids are below 2**30)
    rater_id: np.ndarray  # same type as item_id
    level: np.ndarray  # int8

    def __len__(self) -> int:
        return int(self.level.size)


@dataclass(frozen=True)
class VoteTimes:
    """The time columns of the same votes: microseconds since 1970 (UTC), NaN where empty. From
    :func:`read_votes_with_times` a column may be a read-only view of one value shared by all."""

    shown_us: np.ndarray  # float64
    answered_us: np.ndarray  # float64
    response_ms: np.ndarray  # float64


def _cursor(connection: Connection) -> Any:
    """A DB-API cursor on the session's connection; a server-side one on PostgreSQL (streamed)."""
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        driver: Any = connection.connection.driver_connection
        return driver.cursor(name="qalign_vote_arrays")
    return connection.connection.cursor()


def placeholder(connection: Connection) -> str:
    """The driver's parameter mark, for SQL run on its own cursor (``?`` on SQLite, ``%s`` on psycopg)."""
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _fetch(connection: Connection, sql: str, params: tuple[Any, ...], dtype: Any, width: int) -> np.ndarray:
    """All rows of ``sql`` as an (n, width) array (or (n,) when ``width`` is 1), batch by batch."""
    cursor = _cursor(connection)
    try:
        cursor.execute(sql, params)
        parts: list[np.ndarray] = []
        while rows := cursor.fetchmany(FETCH_ROWS):
            if width == 1:
                parts.append(np.fromiter(chain.from_iterable(rows), dtype, len(rows)))
            else:
                parts.append(np.array(rows, dtype=dtype).reshape(len(rows), width))
    finally:
        cursor.close()
    if not parts:
        return np.empty((0,) if width == 1 else (0, width), dtype=dtype)
    return np.concatenate(parts)


PACKED_ID_BITS = _ID_BITS
"""Ids below ``2**PACKED_ID_BITS`` fit :func:`read_packed_votes`' layout."""


def _ids_fit(connection: Connection) -> bool:
    """Whether every item and rater id is below ``2**PACKED_ID_BITS`` (the packed layout)."""
    # A vote's item and rater ids are at most the largest ids of those tables: two primary-key
    # look-ups, where the votes' own maximum would read every vote of the study (once per block
    # for a blockwise caller).
    top = max(
        connection.execute(select(func.max(Item.id))).scalar() or 0,
        connection.execute(select(func.max(Rater.id))).scalar() or 0,
    )
    return top < 2**_ID_BITS


def _psycopg(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg"


def _columnar_uri(connection: Connection, study_id: int) -> str | None:
    """The URI to read this SQLite study through ADBC; None to read it through the session."""
    if connection.dialect.name != "sqlite":
        return None
    # The stored per-item counts: a cheap upper bound of the votes read (no pass over them).
    stored = connection.execute(
        select(func.coalesce(func.sum(Item.n_votes), 0)).where(Item.study_id == study_id)
    ).scalar()
    return database_uri(connection) if int(stored or 0) >= COLUMNAR_MIN_VOTES else None


def read_packed_votes(connection: Connection, study_id: int, where: str = "") -> np.ndarray | None:
    """The study's votes, oldest first, as ``item_id << 33 | rater_id << 3 | level`` (int64, 8 bytes
    a vote); None when an id is too large for that layout (then use :func:`read_vote_arrays`)."""
    if not _ids_fit(connection):
        return None
    if _psycopg(connection):
        return _copy_packed(connection, study_id, where)
    p = placeholder(connection)
    condition = f"study_id = {p}" + (f" AND {where}" if where else "")
    pg = connection.dialect.name == "postgresql"
    sql = f"SELECT {_PG_PACKED if pg else _PACKED} FROM ratings WHERE {condition} ORDER BY id"
    uri = _columnar_uri(connection, study_id)
    if uri is not None:
        with column_reader(uri) as reader:
            packed = reader.columns(sql, (study_id,))[0].astype(np.int64, copy=False)
        return packed if packed.flags.writeable else packed.copy()  # callers may sort it in place
    return _fetch(connection, sql, (study_id,), np.int64, 1)


_PACKED = "(item_id << 33) | (rater_id << 3) | level"
_PG_PACKED = "(CAST(item_id AS BIGINT) << 33) | (CAST(rater_id AS BIGINT) << 3) | level"


_UNPACK_ROWS = 1 << 20  # votes unpacked at a time: the temporaries stay a few MB whatever the study's size


def _unpack(packed: np.ndarray, id_type: type[np.signedinteger] = np.int64) -> VoteArrays:
    """The three arrays of ``item_id << 33 | rater_id << 3 | level`` votes, filled a slice at a time."""
    votes = VoteArrays(np.empty(packed.size, id_type), np.empty(packed.size, id_type), np.empty(packed.size, np.int8))
    _unpack_into(packed, votes, 0)
    return votes


def _unpack_into(packed: np.ndarray, votes: VoteArrays, at: int) -> None:
    """``packed`` unpacked into ``votes`` from position ``at`` on (the sign bit is left out)."""
    for start in range(0, packed.size, _UNPACK_ROWS):
        part = packed[start : start + _UNPACK_ROWS]
        begin, end = at + start, at + start + part.size
        np.bitwise_and(part >> 33, 2**_ID_BITS - 1, out=votes.item_id[begin:end], casting="unsafe")
        np.bitwise_and(part >> 3, 2**_ID_BITS - 1, out=votes.rater_id[begin:end], casting="unsafe")
        np.bitwise_and(part, 7, out=votes.level[begin:end], casting="unsafe")


def read_vote_arrays(connection: Connection, study_id: int, where: str = "") -> VoteArrays:
    """The study's votes (``where``: an extra SQL condition on ``ratings``), oldest first."""
    packed = read_packed_votes(connection, study_id, where)
    if packed is not None:
        return _unpack(packed)
    p = placeholder(connection)
    condition = f"study_id = {p}" + (f" AND {where}" if where else "")
    rows = _fetch(
        connection,
        f"SELECT item_id, rater_id, level FROM ratings WHERE {condition} ORDER BY id",
        (study_id,),
        np.int64,
        3,
    )
    return VoteArrays(rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].astype(np.int8))


# SQLAlchemy stores SQLite times as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, no offset).
_SQLITE_MICROS = (
    "CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000 + CAST(substr({column}, 21, 6) AS INTEGER)"
)
_PG_MICROS = "CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS DOUBLE PRECISION)"  # exact: a numeric product


def _micros(connection: Connection, column: str) -> str:
    """SQL for a stored time as microseconds since the epoch (NULL stays NULL)."""
    return (_PG_MICROS if connection.dialect.name == "postgresql" else _SQLITE_MICROS).format(column=column)


TIME_BLOCK_IDS = 65_536
"""Rating ids per block of :func:`read_vote_times`."""

_TIME_COLUMNS = ("shown_at", "answered_at", "response_ms")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _as_micros(value: object) -> float:
    """A stored time (a datetime, or SQLite's text) or a number as a float; None as NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite's are UTC
        return float((moment - _EPOCH) // timedelta(microseconds=1))
    return float(cast(float, value))


def _id_range(connection: Connection, condition: str, study_id: int) -> tuple[Any, Any]:
    """The least and largest rating id of the votes ``condition`` selects (None, None: no votes)."""
    if connection.dialect.name == "sqlite":
        # SQLite's index on study_id holds the rowid in order: the first and the last entry are two
        # look-ups, where min(id), max(id) reads every entry of the study's.
        first = f"SELECT id FROM ratings WHERE {condition} ORDER BY id"
        low = connection.exec_driver_sql(f"{first} LIMIT 1", (study_id,)).scalar()
        high = connection.exec_driver_sql(f"{first} DESC LIMIT 1", (study_id,)).scalar()
        return low, high
    low, high = connection.exec_driver_sql(f"SELECT min(id), max(id) FROM ratings WHERE {condition}", (study_id,)).one()
    return low, high


def read_vote_times(connection: Connection, study_id: int, where: str = "") -> VoteTimes:
    """The time columns of :func:`read_vote_arrays`' votes, in the same order.

    Read a block of ``TIME_BLOCK_IDS`` rating ids at a time: a block whose votes share each time
    (an import stamps all its votes alike and leaves the others empty) costs one aggregate row;
    only a block of votes given in the app is read vote by vote.
    """
    p = placeholder(connection)
    condition = f"study_id = {p}" + (f" AND {where}" if where else "")
    low, high = _id_range(connection, condition, study_id)
    if low is None:
        empty = np.empty(0, dtype=np.float64)
        return VoteTimes(empty, empty.copy(), empty.copy())
    in_block = f"{condition} AND id >= {p} AND id < {p}"
    summary = "SELECT count(*), " + ", ".join(f"count({c}), min({c}), max({c})" for c in _TIME_COLUMNS)
    summary += f" FROM ratings WHERE {in_block}"
    micros = ", ".join(_micros(connection, c) for c in _TIME_COLUMNS[:2])
    rows_sql = f"SELECT {micros}, response_ms FROM ratings WHERE {in_block} ORDER BY id"
    # One list of parts per column, joined column by column: the transient copy is one column's.
    parts: list[list[np.ndarray]] = [[] for _ in _TIME_COLUMNS]
    for start in range(int(low), int(high) + 1, TIME_BLOCK_IDS):
        params = (study_id, start, start + TIME_BLOCK_IDS)
        n, *stats = connection.exec_driver_sql(summary, params).one()
        if not n:
            continue
        columns = [stats[3 * k : 3 * k + 3] for k in range(len(_TIME_COLUMNS))]
        if all(count == 0 or (count == n and least == most) for count, least, most in columns):
            for k, (count, least, _) in enumerate(columns):
                parts[k].append(np.full(n, _as_micros(least) if count else np.nan, dtype=np.float64))
        else:
            rows = _fetch(connection, rows_sql, params, np.float64, 3)
            for k in range(len(_TIME_COLUMNS)):
                parts[k].append(rows[:, k].copy())
    joined: list[np.ndarray] = []
    for column in parts:
        joined.append(np.concatenate(column) if column else np.empty(0, dtype=np.float64))
        column.clear()
    return VoteTimes(joined[0], joined[1], joined[2])


_CHANGED_BIT = 63  # the sign bit of a packed vote, free: ids below 2**30 use bits 3 to 62


def _empty_votes() -> tuple[VoteArrays, VoteTimes]:
    empty = np.empty(0, dtype=np.float64)
    votes = VoteArrays(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int8))
    return votes, VoteTimes(empty, empty.copy(), empty.copy())


def read_votes_with_times(
    connection: Connection, study_id: int, where: str = ""
) -> tuple[VoteArrays, VoteTimes] | None:
    """:func:`read_vote_arrays` and :func:`read_vote_times` of the same votes in one pass over them
    (SQLite and PostgreSQL through psycopg, ids below ``2**PACKED_ID_BITS``; None otherwise: then
    call those two).

    Block by block of ``TIME_BLOCK_IDS`` rating ids: the block's first vote gives its times, and each
    packed vote carries in its sign bit whether its times differ from those; only a block where one
    does has its times read vote by vote. Through ADBC all of it is one read transaction and on
    PostgreSQL one statement; on the session's SQLite connection a block read vote by vote is
    checked to hold the same votes (None otherwise). So votes and times match even while votes are
    being added.
    """
    if connection.dialect.name not in ("sqlite", "postgresql") or not _ids_fit(connection):
        return None
    if _psycopg(connection):
        return _copy_votes_with_times(connection, study_id, where)
    if connection.dialect.name != "sqlite":
        return None
    condition = "study_id = ?" + (f" AND {where}" if where else "")
    uri = _columnar_uri(connection, study_id)
    if uri is None:
        return _blocks_with_times(_SessionReader(connection), condition, study_id)
    with column_reader(uri) as reader:
        both = _blocks_with_times(_AdbcReader(reader), condition, study_id)
    _give_back_freed_memory()
    return both


def _give_back_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc). A block-by-block read leaves hundreds
    of block-sized buffers freed in the heap (the driver's, not numpy's own large arrays), which
    would otherwise stay counted in the process's memory: 250 MB at 50 M votes."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to hand back this way
        pass


class _BlockReader(Protocol):
    """Where :func:`_blocks_with_times` reads: a row, a block's packed votes, a block's times."""

    def row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None: ...

    def packed(self, sql: str, params: tuple[Any, ...]) -> np.ndarray: ...

    def times(self, in_block: str, params: tuple[Any, ...]) -> list[np.ndarray]: ...


class _SessionReader:
    """SQL on the session's own connection, through its driver (a Python object per value)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row = self.connection.exec_driver_sql(sql, params).first()
        return None if row is None else tuple(row)

    def packed(self, sql: str, params: tuple[Any, ...]) -> np.ndarray:
        return _fetch(self.connection, sql, params, np.int64, 1)

    def times(self, in_block: str, params: tuple[Any, ...]) -> list[np.ndarray]:
        micros = ", ".join(_micros(self.connection, c) for c in _TIME_COLUMNS[:2])
        rows = _fetch(
            self.connection,
            f"SELECT {micros}, response_ms FROM ratings WHERE {in_block} ORDER BY id",
            params,
            np.float64,
            3,
        )
        return [rows[:, k].copy() for k in range(len(_TIME_COLUMNS))]


class _AdbcReader:
    """The same SQL on an ADBC connection to the file: Arrow columns, no Python object per value."""

    def __init__(self, reader: ColumnReader) -> None:
        self.reader = reader

    def row(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        return self.reader.row(sql, params)

    def packed(self, sql: str, params: tuple[Any, ...]) -> np.ndarray:
        return self.reader.columns(sql, params)[0].astype(np.int64, copy=False)

    def times(self, in_block: str, params: tuple[Any, ...]) -> list[np.ndarray]:
        # ADBC types a column by its first rows: a response time column NULL there would be typed as
        # an integer and fail at its first real value. So the value (never NULL) and whether it is NULL.
        micros = ", ".join(_SQLITE_MICROS.format(column=c) for c in _TIME_COLUMNS[:2])
        sql = f"SELECT {micros}, ifnull(CAST(response_ms AS REAL), 0.0), response_ms IS NULL FROM ratings"
        shown, answered, response, missing = self.reader.columns(f"{sql} WHERE {in_block} ORDER BY id", params)
        response = response.astype(np.float64)
        response[missing.astype(bool)] = np.nan
        return [shown.astype(np.float64, copy=False), answered.astype(np.float64, copy=False), response]


def _blocks_with_times(reader: _BlockReader, condition: str, study_id: int) -> tuple[VoteArrays, VoteTimes] | None:
    """:func:`read_votes_with_times` on SQLite through ``reader`` (None: read again in two passes)."""
    # The index on study_id holds the rowid in order: the study's first and last vote are two look-ups.
    first_id = f"SELECT id FROM ratings WHERE {condition} ORDER BY id"
    low, high = reader.row(f"{first_id} LIMIT 1", (study_id,)), reader.row(f"{first_id} DESC LIMIT 1", (study_id,))
    if low is None or high is None:
        return _empty_votes()
    in_block = f"{condition} AND id >= ? AND id < ?"
    first_sql = f"SELECT {', '.join(_TIME_COLUMNS)} FROM ratings WHERE {in_block} ORDER BY id LIMIT 1"
    changed = " OR ".join(f"{c} IS NOT ?" for c in _TIME_COLUMNS)
    packed_sql = f"SELECT {_PACKED} | (({changed}) << {_CHANGED_BIT}) FROM ratings WHERE {in_block} ORDER BY id"
    blocks: list[_Block] = []
    for start in range(int(low[0]), int(high[0]) + 1, TIME_BLOCK_IDS):
        block = (study_id, start, start + TIME_BLOCK_IDS)
        first = reader.row(first_sql, block)
        if first is None:
            continue
        packed = reader.packed(packed_sql, (*first, *block))
        if (packed < 0).any():
            times = reader.times(in_block, block)
            if len(times[0]) != len(packed):  # a vote stored in between: read the block's votes again with them
                return None
            blocks.append(_Block(packed, times))
        else:
            blocks.append(_Block(packed, [_as_micros(value) for value in first]))
    return _joined(blocks)


@dataclass
class _Block:
    """A block's packed votes (the sign bit may be set) and its times: a column each, or one value
    each when all its votes share them."""

    packed: np.ndarray
    times: Sequence[np.ndarray | float]


def _shared(blocks: list[_Block], k: int) -> float | None:
    """The one value time column ``k`` has for every vote of the blocks (NaN: empty), else None."""
    values = [block.times[k] for block in blocks]
    if not all(isinstance(value, float) for value in values):
        return None  # a block whose votes differ
    distinct = set(np.asarray(values, dtype=np.float64).view(np.int64).tolist())  # NaN equals NaN here
    return float(values[0]) if len(distinct) <= 1 and values else None


def _joined(blocks: list[_Block]) -> tuple[VoteArrays, VoteTimes]:
    """The blocks' votes and times as whole arrays, each block written into them and let go: no
    array the size of the study but the result. A time column whose votes all share one value (an
    imported study: one answer time, no display or response time) is that value seen n times, a
    read-only view that takes no memory."""
    n = sum(block.packed.size for block in blocks)
    votes = VoteArrays(np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int8))  # ids below 2**30
    shared = [_shared(blocks, k) for k in range(len(_TIME_COLUMNS))]
    columns = [np.empty(n) if value is None else np.broadcast_to(np.float64(value), (n,)) for value in shared]
    at = 0
    for k, block in enumerate(blocks):
        end = at + block.packed.size
        _unpack_into(block.packed, votes, at)
        for column, value, values in zip(columns, shared, block.times):
            if value is None:
                np.copyto(column[at:end], values)
        blocks[k] = _Block(np.empty(0, np.int64), ())  # its memory goes now, not with the list
        at = end
    return votes, VoteTimes(columns[0], columns[1], columns[2])


# PostgreSQL (psycopg): a binary COPY of one row per block of rating ids, the votes as arrays.

_BLOCK = "id >= blocks.first_id AND id < blocks.first_id + {size}"
_BLOCKS = "generate_series(CAST(%(low)s AS BIGINT), CAST(%(high)s AS BIGINT), {size}) AS blocks(first_id)"


def _copy_rows(connection: Connection, sql: str, params: dict[str, Any], n_fields: int) -> Iterator[list[bytes | None]]:
    """The rows of ``sql`` through a binary COPY on the session's own connection."""
    driver: Any = connection.connection.driver_connection
    with driver.cursor() as cursor, cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
        yield from pg_copy.copy_rows(copy, n_fields)


def _pg_blocks(connection: Connection, study_id: int, where: str) -> tuple[str, str, dict[str, Any]] | None:
    """The condition on a block's votes, the block series and their parameters; None: no votes."""
    condition = "study_id = %(study)s" + (f" AND {where}" if where else "")
    low, high = _id_range(connection, "study_id = %s" + (f" AND {where}" if where else ""), study_id)
    if low is None:
        return None
    params = {"study": study_id, "low": int(low), "high": int(high)}
    in_block = f"{condition} AND {_BLOCK.format(size=TIME_BLOCK_IDS)}"
    return in_block, _BLOCKS.format(size=TIME_BLOCK_IDS), params


def _copy_packed(connection: Connection, study_id: int, where: str) -> np.ndarray:
    """:func:`read_packed_votes` on PostgreSQL through psycopg."""
    plan = _pg_blocks(connection, study_id, where)
    if plan is None:
        return np.empty(0, np.int64)
    in_block, series, params = plan
    sql = f"SELECT ARRAY(SELECT {_PG_PACKED} FROM ratings WHERE {in_block} ORDER BY id) FROM {series}"
    sql += " ORDER BY blocks.first_id"
    parts = [pg_copy.array_values(row[0], ">i8") for row in _copy_rows(connection, sql, params, 1)]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _pg_micros(column: str) -> str:
    """A time as microseconds, NaN where empty: every field of the COPY has 8 bytes."""
    return f"coalesce({_PG_MICROS.format(column=column)}, 'NaN')"


def _copy_votes_with_times(connection: Connection, study_id: int, where: str) -> tuple[VoteArrays, VoteTimes]:
    """:func:`read_votes_with_times` on PostgreSQL through psycopg: one statement, so one state of
    the votes. A row per block: the first vote's three times, the packed votes (the sign bit: this
    vote's times differ from those) and, only where one does, the block's times vote by vote."""
    plan = _pg_blocks(connection, study_id, where)
    if plan is None:
        return _empty_votes()
    in_block, series, params = plan
    response = "coalesce(CAST({} AS DOUBLE PRECISION), 'NaN')"
    head = [_pg_micros("head.shown_at"), _pg_micros("head.answered_at"), response.format("head.response_ms")]
    per_vote = [_pg_micros("shown_at"), _pg_micros("answered_at"), response.format("response_ms")]
    changed = " OR ".join(f"{c} IS DISTINCT FROM head.{c}" for c in _TIME_COLUMNS)
    flagged = f"{_PG_PACKED} | (CAST(CAST(({changed}) AS INTEGER) AS BIGINT) << {_CHANGED_BIT})"
    vote_times = [
        f"CASE WHEN block.mixed THEN ARRAY(SELECT {value} FROM ratings WHERE {in_block} ORDER BY id) END"
        for value in per_vote
    ]
    # OFFSET 0 keeps each lateral subquery whole: pulled up into the select list, the block's array
    # would be built again for every reference to it (four times a block).
    sql = (
        f"SELECT {', '.join(head)}, votes.packed, {', '.join(vote_times)} FROM {series}"
        f" CROSS JOIN LATERAL (SELECT {', '.join(_TIME_COLUMNS)} FROM ratings WHERE {in_block}"
        " ORDER BY id LIMIT 1) AS head"
        f" CROSS JOIN LATERAL (SELECT ARRAY(SELECT {flagged} FROM ratings WHERE {in_block} ORDER BY id) AS packed"
        " OFFSET 0) AS votes"
        " CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM unnest(votes.packed) AS vote(v) WHERE vote.v < 0) AS mixed"
        " OFFSET 0) AS block"
        " ORDER BY blocks.first_id"
    )
    blocks: list[_Block] = []
    for row in _copy_rows(connection, sql, params, 7):
        packed = pg_copy.array_values(row[3], ">i8")
        if (packed < 0).any():
            times = [pg_copy.array_values(field, ">f8") for field in row[4:]]
            if any(column.size != packed.size for column in times):
                raise StoreError("unexpected PostgreSQL COPY stream: a block's times are not one a vote")
            blocks.append(_Block(packed, times))
        elif any(field is not None for field in row[4:]):
            raise StoreError("unexpected PostgreSQL COPY stream: times vote by vote for a block without changes")
        else:
            blocks.append(_Block(packed, [pg_copy.scalar_value(field) for field in row[:3]]))
    both = _joined(blocks)
    _give_back_freed_memory()
    return both
