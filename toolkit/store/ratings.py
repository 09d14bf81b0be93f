"""Recording votes exactly once, and reading them back as a long table.

A vote is keyed by (rater, item). Recording uses ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite
and PostgreSQL, so a double click, a retried request or two racing submissions store one row and
the first answer stands; no path ever updates a vote silently.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import repeat
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd
from sqlalchemy import Select, Table, select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.io import text_ids
from toolkit.store.schema import Item, Rater, Rating, Study, utcnow
from toolkit.store.studies import hash_token

if TYPE_CHECKING:
    from typing_extensions import Unpack

VOTE_COLUMNS = [
    "item",
    "rater",
    "vote",
    "kind",
    "content_group",
    "role",
    "expected_level",
    "tolerance",
    "sha256",
    "shown_at",
    "answered_at",
    "response_ms",
]


@dataclass
class RecordResult:
    rating: Rating
    created: bool  # False when the rater had already rated this item (the stored vote stands)


def _insert_ignoring_duplicate(session: Session, values: dict[str, Any]) -> bool:
    dialect = session.get_bind().dialect.name
    keys = ["rater_id", "item_id"]
    # RETURNING tells whether the row went in; rowcount is -1 for this statement on psycopg 3.
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(Rating).values(**values).on_conflict_do_nothing(index_elements=keys).returning(Rating.id)
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        stmt = (
            postgresql_insert(Rating).values(**values).on_conflict_do_nothing(index_elements=keys).returning(Rating.id)
        )
    else:  # other back-ends: a savepoint turns the unique violation into "already there"
        from sqlalchemy.exc import IntegrityError

        try:
            with session.begin_nested():
                session.add(Rating(**values))
            return True
        except IntegrityError:
            return False
    return session.execute(stmt).first() is not None


def record_rating(
    session: Session,
    rater: Rater,
    item: Item,
    level: int,
    shown_at: datetime | None = None,
    answered_at: datetime | None = None,
) -> RecordResult:
    """Store ``rater``'s vote on ``item`` once; a repeat returns the stored vote unchanged."""
    if isinstance(level, bool) or level not in (1, 2, 3, 4, 5):
        raise InputError(f"vote must be an integer level 1-5, got {level!r}")
    if rater.revoked:
        raise StoreError("unknown or revoked rater token")
    if item.study_id != rater.study_id:
        raise StoreError(f"item {item.path!r} is not part of rater {rater.name!r}'s study")
    answered_at = answered_at or utcnow()
    response_ms = None
    if shown_at is not None:
        response_ms = (_aware(answered_at) - _aware(shown_at)).total_seconds() * 1000.0
    created = _insert_ignoring_duplicate(
        session,
        dict(
            study_id=item.study_id,
            item_id=item.id,
            rater_id=rater.id,
            level=int(level),
            shown_at=shown_at,
            answered_at=answered_at,
            response_ms=response_ms,
        ),
    )
    rating = session.scalar(select(Rating).where(Rating.rater_id == rater.id, Rating.item_id == item.id))
    assert rating is not None  # just inserted, or inserted earlier
    return RecordResult(rating=rating, created=created)


def record_rating_by_token(
    session: Session, token: str, item_id: int, level: int, shown_at: datetime | None = None
) -> RecordResult:
    """The app's entry point: the token is checked on every vote, not only at login."""
    rater = session.scalar(select(Rater).where(Rater.token_hash == hash_token(token.strip())))
    if rater is None or rater.revoked:
        raise StoreError("unknown or revoked rater token")
    item = session.get(Item, item_id)
    if item is None or item.study_id != rater.study_id:
        raise StoreError(f"no item {item_id} in this rater's study")
    return record_rating(session, rater, item, level, shown_at=shown_at)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything the store writes is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def votes_query(study: Study) -> Select[Unpack[tuple[Any, ...]]]:
    """The statement behind :func:`votes_frame`: one row per vote, ``VOTE_COLUMNS``, oldest first."""
    return (
        select(
            Item.path,
            Rater.name,
            Rating.level,
            Item.kind,
            Item.content_group,
            Item.role,
            Item.expected_level,
            Item.tolerance,
            Item.sha256,
            Rating.shown_at,
            Rating.answered_at,
            Rating.response_ms,
        )
        .join(Item, Rating.item_id == Item.id)
        .join(Rater, Rating.rater_id == Rater.id)
        .where(Rating.study_id == study.id)
        .order_by(Rating.id)
    )


