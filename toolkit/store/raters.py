"""What the administrator does to raters: invite, revoke or restore access, screen out or back in,
and issue a fresh token."""

from __future__ import annotations

import secrets

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from toolkit.errors import StoreError
from toolkit.store.schema import Assignment, Rater, Study
from toolkit.store.studies import add_rater, hash_token


def invite_rater(session: Session, study: Study, name: str) -> str:
    """A new rater; returns the invite token (shown once, stored hashed)."""
    return add_rater(session, study, name)[1]


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


def set_rater_excluded(session: Session, study: Study, name: str, excluded: bool) -> None:
    """Screen a rater out (their votes stop counting towards the targets and the labels) or back in."""
    _study_rater(session, study, name).excluded = excluded
    session.flush()


def reissue_token(session: Session, study: Study, name: str) -> str:
    """A fresh token for a rater who lost theirs; the old one stops working. Votes are kept."""
    rater = _study_rater(session, study, name)
    token = secrets.token_urlsafe(18)
    rater.token_hash = hash_token(token)
    rater.revoked = False
    session.flush()
    return token
