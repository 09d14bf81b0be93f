"""What the study administrator needs from the store: the admin secret, study set-up, progress,
rater tokens, missing media, and the rater figures that need nothing but the votes table.

Deeper screening (BT.500, P.913, subject models) lives in ``toolkit.analysis``; the figures here
are the quick operational ones a study runner watches while votes come in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.levels import vote_stats
from toolkit.store.models import AppSetting, Assignment, Item, Rater, Rating, RatingSession, Study, utcnow
from toolkit.store.studies import (
    AddItemsResult,
    ItemSpec,
    add_items,
    add_rater,
    create_study,
    hash_token,
    list_studies,
    read_item_manifest,
    resolve_in_root,
    scan_media,
)

ADMIN_SECRET_KEY = "admin_secret"
ADMIN_SECRET_ENV = "QALIGN_ADMIN_SECRET"
DEFAULT_LEVEL_LABELS: tuple[str, ...] = ("Excellent", "Good", "Fair", "Poor", "Bad")
SAMPLE_STUDY_NAME = "sample-study"
SAMPLE_MEDIA_ROOT = Path(__file__).resolve().parents[1] / "data" / "sample_study"
FAST_RESPONSE_MS = 1000.0
"""Votes faster than this are counted as suspiciously fast (P.808 minimum viewing time)."""

_PBKDF2_ROUNDS = 120_000


# --------------------------------------------------------------------------- admin secret


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
        raise StoreError("the stored admin secret is malformed; set a new one with `qalign ui --admin-secret`") from None
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


# --------------------------------------------------------------------------- study set-up


def level_labels(study: Study) -> list[str]:
    """The five button labels of the study, best first (default Excellent .. Bad)."""
    if not study.level_labels:
        return list(DEFAULT_LEVEL_LABELS)
    return list(json.loads(study.level_labels))


def study_question(study: Study, kind: str = "image") -> str:
    """The question as raters read it, the built-in wording's ``{input}`` filled with the media kind."""
    return study.question.replace("{input}", kind)


def check_level_labels(labels: Sequence[str]) -> list[str]:
    cleaned = [str(label).strip() for label in labels]
    if len(cleaned) != 5 or not all(cleaned):
        raise InputError(f"level labels: need 5 non-empty labels, best first (got {len(cleaned)}: {cleaned!r})")
    if len(set(cleaned)) != 5:
        raise InputError(f"level labels must differ from each other (got {cleaned!r})")
    return cleaned


def configure_study(
    session: Session, study: Study, labels: Sequence[str] | None = None, gold_every: int | None = None
) -> Study:
    """Set the level labels and the gold interleaving rate of a study."""
    if labels is not None:
        cleaned = check_level_labels(labels)
        study.level_labels = None if tuple(cleaned) == DEFAULT_LEVEL_LABELS else json.dumps(cleaned)
    if gold_every is not None:
        if gold_every < 0:
            raise InputError(f"gold_every must be 0 (no gold items) or more, got {gold_every}")
        study.gold_every = gold_every
    session.flush()
    return study


@dataclass
class StudySetup:
    """Everything the admin page (or a script) asks when setting up a study."""

    name: str
    media_root: str | Path
    manifest: str | Path | None = None  # CSV of items inside media_root; default: scan the folder
    task: str = "quality"  # quality | aesthetics | custom
    question: str | None = None
    labels: Sequence[str] | None = None
    target_votes: int = 15
    items_per_session: int = 50
    allow_self_register: bool = False
    gold_every: int = 10


def setup_study(session: Session, setup: StudySetup) -> tuple[Study, AddItemsResult]:
    """Create a study and its items in one transaction (nothing is kept when an item is refused)."""
    if setup.labels is not None:
        check_level_labels(setup.labels)
    specs: list[ItemSpec] = read_item_manifest(setup.manifest) if setup.manifest else scan_media(setup.media_root)
    if not specs:
        raise InputError(f"no images or videos found for study {setup.name!r} in {str(setup.media_root)!r}")
    study = create_study(
        session, setup.name, setup.media_root, task=setup.task,
        question=setup.question or None,
        target_votes=setup.target_votes, items_per_session=setup.items_per_session,
        allow_self_register=setup.allow_self_register,
    )
    result = add_items(session, study, specs)
    configure_study(session, study, labels=setup.labels, gold_every=setup.gold_every)
    return study, result


def create_sample_study(session: Session, name: str = SAMPLE_STUDY_NAME) -> Study:
    """The bundled demonstration study: a few images and a short clip, with training and gold items."""
    return setup_study(
        session,
        StudySetup(
            name=name, media_root=SAMPLE_MEDIA_ROOT, manifest=SAMPLE_MEDIA_ROOT / "manifest.csv",
            target_votes=5, items_per_session=20, allow_self_register=True, gold_every=3,
        ),
    )[0]


@dataclass
class PrepareReport:
    revision: str
    upgraded: bool
    sample_created: bool
    generated_admin_secret: str | None = None


