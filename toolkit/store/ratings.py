"""Recording votes exactly once, and reading them back as a long table.

A vote is keyed by (rater, item). Recording uses ``INSERT ... ON CONFLICT DO NOTHING`` on SQLite
and PostgreSQL, so a double click, a retried request or two racing submissions store one row and
the first answer stands; no path ever updates a vote silently.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, cast

import pandas as pd
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.io import text_ids
from toolkit.levels import check_votes
from toolkit.store.schema import Item, Rater, Rating, Study, utcnow
from toolkit.store.studies import hash_token

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


def votes_frame(session: Session, study: Study) -> pd.DataFrame:
    """All of a study's votes, one row per vote, columns ``VOTE_COLUMNS`` (item = media path)."""
    rows = session.execute(
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
    ).all()
    frame = pd.DataFrame(rows, columns=VOTE_COLUMNS)
    return frame.astype({"vote": "int64"}) if not frame.empty else frame


def import_votes(
    session: Session,
    study: Study,
    votes: pd.DataFrame,
    item: str = "item",
    rater: str = "rater",
    vote: str = "vote",
    source: str = "votes table",
) -> tuple[int, int]:
    """Import external votes (item path, rater name, vote); raters are created as needed.

    All or nothing: an unknown item, a vote outside 1-5, a rater voting twice on one item in the
    table, or a vote that contradicts one already stored fails the whole import with the row named.
    Votes identical to stored ones are skipped, so re-running an import counts nothing twice.
    Returns (added, skipped).
    """
    missing = [c for c in (item, rater, vote) if c not in votes.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(missing)} (found {', '.join(map(str, votes.columns))})"
        )
    table = (
        votes[[item, rater, vote]].rename(columns={item: "item", rater: "rater", vote: "vote"}).reset_index(drop=True)
    )
    try:
        table["vote"] = check_votes(pd.to_numeric(table["vote"], errors="coerce"))
    except InputError as exc:
        raise InputError(f"{source}: {exc} (row numbers count data rows from 0)") from None
    # Text ids, stripped, never "nan": a blank item or rater fails the import (rows from 0).
    table["item"] = text_ids(table["item"], f"item ({item!r})", source)
    table["rater"] = text_ids(table["rater"], f"rater ({rater!r})", source)
    dup = table.duplicated(["item", "rater"], keep=False)
    if dup.any():
        first = table[dup].iloc[0]
        rows = table.index[dup & (table["item"] == first["item"]) & (table["rater"] == first["rater"])].tolist()
        raise InputError(f"{source}: rater {first['rater']!r} votes more than once on {first['item']!r} (rows {rows})")

    items = {i.path: i for i in session.scalars(select(Item).where(Item.study_id == study.id))}
    unknown = ~table["item"].isin(list(items))
    if unknown.any():
        row = int(table.index[unknown][0])
        raise InputError(f"{source}, row {row}: item {table.at[row, 'item']!r} is not in study {study.name!r}")

    raters = {r.name: r for r in session.scalars(select(Rater).where(Rater.study_id == study.id))}
    for name in table["rater"].unique():
        if name not in raters:
            # Imported raters get an unguessable token nobody knows: they cannot log in.
            new = Rater(study_id=study.id, name=name, token_hash=hash_token(f"imported:{secrets.token_hex(16)}"))
            session.add(new)
            raters[name] = new
    session.flush()

    stored = {
        (r.item_id, r.rater_id): r.level for r in session.scalars(select(Rating).where(Rating.study_id == study.id))
    }
    added = skipped = 0
    now = utcnow()
    new_rows = []
    for row, (path, name, level) in enumerate(table[["item", "rater", "vote"]].itertuples(index=False)):
        key = (items[path].id, raters[name].id)
        if key in stored:
            if stored[key] != level:
                raise InputError(
                    f"{source}, row {row}: rater {name!r} already has vote {stored[key]} on {path!r}, "
                    f"the table says {level}"
                )
            skipped += 1
            continue
        new_rows.append(dict(study_id=study.id, item_id=key[0], rater_id=key[1], level=int(level), answered_at=now))
        added += 1
    if new_rows:
        # Declarative classes expose ``__table__`` as a FromClause; a mapped class with
        # ``__tablename__`` always has a Table there.
        ratings_table = cast(Table, Rating.__table__)
        session.execute(ratings_table.insert(), new_rows)
    session.flush()
    return added, skipped