def votes_block(rows: Sequence[Any]) -> pd.DataFrame:
    """Rows of :func:`votes_query` as a frame with ``VOTE_COLUMNS``."""
    if not rows:
        return pd.DataFrame(columns=VOTE_COLUMNS)
    # Column by column: a frame built from Row objects inspects every row, several times slower.
    columns = list(zip(*rows))
    frame = pd.DataFrame({name: pd.Series(values) for name, values in zip(VOTE_COLUMNS, columns)})
    return frame.astype({"vote": "int64"})


def votes_frame(session: Session, study: Study) -> pd.DataFrame:
    """All of a study's votes, one row per vote, columns ``VOTE_COLUMNS`` (item = media path)."""
    return votes_block(session.execute(votes_query(study)).all())


def _insert_votes(
    session: Session, study_id: int, item_ids: np.ndarray, rater_ids: np.ndarray, levels: np.ndarray, at: datetime
) -> None:
    """Insert new votes in bulk, in the session's transaction.

    Plain inserts, not ON CONFLICT DO NOTHING: a vote the app stored since the comparison fails
    the whole import (unique constraint) instead of being counted as imported. PostgreSQL (psycopg
    3) gets COPY, SQLite one executemany of plain tuples: SQLAlchemy's per-row parameter
    processing would cost as much as the insert itself.
    """
    connection = session.connection()
    rows = zip(repeat(study_id), item_ids.tolist(), rater_ids.tolist(), levels.tolist())
    columns = "study_id, item_id, rater_id, level, answered_at"
    ratings = cast(Table, Rating.__table__)
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(f"COPY {ratings.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row((*row, at))
    elif connection.dialect.paramstyle == "qmark":
        # The time as SQLAlchemy's SQLite DateTime stores it, so every vote reads back alike.
        process = connection.dialect.type_descriptor(ratings.c.answered_at.type).bind_processor(connection.dialect)
        stamp = process(at) if process else at
        connection.exec_driver_sql(
            f"INSERT INTO {ratings.name} ({columns}) VALUES (?, ?, ?, ?, ?)", [(*row, stamp) for row in rows]
        )
    else:
        keys = ("study_id", "item_id", "rater_id", "level")
        connection.execute(ratings.insert(), [dict(zip(keys, row), answered_at=at) for row in rows])


IMPORT_CHUNK_ROWS = 100_000
"""Votes checked and inserted per statement batch by :func:`import_votes`."""


def _stored_votes(session: Session, study: Study) -> tuple[np.ndarray, np.ndarray]:
    """The study's stored votes as sorted packed (item id, rater id) keys and their levels.

    Streamed in batches into two arrays (9 bytes a vote): a study of millions of votes is compared
    against without one Python object per stored vote.
    """
    keys: list[np.ndarray] = []
    levels: list[np.ndarray] = []
    # A Core result (no ORM row processing), read column-wise: numpy probing each Row object
    # for the array protocol costs more than the query.
    result = session.connection().execute(
        select(Rating.item_id, Rating.rater_id, Rating.level)
        .where(Rating.study_id == study.id)
        .execution_options(yield_per=IMPORT_CHUNK_ROWS)
    )
    for batch in result.partitions():
        item_ids, rater_ids, batch_levels = zip(*batch)
        keys.append(_pack(np.fromiter(item_ids, np.int64, len(batch)), np.fromiter(rater_ids, np.int64, len(batch))))
        levels.append(np.fromiter(batch_levels, np.int8, len(batch)))
    key = np.concatenate(keys) if keys else np.empty(0, dtype=np.int64)
    level = np.concatenate(levels) if levels else np.empty(0, dtype=np.int8)
    order = np.argsort(key, kind="stable")
    return key[order], level[order]


def _pack(item_ids: np.ndarray, rater_ids: np.ndarray) -> np.ndarray:
    # Ids are positive 32-bit integers in both back-ends' integer primary keys.
    return (item_ids.astype(np.int64) << 32) | rater_ids.astype(np.int64)


def _text_id_codes(values: pd.Series, what: str, source: str) -> tuple[np.ndarray, list[str]]:
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
        text_ids(pd.Series([None], index=[int(np.flatnonzero(blank)[0])], dtype=object), what, source)
    # Values that differ only as written ("7" and 7, "a " and "a") are one id.
    merged, names = pd.factorize(cleaned)
    return merged[codes].astype(np.int64), [str(name) for name in names]


def _create_raters(session: Session, study: Study, names: list[str]) -> dict[str, int]:
    """Rater id by name for ``names``, inserting the missing raters in one batch."""
    raters = {
        name: id_ for name, id_ in session.execute(select(Rater.name, Rater.id).where(Rater.study_id == study.id))
    }
    new = [name for name in dict.fromkeys(names) if name not in raters]
    if new:
        # Imported raters get an unguessable token nobody knows: they cannot log in.
        session.execute(
            cast(Table, Rater.__table__).insert(),
            [
                dict(
                    study_id=study.id,
                    name=name,
                    token_hash=hash_token(f"imported:{secrets.token_hex(16)}"),
                )
                for name in new
            ],
        )
        raters = {
            name: id_ for name, id_ in session.execute(select(Rater.name, Rater.id).where(Rater.study_id == study.id))
        }
    return raters


def import_votes(
    session: Session,
    study: Study,
    votes: pd.DataFrame,
    item: str = "item",
    rater: str = "rater",
    vote: str = "vote",
    source: str = "votes table",
    chunk_rows: int = IMPORT_CHUNK_ROWS,
) -> tuple[int, int]:
    """Import external votes (item path, rater name, vote); raters are created as needed.

    All or nothing: an unknown item, a vote outside 1-5, a rater voting twice on one item in the
    table, or a vote that contradicts one already stored fails the whole import with the row named.
    Votes identical to stored ones are skipped, so re-running an import counts nothing twice.
    The caller's session is one transaction; nothing is committed here. Rows are compared and
    inserted ``chunk_rows`` at a time, so memory stays flat for tables of millions of votes.
    Returns (added, skipped).
    """
    missing = [c for c in (item, rater, vote) if c not in votes.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, votes.columns))})"
        )
    # Imported here: toolkit.levels loads scipy.stats (0.6 s), which no other store command needs.
    from toolkit.levels import check_votes

    raw = votes[vote].reset_index(drop=True)
    # true/false would pass as the numbers 1 and 0; a vote column of booleans is a wrong column.
    is_flag = (
        np.ones(len(raw), dtype=bool)
        if pd.api.types.is_bool_dtype(raw)
        else raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        if raw.dtype == object
        else np.zeros(len(raw), dtype=bool)
    )
    if is_flag.any():
        row = int(np.flatnonzero(is_flag)[0])
        raise InputError(f"{source}, row {row}: vote {raw.iloc[row]!r} is true/false, not a level 1-5")
    try:
        levels = check_votes(pd.to_numeric(raw, errors="coerce")).astype(np.int64)
    except InputError as exc:
        raise InputError(f"{source}: {exc} (row numbers count data rows from 0)") from None
    # Text ids, stripped, never "nan": a blank item or rater fails the import (rows from 0).
    item_codes, item_names = _text_id_codes(votes[item], f"item ({item!r})", source)
    rater_codes, rater_names = _text_id_codes(votes[rater], f"rater ({rater!r})", source)
    pair = item_codes * max(1, len(rater_names)) + rater_codes
    dup = pd.Series(pair).duplicated(keep=False).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        rows = np.flatnonzero(pair == pair[i]).tolist()
        raise InputError(
            f"{source}: rater {rater_names[rater_codes[i]]!r} votes more than once on "
            f"{item_names[item_codes[i]]!r} (rows {rows})"
        )
    del dup, pair

    known = {path: id_ for path, id_ in session.execute(select(Item.path, Item.id).where(Item.study_id == study.id))}
    item_id_of_code = np.array([known.get(name, -1) for name in item_names], dtype=np.int64)
    unknown = item_id_of_code[item_codes] < 0
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise InputError(f"{source}, row {row}: item {item_names[item_codes[row]]!r} is not in study {study.name!r}")
    raters = _create_raters(session, study, rater_names)
    rater_id_of_code = np.array([raters[name] for name in rater_names], dtype=np.int64)
    keys = _pack(item_id_of_code[item_codes], rater_id_of_code[rater_codes])
    del unknown

    stored_keys, stored_levels = _stored_votes(session, study)
    now = utcnow()
    added = skipped = 0
    for start in range(0, len(keys), max(1, chunk_rows)):
        key = keys[start : start + chunk_rows]
        level = levels[start : start + chunk_rows]
        at = np.searchsorted(stored_keys, key)
        found = at < len(stored_keys)
        found[found] = stored_keys[at[found]] == key[found]
        clash = found & (stored_levels[np.minimum(at, len(stored_keys) - 1)] != level) if found.any() else found
        if clash.any():
            i = int(np.flatnonzero(clash)[0])
            row = start + i
            raise InputError(
                f"{source}, row {row}: rater {rater_names[rater_codes[row]]!r} already has vote "
                f"{int(stored_levels[at[i]])} on {item_names[item_codes[row]]!r}, the table says {int(level[i])}"
            )
        skipped += int(found.sum())
        new = ~found
        if new.any():
            fresh = key[new]
            _insert_votes(session, study.id, fresh >> 32, fresh & 0xFFFFFFFF, level[new], now)
            added += len(fresh)
    session.flush()
    return added, skipped