def prepare_database(url: str | None = None, sample: bool = True, admin_secret: str | None = None) -> PrepareReport:
    """Bring a database to the app's schema, add the sample study to an empty one, ensure an admin secret."""
    from toolkit.store.engine import Store
    from toolkit.store.migrate import current_revision, head_revision, upgrade

    upgraded = False
    if current_revision(url) != head_revision():
        upgrade(url)
        upgraded = True
    store = Store(url)
    try:
        with store.session() as session:
            created = False
            if sample and not list_studies(session):
                create_sample_study(session)
                created = True
            generated = ensure_admin_secret(session, admin_secret)
    finally:
        store.dispose()
    return PrepareReport(revision=head_revision(), upgraded=upgraded, sample_created=created, generated_admin_secret=generated)


# --------------------------------------------------------------------------- media on disk


@dataclass
class MediaCheck:
    missing: list[str] = field(default_factory=list)  # flagged now or before, still missing
    restored: list[str] = field(default_factory=list)  # flag cleared: the file is back


def check_media(session: Session, study: Study, now: datetime | None = None) -> MediaCheck:
    """Look for every item's file; flag the missing ones (raters skip them) and unflag the returned."""
    root = Path(study.media_root)
    now = now or utcnow()
    result = MediaCheck()
    items = session.scalars(select(Item).where(Item.study_id == study.id).order_by(Item.id)).all()
    for item in items:
        try:
            present = resolve_in_root(root, item.path).is_file()
        except InputError:
            present = False
        if not present:
            result.missing.append(item.path)
            if item.missing_since is None:
                item.missing_since = now
        elif item.missing_since is not None:
            item.missing_since = None
            result.restored.append(item.path)
    session.flush()
    return result


def missing_items(session: Session, study: Study) -> list[str]:
    return list(session.scalars(
        select(Item.path).where(Item.study_id == study.id, Item.missing_since.is_not(None)).order_by(Item.path)
    ))


# --------------------------------------------------------------------------- tokens


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
    """Screen a rater out (their votes stop counting towards the targets) or back in."""
    _study_rater(session, study, name).excluded = excluded
    session.flush()


def reissue_token(session: Session, study: Study, name: str) -> str:
    """A fresh token for a rater who lost theirs; the old one stops working. Votes are kept."""
    import secrets as _secrets

    rater = _study_rater(session, study, name)
    token = _secrets.token_urlsafe(18)
    rater.token_hash = hash_token(token)
    rater.revoked = False
    session.flush()
    return token


# --------------------------------------------------------------------------- progress and figures


def _valid_votes(session: Session, study: Study) -> pd.DataFrame:
    rows = session.execute(
        select(
            Rating.item_id, Rating.rater_id, Rating.level, Rating.response_ms, Rating.session_id,
            Rating.answered_at, Rating.id, Rater.excluded,
        )
        .join(Rater, Rating.rater_id == Rater.id)
        .where(Rating.study_id == study.id)
        .order_by(Rating.id)
    ).all()
    return pd.DataFrame(
        rows, columns=["item_id", "rater_id", "vote", "response_ms", "session_id", "answered_at", "rating_id", "excluded"]
    )


def item_progress(session: Session, study: Study) -> pd.DataFrame:
    """One row per item: role, kind, valid votes (screened-out raters not counted), all votes,
    the target, raters looking at it now, and whether its file is missing."""
    items = pd.DataFrame(
        session.execute(
            select(Item.id, Item.path, Item.role, Item.kind, Item.expected_level, Item.missing_since)
            .where(Item.study_id == study.id)
            .order_by(Item.id)
        ).all(),
        columns=["item_id", "item", "role", "kind", "expected_level", "missing_since"],
    )
    votes = _valid_votes(session, study)
    all_n = votes.groupby("item_id").size()
    valid_n = votes[~votes["excluded"].astype(bool)].groupby("item_id").size()
    pending = pd.Series(dict(session.execute(
        select(Assignment.item_id, func.count()).join(Item, Assignment.item_id == Item.id)
        .where(Item.study_id == study.id).group_by(Assignment.item_id)
    ).all()), dtype="int64")
    items["valid_votes"] = items["item_id"].map(valid_n).fillna(0).astype(int)
    items["votes"] = items["item_id"].map(all_n).fillna(0).astype(int)
    items["target"] = np.where(items["role"] == "test", study.target_votes, 0)
    items["on_screen"] = items["item_id"].map(pending).fillna(0).astype(int)
    items["missing"] = items["missing_since"].notna()
    return items.drop(columns=["missing_since"])


def study_summary(session: Session, study: Study) -> dict[str, float | int]:
    """Headline numbers: items, raters, votes, and the share of the vote target reached."""
    progress = item_progress(session, study)
    test = progress[progress["role"] == "test"]
    wanted = int(test["target"].sum())
    reached = int(np.minimum(test["valid_votes"], test["target"]).sum())
    raters = session.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == study.id)) or 0
    return {
        "items": int(len(progress)),
        "test_items": int(len(test)),
        "missing_items": int(progress["missing"].sum()),
        "raters": int(raters),
        "votes": int(progress["votes"].sum()),
        "complete_items": int((test["valid_votes"] >= test["target"]).sum()),
        "target_fraction": reached / wanted if wanted else 1.0,
    }


