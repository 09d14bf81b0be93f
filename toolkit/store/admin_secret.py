"""The admin secret that guards the administrator's pages: stored as a salted PBKDF2 hash only.

Wrong secrets are counted in the database, not in the browser session, so that opening a new
session does not reset the count: after ``FREE_TRIES`` failures within ``FAILURE_WINDOW``, each
further try is refused until a time that doubles with every failure (``FIRST_WAIT`` up to
``MAX_WAIT``). Setting a new secret clears the count.

A study may have its own admin secret (``set_study_admin_secret``): it opens that study's admin
pages only, while the global secret still opens every study (``admin_sign_in``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.schema import AppSetting, Study, utcnow

ADMIN_SECRET_KEY = "admin_secret"
ADMIN_SECRET_ENV = "QALIGN_ADMIN_SECRET"
FAILURES_KEY = "admin_sign_in_failures"  # JSON list of the recent wrong tries' times (UTC, ISO 8601)

FREE_TRIES = 5
FAILURE_WINDOW = timedelta(minutes=15)
FIRST_WAIT = timedelta(seconds=30)
MAX_WAIT = timedelta(minutes=15)

_PBKDF2_ROUNDS = 120_000


def _hash_secret(secret: str, salt: bytes, rounds: int = _PBKDF2_ROUNDS) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, rounds)
    return f"pbkdf2_sha256${rounds}${salt.hex()}${digest.hex()}"


def set_admin_secret(session: Session, secret: str) -> None:
    """Store (a salted, slow hash of) the admin secret, replacing any earlier one."""
    if len(secret) < 8:
        raise InputError("the admin secret must be at least 8 characters long")
    value = _hash_secret(secret, secrets.token_bytes(16))
    row = session.get(AppSetting, ADMIN_SECRET_KEY)
    if row is None:
        session.add(AppSetting(key=ADMIN_SECRET_KEY, value=value))
    else:
        row.value = value
    _clear_failures(session)
    session.flush()


def has_admin_secret(session: Session) -> bool:
    return session.get(AppSetting, ADMIN_SECRET_KEY) is not None


def _matches(stored: str, secret: str) -> bool:
    _, rounds, salt, _digest = stored.split("$")
    return hmac.compare_digest(_hash_secret(secret, bytes.fromhex(salt), int(rounds)), stored)


def check_admin_secret(session: Session, secret: str) -> bool:
    """True when ``secret`` is the admin secret (compared in constant time)."""
    row = session.get(AppSetting, ADMIN_SECRET_KEY)
    if row is None or not secret:
        return False
    try:
        return _matches(row.value, secret)
    except ValueError:
        raise StoreError(
            "the stored admin secret is malformed; set a new one with `qalign ui --admin-secret`"
        ) from None


def ensure_admin_secret(session: Session, secret: str | None = None) -> str | None:
    """Make sure an admin secret exists.

    An explicit ``secret`` (or ``$QALIGN_ADMIN_SECRET``) replaces the stored one unless it already
    matches. Without either, a random secret is made when none is stored and returned so it can
    be shown once; otherwise None.
    """
    secret = secret or os.environ.get(ADMIN_SECRET_ENV) or None
    if secret:
        if not check_admin_secret(session, secret):
            set_admin_secret(session, secret)
        return None
    if has_admin_secret(session):
        return None
    generated = secrets.token_urlsafe(12)
    set_admin_secret(session, generated)
    return generated


# --------------------------------------------------------------------------- wrong tries


def _recent_failures(value: str | None, now: datetime) -> list[datetime]:
    try:
        moments = [datetime.fromisoformat(v) for v in json.loads(value)] if value else []
    except (ValueError, TypeError):
        moments = []  # unreadable: start counting afresh rather than lock the administrator out
    aware = [m if m.tzinfo else m.replace(tzinfo=timezone.utc) for m in moments]
    return sorted(m for m in aware if now - FAILURE_WINDOW < m <= now)


def _stored_failures(session: Session) -> str | None:
    return session.scalar(select(AppSetting.value).where(AppSetting.key == FAILURES_KEY))


def sign_in_refused_until(session: Session, now: datetime | None = None) -> datetime | None:
    """When the next sign-in may be tried, if that is later than ``now``; else None."""
    now = now or utcnow()
    failures = _recent_failures(_stored_failures(session), now)
    if len(failures) < FREE_TRIES:
        return None
    wait = min(FIRST_WAIT * 2 ** (len(failures) - FREE_TRIES), MAX_WAIT)
    until = failures[-1] + wait
    return until if until > now else None


def _record_failure(session: Session, now: datetime) -> None:
    # Compare-and-swap on the stored list: two sign-ins failing at once (two browsers, two server
    # processes) both count, on SQLite and PostgreSQL alike.
    for _ in range(50):
        old = _stored_failures(session)
        failures = _recent_failures(old, now) + [now]
        new = json.dumps([m.isoformat() for m in failures[-(FREE_TRIES + 20) :]])
        if old is None:
            if _insert_failures(session, new):
                return
            continue  # another session stored the first failure just now: add to its list
        swapped = session.execute(
            update(AppSetting)
            .where(AppSetting.key == FAILURES_KEY, AppSetting.value == old)
            .values(value=new)
            .execution_options(synchronize_session=False)
        )
        if getattr(swapped, "rowcount", 0) == 1:
            return
    raise StoreError("cannot record the failed admin sign-in: the database is too busy; try again")


def _insert_failures(session: Session, value: str) -> bool:
    dialect = session.get_bind().dialect.name
    if dialect not in ("sqlite", "postgresql"):
        session.add(AppSetting(key=FAILURES_KEY, value=value))
        session.flush()
        return True
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        first = sqlite_insert(AppSetting).values(key=FAILURES_KEY, value=value).on_conflict_do_nothing()
        return session.execute(first.returning(AppSetting.key)).first() is not None
    from sqlalchemy.dialects.postgresql import insert as postgresql_insert

    first_pg = postgresql_insert(AppSetting).values(key=FAILURES_KEY, value=value).on_conflict_do_nothing()
    return session.execute(first_pg.returning(AppSetting.key)).first() is not None


def _clear_failures(session: Session) -> None:
    session.execute(
        update(AppSetting)
        .where(AppSetting.key == FAILURES_KEY)
        .values(value="[]")
        .execution_options(synchronize_session=False)
    )


def try_admin_secret(session: Session, secret: str, now: datetime | None = None) -> bool:
    """A sign-in attempt: True for the admin secret, False (and counted) for a wrong one.

    While too many wrong tries are recent, raises a StoreError saying when to try again, without
    looking at ``secret``: the right secret is refused too, so that guessing gains nothing.
    """
    now = now or utcnow()
    until = sign_in_refused_until(session, now)
    if until is not None:
        seconds = max(1, int((until - now).total_seconds() + 0.999))
        raise StoreError(f"too many wrong admin secrets: try again after {until:%H:%M:%S} UTC (in {seconds} s)")
    if check_admin_secret(session, secret):
        _clear_failures(session)
        return True
    _record_failure(session, now)
    return False


# --------------------------------------------------------------------------- per-study secrets


@dataclass(frozen=True)
class AdminAccess:
    """What a signed-in administrator may open: every study (the global secret) or some."""

    all_studies: bool
    study_ids: frozenset[int] = field(default_factory=frozenset)

    def allows(self, study: Study) -> bool:
        return self.all_studies or study.id in self.study_ids


def set_study_admin_secret(session: Session, study: Study, secret: str | None) -> None:
    """Give a study its own admin secret (it opens this study only); None removes it."""
    if secret is None:
        study.admin_secret_hash = None
    else:
        if len(secret) < 8:
            raise InputError("the admin secret must be at least 8 characters long")
        study.admin_secret_hash = _hash_secret(secret, secrets.token_bytes(16))
    session.flush()


def _study_matches(session: Session, secret: str, study: Study | None) -> frozenset[int]:
    candidates = (
        [study]
        if study is not None
        else list(session.scalars(select(Study).where(Study.admin_secret_hash.is_not(None))))
    )
    matched = set()
    for candidate in candidates:
        if candidate.admin_secret_hash:
            try:
                if _matches(candidate.admin_secret_hash, secret):
                    matched.add(candidate.id)
            except ValueError:
                continue  # a malformed stored secret opens nothing; the global secret still works
    return frozenset(matched)


def admin_sign_in(
    session: Session, secret: str, study: Study | None = None, now: datetime | None = None
) -> AdminAccess | None:
    """A sign-in attempt with the global secret or a study's own; None (and counted) when wrong.

    With ``study``, only that study's secret is tried besides the global one. Too many recent
    wrong tries are refused the same way as :func:`try_admin_secret`.
    """
    now = now or utcnow()
    until = sign_in_refused_until(session, now)
    if until is not None:
        seconds = max(1, int((until - now).total_seconds() + 0.999))
        raise StoreError(f"too many wrong admin secrets: try again after {until:%H:%M:%S} UTC (in {seconds} s)")
    if secret and check_admin_secret(session, secret):
        _clear_failures(session)
        return AdminAccess(all_studies=True)
    matched = _study_matches(session, secret, study) if secret else frozenset()
    if matched:
        return AdminAccess(all_studies=False, study_ids=matched)
    _record_failure(session, now)
    return None
