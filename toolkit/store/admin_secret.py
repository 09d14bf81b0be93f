"""The admin secret that guards the administrator's pages: stored as a salted PBKDF2 hash only."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.schema import AppSetting

ADMIN_SECRET_KEY = "admin_secret"
ADMIN_SECRET_ENV = "QALIGN_ADMIN_SECRET"

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
    session.flush()


def has_admin_secret(session: Session) -> bool:
    return session.get(AppSetting, ADMIN_SECRET_KEY) is not None


def check_admin_secret(session: Session, secret: str) -> bool:
    """True when ``secret`` is the admin secret (compared in constant time)."""
    row = session.get(AppSetting, ADMIN_SECRET_KEY)
    if row is None or not secret:
        return False
    try:
        _, rounds, salt, _digest = row.value.split("$")
        expected = _hash_secret(secret, bytes.fromhex(salt), int(rounds))
    except ValueError:
        raise StoreError(
            "the stored admin secret is malformed; set a new one with `qalign ui --admin-secret`"
        ) from None
    return hmac.compare_digest(expected, row.value)


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
