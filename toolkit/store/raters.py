"""What the administrator does to raters: invite, revoke or restore access, screen out or back in,
and issue a fresh token."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.schema import Assignment, Base, Rater, Study, utcnow
from toolkit.store.studies import hash_token


def insert_or_skip(session: Session, table: type[Base], values: dict[str, Any]) -> bool:
    """Insert one row unless it conflicts with a unique key (then nothing changes); True if inserted.

    ON CONFLICT DO NOTHING on SQLite and PostgreSQL keeps the transaction usable after a
    concurrent insert of the same key (a savepoint elsewhere).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        result = session.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        result = session.execute(postgresql_insert(table).values(**values).on_conflict_do_nothing())
    else:
        try:
            with session.begin_nested():
                session.execute(insert(table).values(**values))
            return True
        except IntegrityError:
            return False
    return bool(getattr(result, "rowcount", 0))


def _name_taken(session: Session, study_id: int, name: str) -> bool:
    return session.scalar(select(Rater.id).where(Rater.study_id == study_id, Rater.name == name)) is not None


def create_rater(session: Session, study: Study, name: str, self_registered: bool = False) -> tuple[Rater, str]:
    """A new rater and their token (only its hash is stored: show it once).

    A name the study already has is refused with a one-line StoreError, also when another session
    takes the name between the check and the insert: the insert skips the conflicting row (or runs
    in a savepoint) so this session's transaction stays usable and nothing else it did is lost.
    """
    name = name.strip()
    if not name:
        raise InputError("a rater needs a non-empty name")
    # Read before anything can fail: after a failed flush the study's attributes are expired and
    # reading them raises instead of giving the name.
    study_id, study_name = study.id, study.name
    taken = StoreError(f"a rater named {name!r} already exists in study {study_name!r}")
    if _name_taken(session, study_id, name):
        raise taken
    token = secrets.token_urlsafe(18)
    values = {"study_id": study_id, "name": name, "token_hash": hash_token(token), "self_registered": self_registered}
    dialect = session.get_bind().dialect.name
    rater_id: int | None
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        skip = sqlite_insert(Rater).values(**values).on_conflict_do_nothing(index_elements=["study_id", "name"])
        rater_id = session.execute(skip.returning(Rater.id)).scalar()
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        skip_pg = postgresql_insert(Rater).values(**values).on_conflict_do_nothing(index_elements=["study_id", "name"])
        rater_id = session.execute(skip_pg.returning(Rater.id)).scalar()
    else:
        try:
            with session.begin_nested():
                rater_id = session.execute(insert(Rater).values(**values).returning(Rater.id)).scalar()
        except IntegrityError:
            rater_id = None
    if rater_id is None:
        raise taken
    rater = session.get(Rater, rater_id)
    assert rater is not None  # inserted just now, in this transaction
    return rater, token


def invite_rater(session: Session, study: Study, name: str) -> str:
    """A new rater; returns the invite token (shown once, stored hashed)."""
    return create_rater(session, study, name)[1]


def _study_rater(session: Session, study: Study, name: str) -> Rater:
    rater = session.scalar(select(Rater).where(Rater.study_id == study.id, Rater.name == name))
    if rater is None:
        raise StoreError(f"study {study.name!r} has no rater named {name!r}")
    return rater


def set_rater_access(session: Session, study: Study, name: str, revoked: bool) -> None:
    """Revoke (or restore) a rater's token; a revoked rater's pending item is released."""
    rater = _study_rater(session, study, name)
    rater.revoked = revoked
    if revoked:
        session.execute(delete(Assignment).where(Assignment.rater_id == rater.id))
    session.flush()


def set_rater_excluded(
    session: Session, study: Study, name: str, excluded: bool, reason: str | None = None, by: str | None = None
) -> None:
    """Screen a rater out (their votes stop counting towards the targets and the labels) or back in.

    Recorded as the administrator's override, so a later run of the exclusion rules keeps it.
    """
    rater = _study_rater(session, study, name)
    rater.excluded = excluded
    rater.excluded_by_rules = False
    rater.exclusion_override = "exclude" if excluded else "keep"
    rater.override_reason = (reason or "").strip() or "set by the administrator"
    rater.override_by = (by or "").strip() or None
    rater.override_at = utcnow()
    session.flush()


def reissue_token(session: Session, study: Study, name: str) -> str:
    """A fresh token for a rater who lost theirs; the old one stops working. Votes are kept."""
    rater = _study_rater(session, study, name)
    token = secrets.token_urlsafe(18)
    rater.token_hash = hash_token(token)
    rater.revoked = False
    session.flush()
    return token
