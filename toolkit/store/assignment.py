"""Serving items to raters: balanced assignment, rating sessions, gold interleaving and undo.

The rules (ITU-T P.910/P.913, ITU-R BT.500, the P.808 crowd kit):

* Each rater sees the items in their own random order, never the same item twice.
* Balanced assignment: the next test item is one with the fewest *valid* votes (raters not
  screened out) that is still below the study's target; items being shown to other raters right
  now count as half-voted so that concurrent raters spread over the items instead of piling on one.
  An item's ``priority`` (set by ``qalign suggest --push``) comes before all that: higher-priority
  items are served first, and the balancing applies among items of equal priority.
* One gold item (known answer) is interleaved after every ``Study.gold_every`` test votes; the
  rater is told at once whether the answer was within tolerance.
* A sitting holds at most ``Study.items_per_session`` votes, then the rater is asked to take a break.
  A sitting idle for ``SESSION_IDLE`` ends by itself (BT.500: sessions of at most 30 minutes).
* The item on screen is stored (table ``assignments``, one row per rater), so a reload, a second
  tab or a browser closed and reopened shows the same item, and the time it was first shown comes
  from the server, not from the browser.
* A vote is stored once per (rater, item) whatever the number of clicks; undo removes only the
  rater's own last vote of the current sitting, never a gold answer (its feedback was shown).
* No item goes past its target, also with several app processes on one database: an item counts
  the raters it is on screen for against its target, and reserving an item or storing a vote on
  it holds the item's lock (PostgreSQL: a transaction advisory lock per item; SQLite: the
  database's write lock) while its room is checked; a vote arriving after the item filled up
  (its reservation ran out) is not stored.
* Trapping questions (P.808) are interleaved after every ``trap_every`` test votes; their answers
  go to ``trap_answers`` and never count as votes. A rater stops at ``max_items_per_rater``.
* Nobody rates before being admitted (``toolkit.store.protocol``: consent, screen check, quiz).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, cast, overload

import numpy as np
from sqlalchemy import CursorResult, and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.raters import create_rater, insert_or_skip
from toolkit.store.ratings import _insert_ignoring_duplicate
from toolkit.store.schema import (
    Assignment,
    Item,
    Rater,
    Rating,
    RatingSession,
    Study,
    TrapAnswer,
    TrapAssignment,
    TrapItem,
    utcnow,
)
from toolkit.store.studies import resolve_in_root
from toolkit.store.study_settings import StudyProtocol, study_protocol

SESSION_IDLE = timedelta(minutes=30)
"""A sitting without a vote for this long is over; the next request starts a new one."""

RESERVATION = timedelta(minutes=20)
"""How long an item on another rater's screen counts against the item's vote target."""

StepStatus = Literal["rate", "session_done", "finished"]


@dataclass
class TrapScreen:
    """What a trap's screen tells the rater (drawn over the stimulus by the app)."""

    instructed_level: int
    message: str


@dataclass
class ServedItem:
    """The item a rater should rate now."""

    assignment_id: int
    item_id: int  # for a trap: the trap's id (answer it with ``submit_trap`` or ``submit_answer``)
    path: str  # relative to the study's media root
    kind: str  # image | video
    role: str  # test | gold | trap
    shown_at: datetime
    file: Path  # absolute path on disk
    trap: TrapScreen | None = None


@dataclass
class RaterProgress:
    rated: int  # the rater's votes on test items
    gold_rated: int
    remaining: int  # test items this rater may still be served
    session_votes: int
    session_size: int
    traps_answered: int = 0  # trapping questions answered (counted only where the study has traps)

    @property
    def fraction(self) -> float:
        """Share of this rater's reachable test items already rated (0..1)."""
        total = self.rated + self.remaining
        return 1.0 if total == 0 else self.rated / total


@dataclass
class NextStep:
    status: StepStatus
    item: ServedItem | None
    progress: RaterProgress
    skipped_missing: list[str] = field(default_factory=list)  # items found missing on disk just now


@dataclass
class GoldFeedback:
    expected_level: int
    given_level: int
    tolerance: int

    @property
    def correct(self) -> bool:
        return abs(self.given_level - self.expected_level) <= self.tolerance


@dataclass
class SubmitResult:
    created: bool  # False for a repeated submission: the first vote stands
    level: int  # the stored vote
    item_path: str
    gold: GoldFeedback | None = None
    accepted: bool = True  # False: the item reached its vote target meanwhile; nothing was stored


@dataclass
class TrapResult:
    created: bool  # False for a repeated submission: the first answer stands
    level: int  # the stored answer
    passed: bool


