"""Recording votes exactly once, and reading them back as a long table.

A vote is keyed by (rater, item). Recording uses ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite
and PostgreSQL, so a double click, a retried request or two racing submissions store one row and
the first answer stands; no path ever updates a vote silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.bulk_load import BULK_IMPORT_ROWS
from toolkit.store.schema import Item, Rater, Rating, Study, utcnow
from toolkit.store.studies import hash_token
from toolkit.store.vote_import import IMPORT_CHUNK_ROWS, import_vote_chunks

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


def import_votes(
    session: Session,
    study: Study,
    votes: pd.DataFrame,
    item: str = "item",
    rater: str = "rater",
    vote: str = "vote",
    source: str = "votes table",
    chunk_rows: int = IMPORT_CHUNK_ROWS,
    bulk_rows: int = BULK_IMPORT_ROWS,
) -> tuple[int, int]:
    """Import external votes (item path, rater name, vote); raters are created as needed.

    All or nothing: an unknown item, a vote outside 1-5, a rater voting twice on one item in the
    table, or a vote that contradicts one already stored fails the whole import with the row named.
    Votes identical to stored ones are skipped, so re-running an import counts nothing twice.
    The caller's session is one transaction; nothing is committed here. Rows are compared and
    inserted ``chunk_rows`` at a time, so memory stays flat for tables of millions of votes; from
    ``bulk_rows`` new votes on, set-based (:mod:`toolkit.store.bulk_load`). Returns (added, skipped).
    """
    rows = max(1, chunk_rows)
    chunks = (votes.iloc[start : start + rows] for start in range(0, max(1, len(votes)), rows))
    return import_vote_chunks(
        session, study, chunks, item, rater, vote, source=source, chunk_rows=rows, bulk_rows=bulk_rows
    )
