"""Per-rater figures for paying crowd workers (and for any study's record of who did what).

Time on task is the sum over the rater's sittings of last activity minus start, from the
server's timestamps, so it does not depend on the browser's clock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from toolkit.store.schema import Item, Rater, Rating, RatingSession, Study, TrapAnswer
from toolkit.store.study_settings import study_protocol

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class RaterPayment:
    rater: str
    platform: str  # prolific | mturk | "" (invited)
    external_id: str
    external_session: str  # Prolific SESSION_ID / MTurk assignmentId
    votes: int  # test and gold votes
    test_votes: int
    gold_votes: int
    traps_passed: int
    traps_failed: int
    time_on_task_s: float
    completed: bool
    completed_at: datetime | None
    completion_code: str  # the study's code, for a rater who completed
    excluded: bool


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def rater_payments(session: Session, study: Study) -> list[RaterPayment]:
    """One record per rater of the study, by rater name."""
    raters = list(session.scalars(select(Rater).where(Rater.study_id == study.id).order_by(Rater.name)))
    ids = [r.id for r in raters]
    votes: dict[tuple[int, str], int] = {
        (rater_id, role): int(n)
        for rater_id, role, n in session.execute(
            select(Rating.rater_id, Item.role, func.count())
            .join(Item, Rating.item_id == Item.id)
            .where(Rating.study_id == study.id)
            .group_by(Rating.rater_id, Item.role)
        )
    }
    traps: dict[tuple[int, bool], int] = {
        (rater_id, bool(passed)): int(n)
        for rater_id, passed, n in session.execute(
            select(TrapAnswer.rater_id, TrapAnswer.passed, func.count())
            .where(TrapAnswer.rater_id.in_(ids))
            .group_by(TrapAnswer.rater_id, TrapAnswer.passed)
        )
    }
    seconds: dict[int, float] = {}
    for rater_id, started, last_seen, ended in session.execute(
        select(
            RatingSession.rater_id, RatingSession.started_at, RatingSession.last_seen_at, RatingSession.ended_at
        ).where(RatingSession.rater_id.in_(ids))
    ):
        start, stop = _aware(started), _aware(ended) or _aware(last_seen)
        if start is not None and stop is not None and stop > start:
            seconds[rater_id] = seconds.get(rater_id, 0.0) + (stop - start).total_seconds()
    code = study_protocol(study).completion_code or ""
    records = []
    for r in raters:
        test, gold = votes.get((r.id, "test"), 0), votes.get((r.id, "gold"), 0)
        completed = r.completed_at is not None
        records.append(
            RaterPayment(
                rater=r.name,
                platform=r.platform or "",
                external_id=r.external_id or "",
                external_session=r.external_session or "",
                votes=test + gold,
                test_votes=test,
                gold_votes=gold,
                traps_passed=traps.get((r.id, True), 0),
                traps_failed=traps.get((r.id, False), 0),
                time_on_task_s=round(seconds.get(r.id, 0.0), 3),
                completed=completed,
                completed_at=_aware(r.completed_at),
                completion_code=code if completed else "",
                excluded=bool(r.excluded),
            )
        )
    return records


PAYMENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RaterPayment))


def payments_frame(session: Session, study: Study) -> pd.DataFrame:
    """:func:`rater_payments` as a table (columns ``PAYMENT_COLUMNS``)."""
    import pandas as pd

    return pd.DataFrame([asdict(p) for p in rater_payments(session, study)], columns=list(PAYMENT_COLUMNS))


def export_payments(session: Session, study: Study, out: str | Path) -> Path:
    """Write the per-rater table to CSV, Parquet, JSON or JSONL (by extension); returns the path."""
    from toolkit.io import write_table

    return write_table(payments_frame(session, study), out)