def _now(now: datetime | None) -> datetime:
    return now or utcnow()


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: None) -> None: ...
def _aware(moment: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; the store writes UTC only.
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _check_rater(rater: Rater) -> None:
    if rater.revoked:
        raise StoreError("unknown or revoked rater token")


def _check_admitted(session: Session, rater: Rater, now: datetime) -> None:
    from toolkit.store.protocol import admission_refusal

    refusal = admission_refusal(session, rater, now)
    if refusal is not None:
        raise StoreError(refusal)


# The statements run on every vote are built once, with bound parameters: building a statement and its
# cache key costs more Python time than SQLite takes to run it.
_SQLITE_LOCK = (
    update(Study)
    .where(Study.id == bindparam("study_id"))
    .values(id=Study.id)
    .execution_options(synchronize_session=False)
)
_SQLITE_LOCKED = "qalign_sqlite_write_lock"

ADVISORY_LOCK_CLASS = 0x51A1
"""First key of the PostgreSQL advisory locks that serialise the raters of one item (second key: its id)."""

BUSY_RETRIES = 25
BUSY_WAIT_S = 0.02
"""Choosing an item retries this often (waiting a little longer each time) while the items with room are
all being taken or voted on by other raters at that moment."""
RACE_RETRIES = 3
"""Times :func:`next_step` chooses again when the rater's other tab takes the item it chose away."""


def lock_item(session: Session, study_id: int, item_id: int, wait: bool = True) -> bool:
    """Hold the right to change an item's votes and reservations until the transaction ends.

    Whoever adds a reservation or a vote to an item holds this lock and checks the item's room
    under it, so several app processes (replicas) on one database never take an item past its
    target. PostgreSQL: a transaction advisory lock per item (raters of different items do not
    wait for each other); without ``wait`` it returns False at once when another transaction holds
    it. SQLite: the database's write lock, taken by a first write (it serialises every writer
    anyway), so reads after it see everything committed before.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        if wait:
            session.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_CLASS, item_id)))
            return True
        return bool(session.scalar(select(func.pg_try_advisory_xact_lock(ADVISORY_LOCK_CLASS, item_id))))
    if dialect == "sqlite":
        # One write takes the database lock until the transaction ends: later calls need no statement.
        transaction = session.get_transaction()
        if transaction is None or session.info.get(_SQLITE_LOCKED) is not transaction:
            session.execute(_SQLITE_LOCK, {"study_id": study_id})
            session.info[_SQLITE_LOCKED] = session.get_transaction()
    return True


def _study_of(session: Session, rater: Rater) -> Study:
    from toolkit.store.protocol import rater_study

    return rater_study(session, rater)


def order_keys(rater: Rater, item_ids: np.ndarray) -> np.ndarray:
    """A per-rater pseudo-random key for each item id (stable across requests, no stored state).

    SplitMix64 of the item id mixed with a seed taken from the rater's token hash, which is
    random per rater and never shown: the order cannot be guessed from ids.
    """
    seed = np.uint64(int(rater.token_hash[:16], 16))
    with np.errstate(over="ignore"):
        z = np.asarray(item_ids, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + seed
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


# --------------------------------------------------------------------------- joining


def self_register(session: Session, study: Study, name: str) -> tuple[Rater, str]:
    """A rater joining without an invite, where the study allows it; returns the token to keep."""
    if not study.allow_self_register:
        raise StoreError(f"study {study.name!r} is by invitation only")
    return create_rater(session, study, name, self_registered=True)


def training_items(session: Session, study: Study) -> list[Item]:
    """The study's training examples, best level first, with files present on disk."""
    root = Path(study.media_root)
    items = session.scalars(
        select(Item)
        .where(Item.study_id == study.id, Item.role == "training")
        .order_by(Item.expected_level.desc(), Item.id)
    ).all()
    return [i for i in items if resolve_in_root(root, i.path).is_file()]


def mark_trained(session: Session, rater: Rater, now: datetime | None = None) -> None:
    _check_rater(rater)
    if rater.trained_at is None:
        rater.trained_at = _now(now)
        session.flush()


# --------------------------------------------------------------------------- sittings


_OPEN_SITTING = (
    select(RatingSession)
    .where(RatingSession.rater_id == bindparam("rater_id"), RatingSession.ended_at.is_(None))
    .order_by(RatingSession.id.desc())
)
_LAST_ROLE_IN_SITTING = (
    select(Item.role)
    .join(Rating, Rating.item_id == Item.id)
    .where(Rating.rater_id == bindparam("rater_id"), Rating.session_id == bindparam("session_id"))
    .order_by(Rating.answered_at.desc(), Rating.id.desc())
    .limit(1)
)


def open_session(session: Session, rater: Rater, now: datetime | None = None) -> RatingSession:
    """The rater's current sitting; a new one when there is none or the last went idle."""
    now = _now(now)
    current = session.scalar(_OPEN_SITTING, {"rater_id": rater.id})
    if current is not None and _aware(current.last_seen_at) > now - SESSION_IDLE:
        return current
    if current is not None:
        current.ended_at = _aware(current.last_seen_at)
    fresh = RatingSession(rater_id=rater.id, started_at=now, last_seen_at=now, n_votes=0)
    session.add(fresh)
    session.flush()
    return fresh


def start_new_session(session: Session, rater: Rater, now: datetime | None = None) -> RatingSession:
    """End the current sitting (after a break) and start the next one."""
    _check_rater(rater)
    now = _now(now)
    session.execute(
        update(RatingSession)
        .where(RatingSession.rater_id == rater.id, RatingSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    session.execute(delete(Assignment).where(Assignment.rater_id == rater.id))
    fresh = RatingSession(rater_id=rater.id, started_at=now, last_seen_at=now, n_votes=0)
    session.add(fresh)
    session.flush()
    return fresh


# --------------------------------------------------------------------------- choosing items


_RATED_BY_ROLE = (
    select(Item.role, func.count())
    .select_from(Rating)
    .join(Item, Rating.item_id == Item.id)
    .where(Rating.rater_id == bindparam("rater_id"))
    .group_by(Item.role)
)


def _rated_by_role(session: Session, rater: Rater) -> dict[str, int]:
    rows = session.execute(_RATED_BY_ROLE, {"rater_id": rater.id}).all()
    return {role: int(n) for role, n in rows}


def _candidates_statement() -> Any:
    valid_votes = (
        select(Rating.item_id.label("item_id"), func.count().label("n"))
        .join(Rater, Rating.rater_id == Rater.id)
        .where(Rating.study_id == bindparam("study_id"), Rater.excluded.is_(False))
        .group_by(Rating.item_id)
        .subquery()
    )
    on_screen = (
        select(Assignment.item_id.label("item_id"), func.count().label("n"))
        .join(Item, Assignment.item_id == Item.id)
        .where(
            Item.study_id == bindparam("study_id"),
            Assignment.rater_id != bindparam("rater_id"),
            Assignment.shown_at > bindparam("cutoff"),
        )
        .group_by(Assignment.item_id)
        .subquery()
    )
    mine = select(Rating.item_id).where(Rating.rater_id == bindparam("rater_id"))
    # An item on another rater's screen holds one of its remaining votes: serving it to more raters
    # than it has room for would take it past its target.
    return (
        select(Item.id, func.coalesce(valid_votes.c.n, 0), func.coalesce(on_screen.c.n, 0), Item.priority)
        .outerjoin(valid_votes, valid_votes.c.item_id == Item.id)
        .outerjoin(on_screen, on_screen.c.item_id == Item.id)
        .where(
            Item.study_id == bindparam("study_id"),
            Item.role == "test",
            Item.missing_since.is_(None),
            Item.id.not_in(mine),
            func.coalesce(valid_votes.c.n, 0) + func.coalesce(on_screen.c.n, 0) < bindparam("target"),
        )
    )


_TEST_CANDIDATES = _candidates_statement()


def _test_candidates(
    session: Session, rater: Rater, study: Study, now: datetime
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, current load and priority of the test items this rater may get: not yet rated by
    them, not flagged missing, below the target. Load = valid votes + 0.5 per item on another screen."""
    params = {"study_id": study.id, "rater_id": rater.id, "cutoff": now - RESERVATION, "target": study.target_votes}
    rows = session.execute(_TEST_CANDIDATES, params).all()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    table = np.array([tuple(row) for row in rows], dtype=float)  # plain tuples: numpy probes a Row slowly
    load = table[:, 1] + 0.5 * np.minimum(table[:, 2], np.maximum(study.target_votes - table[:, 1], 0))
    return table[:, 0].astype(np.int64), load, table[:, 3]


def _gold_candidates(session: Session, rater: Rater, study: Study) -> np.ndarray:
    from toolkit.store.schema import QuizAnswer

    mine = select(Rating.item_id).where(Rating.rater_id == rater.id)
    quizzed = select(QuizAnswer.item_id).where(QuizAnswer.rater_id == rater.id)
    ids = session.scalars(
        select(Item.id).where(
            Item.study_id == study.id,
            Item.role == "gold",
            Item.missing_since.is_(None),
            Item.id.not_in(mine),
            Item.id.not_in(quizzed),
        )
    ).all()
    return np.asarray(ids, dtype=np.int64)


def _pick(
    rater: Rater, ids: np.ndarray, load: np.ndarray | None = None, priority: np.ndarray | None = None
) -> list[int]:
    """Candidates in serving order: highest priority first, then least loaded, then the rater's
    own random order."""
    keys = order_keys(rater, ids)
    sort_keys: tuple[np.ndarray, ...] = (keys,) if load is None else (keys, load)
    if priority is not None:
        sort_keys += (-priority,)  # lexsort: the last key is the primary one
    order = np.lexsort(sort_keys)
    return [int(i) for i in ids[order]]


def _flag_missing(session: Session, item: Item, now: datetime) -> None:
    session.execute(update(Item).where(Item.id == item.id, Item.missing_since.is_(None)).values(missing_since=now))


def _present_path(study: Study, path: str) -> Path | None:
    try:
        file = resolve_in_root(Path(study.media_root), path)
    except InputError:
        return None
    return file if file.is_file() else None


def _present(study: Study, item: Item) -> Path | None:
    return _present_path(study, item.path)


_VALID_VOTES_OF_OTHERS = (
    select(func.count())
    .select_from(Rating)
    .join(Rater, Rating.rater_id == Rater.id)
    .where(Rating.item_id == bindparam("item_id"), Rating.rater_id != bindparam("rater_id"), Rater.excluded.is_(False))
    .scalar_subquery()
)
_SHOWN_TO_OTHERS = (
    select(func.count())
    .select_from(Assignment)
    .where(
        Assignment.item_id == bindparam("item_id"),
        Assignment.rater_id != bindparam("rater_id"),
        Assignment.shown_at > bindparam("cutoff"),
    )
    .scalar_subquery()
)


def _has_room(session: Session, rater: Rater, study: Study, item_id: int, now: datetime) -> bool:
    """Whether the item's valid votes and the other raters it is on screen for leave room for one more."""
    taken = session.scalar(
        select(_VALID_VOTES_OF_OTHERS + _SHOWN_TO_OTHERS),
        {"item_id": item_id, "rater_id": rater.id, "cutoff": now - RESERVATION},
    )
    return int(taken or 0) < study.target_votes


def _choose(
    session: Session,
    rater: Rater,
    study: Study,
    rated: dict[str, int],
    candidates: tuple[np.ndarray, ...],
    now: datetime,
    skipped: list[str],
    busy: list[int],
) -> tuple[Item, Path] | None:
    """The next item for the rater, flagging (and skipping) items whose file is gone.

    The candidates were read without locks (the costly part); each test item's room under its
    target is checked again under the item's lock, where it is exact. Items another rater holds
    right now are skipped and listed in ``busy`` (waiting for one while holding others could
    deadlock).
    """
    gold_due = study.gold_every > 0 and rated.get("test", 0) >= (rated.get("gold", 0) + 1) * study.gold_every
    queues: list[list[int]] = []
    if gold_due:
        queues.append(_pick(rater, _gold_candidates(session, rater, study)))
    queues.append(_pick(rater, *candidates))
    for queue in queues:
        for item_id in queue:
            item = session.get(Item, item_id)
            if item is None:  # deleted since the candidates were read
                continue
            if item.role == "test":
                if not lock_item(session, study.id, item_id, wait=False):
                    busy.append(item_id)
                    continue
                if not _has_room(session, rater, study, item_id, now):
                    continue  # filled or taken by another rater since the candidates were read
            file = _present(study, item)
            if file is not None:
                return item, file
            _flag_missing(session, item, now)
            skipped.append(item.path)
    return None


def _served(assignment: Assignment, item: Item, file: Path) -> ServedItem:
    return ServedItem(
        assignment_id=assignment.id,
        item_id=item.id,
        path=item.path,
        kind=item.kind,
        role=item.role,
        shown_at=_aware(assignment.shown_at),
        file=file,
    )


_ASSIGNMENT_OF = select(Assignment).where(Assignment.rater_id == bindparam("rater_id"))
_RATING_OF = select(Rating).where(Rating.rater_id == bindparam("rater_id"), Rating.item_id == bindparam("item_id"))
_UNASSIGN = delete(Assignment).where(
    Assignment.rater_id == bindparam("rater_id"), Assignment.item_id == bindparam("item_id")
)


def _served_now(assignment_id: int, item: Item, file: Path, now: datetime) -> ServedItem:
    return ServedItem(
        assignment_id=assignment_id,
        item_id=item.id,
        path=item.path,
        kind=item.kind,
        role=item.role,
        shown_at=_aware(now),
        file=file,
    )


def _insert_unique(
    session: Session, table: type[Assignment] | type[TrapAssignment], values: dict[str, Any]
) -> int | None:
    """Insert the rater's row unless they have one; the new row's id, or None when theirs was there."""
    dialect = session.get_bind().dialect.name
    # Two tabs of one rater asking at once: one row wins, both show it.
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=["rater_id"])
        return session.scalar(stmt.returning(table.id))
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        pg_stmt = postgresql_insert(table).values(**values).on_conflict_do_nothing(index_elements=["rater_id"])
        return session.scalar(pg_stmt.returning(table.id))
    row = table(**values)
    session.add(row)
    session.flush()
    return row.id


def _insert_assignment(session: Session, values: dict[str, Any]) -> int | None:
    return _insert_unique(session, Assignment, values)


def progress(
    session: Session,
    rater: Rater,
    now: datetime | None = None,
    sitting: RatingSession | None = None,
    rated: dict[str, int] | None = None,
    candidates: tuple[np.ndarray, ...] | None = None,
    traps_answered: int | None = None,
) -> RaterProgress:
    """The rater's progress; ``rated``, ``candidates`` and ``traps_answered`` when the caller has them already.

    Trap answers are counted only where the study has traps (``trap_every`` > 0), else 0.
    """
    now = _now(now)
    study = _study_of(session, rater)
    protocol = study_protocol(study)
    if traps_answered is None:
        traps_answered = _trap_answers(session, rater) if protocol.trap_every > 0 else 0
    rated = rated if rated is not None else _rated_by_role(session, rater)
    ids = (candidates if candidates is not None else _test_candidates(session, rater, study, now))[0]
    remaining = len(ids)
    cap = protocol.max_items_per_rater
    if cap is not None:
        remaining = max(0, min(remaining, cap - rated.get("test", 0)))
    return RaterProgress(
        rated=rated.get("test", 0),
        gold_rated=rated.get("gold", 0),
        remaining=remaining,
        session_votes=sitting.n_votes if sitting is not None else 0,
        session_size=study.items_per_session,
        traps_answered=traps_answered,
    )


def _trap_answers(session: Session, rater: Rater) -> int:
    return int(session.scalar(select(func.count()).select_from(TrapAnswer).where(TrapAnswer.rater_id == rater.id)) or 0)


def _served_trap(pending: TrapAssignment, trap: TrapItem, file: Path) -> ServedItem:
    return ServedItem(
        assignment_id=pending.id,
        item_id=trap.id,
        path=trap.path,
        kind=trap.kind,
        role="trap",
        shown_at=_aware(pending.shown_at),
        file=file,
        trap=TrapScreen(instructed_level=trap.instructed_level, message=trap.message),
    )


def _pending_trap(session: Session, rater: Rater, study: Study) -> ServedItem | None:
    pending = session.scalar(select(TrapAssignment).where(TrapAssignment.rater_id == rater.id))
    if pending is None:
        return None
    trap = session.get(TrapItem, pending.trap_id)
    file = _present_path(study, trap.path) if trap is not None else None
    if trap is None or file is None:  # the trap or its file went away: serve something else
        session.execute(delete(TrapAssignment).where(TrapAssignment.id == pending.id))
        return None
    return _served_trap(pending, trap, file)


def _serve_trap(
    session: Session, rater: Rater, study: Study, sitting: RatingSession, now: datetime
) -> ServedItem | None:
    """A trap the rater has not answered yet, put on their screen; None when there is none left."""
    answered = select(TrapAnswer.trap_id).where(TrapAnswer.rater_id == rater.id)
    ids = np.asarray(
        session.scalars(select(TrapItem.id).where(TrapItem.study_id == study.id, TrapItem.id.not_in(answered))).all(),
        dtype=np.int64,
    )
    for trap_id in _pick(rater, ids):
        trap = session.get(TrapItem, trap_id)
        file = _present_path(study, trap.path) if trap is not None else None
        if trap is None or file is None:
            continue
        _insert_unique(
            session, TrapAssignment, dict(rater_id=rater.id, trap_id=trap.id, session_id=sitting.id, shown_at=now)
        )
        session.flush()
        pending = session.scalar(select(TrapAssignment).where(TrapAssignment.rater_id == rater.id))
        if pending is None:
            raise StoreError(f"the item shown to rater {rater.name!r} changed meanwhile; reload the page")
        shown = session.get(TrapItem, pending.trap_id)
        assert shown is not None  # the foreign key (ON DELETE CASCADE) keeps the trap while assigned
        return _served_trap(pending, shown, _present_path(study, shown.path) or file)
    return None


def _trap_due(protocol: StudyProtocol, rated: dict[str, int], traps_answered: int) -> bool:
    return protocol.trap_every > 0 and rated.get("test", 0) >= (traps_answered + 1) * protocol.trap_every


def _finish(session: Session, rater: Rater, now: datetime) -> None:
    if rater.completed_at is None:
        rater.completed_at = now
        session.flush()


def next_step(session: Session, rater: Rater, now: datetime | None = None) -> NextStep:
    """What the rater sees now: the item on screen (kept across reloads), a break, or the end."""
    _check_rater(rater)
    now = _now(now)
    # The rater's other tab (on another replica) can take its item away between our attempt to
    # put one on screen and our reading it back (it voted): then the choice is made again, from
    # what that vote changed.
    for _attempt in range(RACE_RETRIES):
        step = _next_step(session, rater, now)
        if step is not None:
            return step
    raise StoreError(f"the item shown to rater {rater.name!r} changed meanwhile; reload the page")


def _next_step(session: Session, rater: Rater, now: datetime) -> NextStep | None:
    """:func:`next_step` once; None when the item just put on screen was taken away concurrently."""
    _check_admitted(session, rater, now)
    study = _study_of(session, rater)
    protocol = study_protocol(study)
    sitting = open_session(session, rater, now)
    skipped: list[str] = []

    rated = _rated_by_role(session, rater)
    candidates = _test_candidates(session, rater, study, now)
    traps_answered = _trap_answers(session, rater) if protocol.trap_every > 0 else 0

    def report() -> RaterProgress:
        return progress(session, rater, now, sitting, rated=rated, candidates=candidates, traps_answered=traps_answered)

    trap = _pending_trap(session, rater, study) if protocol.trap_every > 0 else None
    if trap is not None:
        return NextStep("rate", trap, report())

    pending = session.scalar(_ASSIGNMENT_OF, {"rater_id": rater.id})
    if pending is not None:
        item = session.get(Item, pending.item_id)
        file = _present(study, item) if item is not None else None
        already = session.scalar(
            select(Rating.id).where(Rating.rater_id == rater.id, Rating.item_id == pending.item_id)
        )
        if item is not None and file is not None and already is None and item.missing_since is None:
            return NextStep("rate", _served(pending, item, file), report())
        if item is not None and file is None:
            _flag_missing(session, item, now)
            skipped.append(item.path)
        session.execute(
            delete(Assignment).where(Assignment.rater_id == rater.id, Assignment.item_id == pending.item_id)
        )
        if skipped:  # the item just flagged must leave the candidates too
            candidates = _test_candidates(session, rater, study, now)

    cap = protocol.max_items_per_rater
    if cap is not None and rated.get("test", 0) >= cap:
        _finish(session, rater, now)
        return NextStep("finished", None, report(), skipped)

    if sitting.n_votes >= study.items_per_session:
        return NextStep("session_done", None, report(), skipped)

    if len(candidates[0]) and _trap_due(protocol, rated, traps_answered):
        served_trap = _serve_trap(session, rater, study, sitting, now)
        if served_trap is not None:
            return NextStep("rate", served_trap, report(), skipped)

    chosen = None
    for attempt in range(BUSY_RETRIES):
        busy: list[int] = []
        chosen = _choose(session, rater, study, rated, candidates, now, skipped, busy)
        if chosen is not None or not busy:
            break
        time.sleep(BUSY_WAIT_S * (1 + attempt))  # their transactions end in a moment
    else:
        raise StoreError("the study is busy: every item with room is being served to someone else; reload the page")
    if chosen is None:
        _finish(session, rater, now)
        return NextStep("finished", None, report(), skipped)
    item, file = chosen
    inserted = _insert_assignment(
        session, dict(rater_id=rater.id, item_id=item.id, session_id=sitting.id, shown_at=now)
    )
    if skipped:  # items just flagged missing leave the rater's remaining count
        candidates = _test_candidates(session, rater, study, now)
    if inserted is not None:  # the row is as written: no need to read it back
        return NextStep("rate", _served_now(inserted, item, file, now), report(), skipped)
    assignment = session.scalar(_ASSIGNMENT_OF, {"rater_id": rater.id})
    if assignment is None:  # the other tab's row, which took the place of ours, was removed concurrently
        return None
    if assignment.item_id != item.id:  # lost a race against the rater's other tab: show its item
        shown = session.get(Item, assignment.item_id)
        if shown is None:  # the foreign key (ON DELETE CASCADE) keeps this from happening
            raise StoreError(f"the item shown to rater {rater.name!r} changed meanwhile; reload the page")
        item = shown
        file = _present(study, item) or file
    return NextStep("rate", _served(assignment, item, file), report(), skipped)


# --------------------------------------------------------------------------- voting


def _feedback(item: Item, level: int) -> GoldFeedback | None:
    if item.role != "gold" or item.expected_level is None:
        return None
    return GoldFeedback(expected_level=item.expected_level, given_level=level, tolerance=item.tolerance)


def _valid_votes_of_others(session: Session, rater: Rater, item_id: int) -> int:
    return int(session.scalar(select(_VALID_VOTES_OF_OTHERS), {"item_id": item_id, "rater_id": rater.id}) or 0)


def _check_scale(scale_factor: float | None) -> float | None:
    if scale_factor is None:
        return None
    if isinstance(scale_factor, bool) or not isinstance(scale_factor, (int, float)) or not 0 < scale_factor < 1e3:
        raise InputError(
            f"scale factor must be a positive number (display pixels per stimulus pixel), got {scale_factor!r}"
        )
    return float(scale_factor)


def submit_vote(
    session: Session,
    rater: Rater,
    item_id: int,
    level: int,
    now: datetime | None = None,
    scale_factor: float | None = None,
) -> SubmitResult:
    """Store the rater's vote on the item on their screen; repeats return the first vote.

    The vote must be for the item the server showed this rater (so a rater can never vote on an
    item of their choosing, or on another rater's behalf); the response time is measured from
    when the server first showed it. ``scale_factor`` is the display pixels per stimulus pixel the
    item was shown at (None or 1.0: native resolution), stored with the vote.
    """
    _check_rater(rater)
    if isinstance(level, bool) or level not in (1, 2, 3, 4, 5):
        raise InputError(f"vote must be an integer level 1-5, got {level!r}")
    scale = _check_scale(scale_factor)
    now = _now(now)
    item = session.get(Item, item_id)
    if item is None or item.study_id != rater.study_id:
        raise StoreError(f"no item {item_id} in this rater's study")
    _check_admitted(session, rater, now)
    study = _study_of(session, rater)
    lock_item(session, study.id, item_id)
    # Read the assignment before the vote: a concurrent click that commits in between then
    # shows up as a stored vote (its commit removes the assignment and adds the vote at once).
    pending = session.scalar(_ASSIGNMENT_OF, {"rater_id": rater.id})
    stored = session.scalar(_RATING_OF, {"rater_id": rater.id, "item_id": item_id})
    if stored is not None:  # double click, retried request, second tab
        return SubmitResult(created=False, level=stored.level, item_path=item.path, gold=_feedback(item, stored.level))
    if pending is None or pending.item_id != item_id:
        raise StoreError(f"item {item.path!r} is not the item shown to rater {rater.name!r}; reload the page")
    if (
        item.role == "test"
        and not rater.excluded
        and _valid_votes_of_others(session, rater, item_id) >= study.target_votes
    ):
        # The reservation ran out and other raters filled the item: a vote more would pass its target.
        session.execute(_UNASSIGN, {"rater_id": rater.id, "item_id": item_id})
        session.flush()
        return SubmitResult(created=False, level=level, item_path=item.path, accepted=False)
    shown_at = _aware(pending.shown_at)
    # One INSERT with every field (the sitting, the scale) and no read-back: the vote's level is the one given.
    created = _insert_ignoring_duplicate(
        session,
        dict(
            study_id=item.study_id,
            item_id=item.id,
            rater_id=rater.id,
            level=int(level),
            shown_at=shown_at,
            answered_at=now,
            response_ms=(_aware(now) - shown_at).total_seconds() * 1000.0,
            session_id=pending.session_id,
            scale_factor=scale,
        ),
    )
    stored_level = int(level)
    if not created:  # the rater's other tab voted in the same moment: its vote stands
        first = session.scalar(_RATING_OF, {"rater_id": rater.id, "item_id": item_id})
        assert first is not None  # the unique key the insert conflicted with
        stored_level = first.level
    elif pending.session_id is not None:
        session.execute(
            update(RatingSession)
            .where(RatingSession.id == pending.session_id)
            .values(n_votes=RatingSession.n_votes + 1, last_seen_at=now)
        )
    # Keyed by rater and item, not by id alone: SQLite reuses the id of a deleted last row, so a
    # late duplicate submission must not remove an assignment that now belongs to someone else.
    session.execute(_UNASSIGN, {"rater_id": rater.id, "item_id": item_id})
    session.flush()
    if created and study_protocol(study).has_exclusion_rules:
        from toolkit.store.exclusion import run_exclusion

        run_exclusion(session, study, rater=rater, now=now)
    return SubmitResult(created=created, level=stored_level, item_path=item.path, gold=_feedback(item, stored_level))


def submit_trap(session: Session, rater: Rater, trap_id: int, level: int, now: datetime | None = None) -> TrapResult:
    """Record the rater's answer to the trap on their screen; repeats return the first answer.

    Trap answers are kept in ``trap_answers`` only: they are never a vote on any label.
    """
    _check_rater(rater)
    if isinstance(level, bool) or level not in (1, 2, 3, 4, 5):
        raise InputError(f"answer must be an integer level 1-5, got {level!r}")
    now = _now(now)
    trap = session.get(TrapItem, trap_id)
    if trap is None or trap.study_id != rater.study_id:
        raise StoreError(f"no trap {trap_id} in this rater's study")
    study = _study_of(session, rater)
    stored = session.scalar(select(TrapAnswer).where(TrapAnswer.rater_id == rater.id, TrapAnswer.trap_id == trap_id))
    if stored is not None:
        return TrapResult(created=False, level=stored.level, passed=stored.passed)
    pending = session.scalar(select(TrapAssignment).where(TrapAssignment.rater_id == rater.id))
    if pending is None or pending.trap_id != trap_id:
        raise StoreError(f"trap {trap.path!r} is not the item shown to rater {rater.name!r}; reload the page")
    passed = level == trap.instructed_level
    values = dict(
        rater_id=rater.id,
        trap_id=trap_id,
        level=level,
        passed=passed,
        shown_at=_aware(pending.shown_at),
        answered_at=now,
        session_id=pending.session_id,
    )
    if not insert_or_skip(session, TrapAnswer, values):  # the rater's other tab answered just now
        first = session.scalar(select(TrapAnswer).where(TrapAnswer.rater_id == rater.id, TrapAnswer.trap_id == trap_id))
        assert first is not None  # the unique key it conflicted with
        return TrapResult(created=False, level=first.level, passed=first.passed)
    session.execute(
        delete(TrapAssignment).where(TrapAssignment.rater_id == rater.id, TrapAssignment.trap_id == trap_id)
    )
    if pending.session_id is not None:
        session.execute(update(RatingSession).where(RatingSession.id == pending.session_id).values(last_seen_at=now))
    session.flush()
    if study_protocol(study).has_exclusion_rules:
        from toolkit.store.exclusion import run_exclusion

        run_exclusion(session, study, rater=rater, now=now)
    return TrapResult(created=True, level=level, passed=passed)


def submit_answer(
    session: Session,
    rater: Rater,
    served: ServedItem,
    level: int,
    now: datetime | None = None,
    scale_factor: float | None = None,
) -> SubmitResult | TrapResult:
    """Answer what ``next_step`` served: a trap goes to :func:`submit_trap`, anything else is a vote."""
    if served.role == "trap":
        return submit_trap(session, rater, served.item_id, level, now)
    return submit_vote(session, rater, served.item_id, level, now, scale_factor=scale_factor)


def undo_last_vote(session: Session, rater: Rater, now: datetime | None = None) -> str | None:
    """Take back the rater's last vote of the current sitting; the item is shown again.

    Returns the item's path, or None when there is nothing that may be undone (no vote in this
    sitting, or the last one was a gold item whose answer was already revealed).
    """
    _check_rater(rater)
    now = _now(now)
    sitting = open_session(session, rater, now)
    last = session.execute(
        select(Rating, Item)
        .join(Item, Rating.item_id == Item.id)
        .where(Rating.rater_id == rater.id, Rating.session_id == sitting.id)
        .order_by(Rating.answered_at.desc(), Rating.id.desc())
        .limit(1)
    ).first()
    if last is None or last.Item.role == "gold":
        return None
    rating, item = last.Rating, last.Item
    lock_item(session, rater.study_id, item.id)  # the vote becomes a reservation: the count stays
    session.execute(delete(Assignment).where(Assignment.rater_id == rater.id))
    # A trap served since then waits: the item taken back is what the rater sees next.
    session.execute(delete(TrapAssignment).where(TrapAssignment.rater_id == rater.id))
    # A DELETE runs through a CursorResult, which Session.execute's annotation (Result) does not say.
    deleted = cast(
        CursorResult[Any], session.execute(delete(Rating).where(Rating.id == rating.id, Rating.rater_id == rater.id))
    ).rowcount
    if deleted != 1:  # undone concurrently in another tab
        return None
    session.execute(
        update(RatingSession)
        .where(and_(RatingSession.id == sitting.id, RatingSession.n_votes > 0))
        .values(n_votes=RatingSession.n_votes - 1, last_seen_at=now)
    )
    _insert_assignment(session, dict(rater_id=rater.id, item_id=item.id, session_id=sitting.id, shown_at=now))
    session.flush()
    return item.path


def can_undo(session: Session, rater: Rater, now: datetime | None = None) -> bool:
    """Whether :func:`undo_last_vote` would take a vote back (read-only)."""
    current = session.scalar(_OPEN_SITTING, {"rater_id": rater.id})
    if current is None or _aware(current.last_seen_at) <= _now(now) - SESSION_IDLE:
        return False
    role = session.scalar(_LAST_ROLE_IN_SITTING, {"rater_id": rater.id, "session_id": current.id})
    return role is not None and role != "gold"
