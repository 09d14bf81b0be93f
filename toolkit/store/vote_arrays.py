"""A study's votes read as integer arrays, not as one Python row per vote.

Every path that reads all of a study's votes (the snapshot the analysis and the converters
read, the import's comparison with the stored votes) goes through here. The database packs
each vote into one integer, ``item_id << 33 | rater_id << 3 | level``, so the driver hands over
one number a vote, turned into numpy arrays a batch at a time; times come as microseconds since
the epoch (exact in a float64 for the next 200 years). On a 2-core machine that reads about
three million votes a second from SQLite and from PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import chain
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, func, select

from toolkit.store.schema import Item, Rater

FETCH_ROWS = 200_000
"""Rows fetched from the driver per batch."""

_ID_BITS = 30  # item and rater ids below 2**30 fit the packed layout; larger ones use three columns


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
    """The time columns of the same votes: microseconds since 1970 (UTC), NaN where empty."""

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


def read_packed_votes(connection: Connection, study_id: int, where: str = "") -> np.ndarray | None:
    """The study's votes, oldest first, as ``item_id << 33 | rater_id << 3 | level`` (int64, 8 bytes
    a vote); None when an id is too large for that layout (then use :func:`read_vote_arrays`)."""
    p = placeholder(connection)
    # A vote's item and rater ids are at most the largest ids of those tables: two primary-key
    # look-ups, where the votes' own maximum would read every vote of the study (once per block
    # for a blockwise caller).
    top = max(
        connection.execute(select(func.max(Item.id))).scalar() or 0,
        connection.execute(select(func.max(Rater.id))).scalar() or 0,
    )
    if top >= 2**_ID_BITS:
        return None
    condition = f"study_id = {p}" + (f" AND {where}" if where else "")
    pg = connection.dialect.name == "postgresql"
    item, rater = ("CAST(item_id AS BIGINT)", "CAST(rater_id AS BIGINT)") if pg else ("item_id", "rater_id")
    return _fetch(
        connection,
        f"SELECT ({item} << 33) | ({rater} << 3) | level FROM ratings WHERE {condition} ORDER BY id",
        (study_id,),
        np.int64,
        1,
    )


_UNPACK_ROWS = 1 << 20  # votes unpacked at a time: the temporaries stay a few MB whatever the study's size


def _unpack(packed: np.ndarray, id_type: type[np.signedinteger] = np.int64) -> VoteArrays:
    """The three arrays of ``item_id << 33 | rater_id << 3 | level`` votes, filled a slice at a time."""
    item = np.empty(packed.size, dtype=id_type)
    rater = np.empty(packed.size, dtype=id_type)
    level = np.empty(packed.size, dtype=np.int8)
    for start in range(0, packed.size, _UNPACK_ROWS):
        part = packed[start : start + _UNPACK_ROWS]
        end = start + part.size
        np.right_shift(part, 33, out=item[start:end])
        np.bitwise_and(part >> 3, 2**_ID_BITS - 1, out=rater[start:end])
        level[start:end] = part & 7
    return VoteArrays(item, rater, level)


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


def _micros(connection: Connection, column: str) -> str:
    """SQL for a stored time as microseconds since the epoch (NULL stays NULL)."""
    if connection.dialect.name == "postgresql":
        return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS DOUBLE PRECISION)"
    # SQLAlchemy stores SQLite times as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, no offset).
    return (
        f"CAST(strftime('%s', substr({column}, 1, 19)) AS INTEGER) * 1000000 + CAST(substr({column}, 21, 6) AS INTEGER)"
    )


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


def read_votes_with_times(
    connection: Connection, study_id: int, where: str = ""
) -> tuple[VoteArrays, VoteTimes] | None:
    """:func:`read_vote_arrays` and :func:`read_vote_times` of the same votes in one pass over them
    (SQLite, ids below ``2**PACKED_ID_BITS``; None otherwise: then call those two).

    Block by block of ``TIME_BLOCK_IDS`` rating ids: the block's first vote gives its times, and each
    packed vote carries in its sign bit whether its times differ from those; only a block where one
    does has its times read vote by vote. Votes and times come from the same query, so they match
    even while votes are being added.
    """
    if connection.dialect.name != "sqlite":
        return None
    top = max(
        connection.execute(select(func.max(Item.id))).scalar() or 0,
        connection.execute(select(func.max(Rater.id))).scalar() or 0,
    )
    if top >= 2**_ID_BITS:
        return None
    condition = "study_id = ?" + (f" AND {where}" if where else "")
    low, high = _id_range(connection, condition, study_id)
    empty = np.empty(0, dtype=np.float64)
    if low is None:
        return VoteArrays(np.empty(0, np.int32), np.empty(0, np.int32), np.empty(0, np.int8)), VoteTimes(
            empty, empty.copy(), empty.copy()
        )
    in_block = f"{condition} AND id >= ? AND id < ?"
    first_sql = f"SELECT {', '.join(_TIME_COLUMNS)} FROM ratings WHERE {in_block} ORDER BY id LIMIT 1"
    changed = " OR ".join(f"{c} IS NOT ?" for c in _TIME_COLUMNS)
    packed_sql = (
        f"SELECT (item_id << 33) | (rater_id << 3) | level | (({changed}) << {_CHANGED_BIT}) "
        f"FROM ratings WHERE {in_block} ORDER BY id"
    )
    micros = ", ".join(_micros(connection, c) for c in _TIME_COLUMNS[:2])
    rows_sql = f"SELECT {micros}, response_ms FROM ratings WHERE {in_block} ORDER BY id"
    packed_parts: list[np.ndarray] = []
    parts: list[list[np.ndarray]] = [[] for _ in _TIME_COLUMNS]
    for start in range(int(low), int(high) + 1, TIME_BLOCK_IDS):
        block = (study_id, start, start + TIME_BLOCK_IDS)
        first = connection.exec_driver_sql(first_sql, block).first()
        if first is None:
            continue
        packed = _fetch(connection, packed_sql, (*first, *block), np.int64, 1)
        if (packed < 0).any():
            rows = _fetch(connection, rows_sql, block, np.float64, 3)
            if len(rows) != len(packed):  # a vote stored in between: read the block's votes again with them
                return None
            for k in range(len(_TIME_COLUMNS)):
                parts[k].append(rows[:, k].copy())
            packed &= np.int64(2**_CHANGED_BIT - 1)
        else:
            for k, value in enumerate(first):
                parts[k].append(np.full(packed.size, _as_micros(value), dtype=np.float64))
        packed_parts.append(packed)
    packed_all = np.concatenate(packed_parts) if packed_parts else np.empty(0, np.int64)
    packed_parts.clear()
    votes = _unpack(packed_all, np.int32)  # ids below 2**30: half the memory of int64
    del packed_all
    # Column by column, each block list emptied once joined: the transient copy is one column's.
    joined: list[np.ndarray] = []
    for column in parts:
        joined.append(np.concatenate(column) if column else empty.copy())
        column.clear()
    return votes, VoteTimes(joined[0], joined[1], joined[2])