def _longest_run(votes: pd.Series) -> int:
    values = votes.to_numpy()
    if values.size == 0:
        return 0
    change = np.flatnonzero(np.diff(values) != 0)
    edges = np.concatenate(([-1], change, [values.size - 1]))
    return int(np.diff(edges).max())


def rater_stats(session: Session, study: Study, min_session_votes: int = 5) -> pd.DataFrame:
    """Per rater: access, votes, sittings, gold accuracy, response times and straightlining.

    ``gold_accuracy`` is the share of gold answers within the item's tolerance; ``fast_share`` the
    share of votes given faster than ``FAST_RESPONSE_MS``; ``longest_run`` the longest series of
    identical consecutive votes; ``min_session_sd`` the smallest vote SD over the rater's sittings
    with at least ``min_session_votes`` votes (0 = a sitting answered with a single level).
    """
    raters = pd.DataFrame(
        session.execute(
            select(Rater.id, Rater.name, Rater.revoked, Rater.excluded, Rater.self_registered, Rater.trained_at, Rater.created_at)
            .where(Rater.study_id == study.id)
            .order_by(Rater.id)
        ).all(),
        columns=["rater_id", "rater", "revoked", "excluded", "self_registered", "trained_at", "created_at"],
    )
    votes = _valid_votes(session, study)
    items = pd.DataFrame(
        session.execute(select(Item.id, Item.role, Item.expected_level, Item.tolerance).where(Item.study_id == study.id)).all(),
        columns=["item_id", "role", "expected_level", "tolerance"],
    )
    votes = votes.merge(items, on="item_id", how="left")
    per = raters.set_index("rater_id")
    grouped = votes.groupby("rater_id")
    per["votes"] = grouped.size().reindex(per.index).fillna(0).astype(int)
    per["sessions"] = grouped["session_id"].nunique().reindex(per.index).fillna(0).astype(int)

    gold = votes[votes["role"] == "gold"].copy()
    gold["hit"] = (gold["vote"] - gold["expected_level"]).abs() <= gold["tolerance"]
    per["gold_votes"] = gold.groupby("rater_id").size().reindex(per.index).fillna(0).astype(int)
    per["gold_accuracy"] = gold.groupby("rater_id")["hit"].mean().reindex(per.index)

    timed = votes.dropna(subset=["response_ms"])
    per["median_response_s"] = (timed.groupby("rater_id")["response_ms"].median() / 1000.0).reindex(per.index)
    per["fast_share"] = (timed["response_ms"] < FAST_RESPONSE_MS).groupby(timed["rater_id"]).mean().reindex(per.index)

    rated = votes[votes["role"] != "training"]
    per["vote_sd"] = rated.groupby("rater_id")["vote"].std(ddof=0).reindex(per.index)
    per["longest_run"] = rated.groupby("rater_id")["vote"].apply(_longest_run).reindex(per.index).fillna(0).astype(int)
    by_sitting = rated.dropna(subset=["session_id"]).groupby(["rater_id", "session_id"])["vote"].agg(["size", "std"])
    full = by_sitting[by_sitting["size"] >= min_session_votes]
    per["min_session_sd"] = full.groupby(level="rater_id")["std"].min().reindex(per.index)
    per["last_vote_at"] = grouped["answered_at"].max().reindex(per.index)
    return per.reset_index().drop(columns=["rater_id"])


def valid_item_stats(session: Session, study: Study) -> pd.DataFrame:
    """MOS, SD, t-CI and c1..c5 per test item from valid votes (screened-out raters left out)."""
    votes = _valid_votes(session, study)
    votes = votes[~votes["excluded"].astype(bool)]
    paths = dict(session.execute(select(Item.id, Item.path).where(Item.study_id == study.id, Item.role == "test")).all())
    votes = votes[votes["item_id"].isin(list(paths))]
    if votes.empty:
        return pd.DataFrame(columns=["n", "mos", "sd", "ci_low", "ci_high", "c1", "c2", "c3", "c4", "c5"])
    stats = vote_stats(votes.assign(item=votes["item_id"].map(paths)), item="item", vote="vote")
    return stats.sort_values("mos", ascending=False)


def rater_votes(session: Session, rater: Rater) -> pd.DataFrame:
    """The rater's own votes (item, vote, time): what a rater may see of the data, nothing more."""
    rows = session.execute(
        select(Item.path, Rating.level, Rating.answered_at)
        .join(Item, Rating.item_id == Item.id)
        .where(Rating.rater_id == rater.id)
        .order_by(Rating.id)
    ).all()
    return pd.DataFrame(rows, columns=["item", "vote", "answered_at"])


def close_idle_sessions(session: Session, idle_before: datetime) -> int:
    """End sittings with no activity since ``idle_before``; returns how many were closed."""
    return session.execute(
        update(RatingSession)
        .where(RatingSession.ended_at.is_(None), RatingSession.last_seen_at < idle_before)
        .values(ended_at=RatingSession.last_seen_at)
    ).rowcount
