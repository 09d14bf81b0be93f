"""The qualification quiz (P.808, the P.910 crowd kit): a few gold items with a known answer before
rating; a rater passes with at least ``quiz_pass`` answers within the item's tolerance.

The quiz items are the first ``quiz_items`` gold items in the rater's own random order, so a
reload shows the same question without stored state. Answers are kept in ``quiz_answers``, never
as votes; a quiz item is not served again as an interleaved gold item to the same rater.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.raters import insert_or_skip
from toolkit.store.schema import Item, QuizAnswer, Rater, Study, utcnow
from toolkit.store.study_settings import StudyProtocol, study_protocol


@dataclass
class QuizItem:
    item_id: int
    path: str
    kind: str
    file: Path
    position: int  # 1-based
    total: int


@dataclass
class QuizResult:
    correct: bool
    expected_level: int
    given_level: int
    tolerance: int
    finished: bool
    passed: bool | None  # set once the quiz is finished


def _gold_ids(session: Session, study: Study) -> np.ndarray:
    ids = session.scalars(
        select(Item.id).where(
            Item.study_id == study.id,
            Item.role == "gold",
            Item.expected_level.is_not(None),
            Item.missing_since.is_(None),
        )
    ).all()
    return np.asarray(ids, dtype=np.int64)


def quiz_size(session: Session, study: Study, protocol: StudyProtocol | None = None) -> int:
    """Questions in the study's quiz: the setting, or fewer when the study has fewer gold items."""
    protocol = protocol or study_protocol(study)
    if protocol.quiz_items <= 0:
        return 0
    return min(protocol.quiz_items, len(_gold_ids(session, study)))


def quiz_item_ids(session: Session, rater: Rater, study: Study) -> list[int]:
    """The rater's quiz questions in order (stable across requests)."""
    from toolkit.store.assignment import order_keys

    size = quiz_size(session, study)
    ids = _gold_ids(session, study)
    if size == 0:
        return []
    return [int(i) for i in ids[np.argsort(order_keys(rater, ids), kind="stable")][:size]]


def _answered(session: Session, rater: Rater) -> dict[int, bool]:
    rows = session.execute(select(QuizAnswer.item_id, QuizAnswer.correct).where(QuizAnswer.rater_id == rater.id))
    return {int(item_id): bool(correct) for item_id, correct in rows}


def _study(session: Session, rater: Rater) -> Study:
    study = session.get(Study, rater.study_id)
    if study is None:
        raise StoreError(f"rater {rater.name!r} belongs to no study")
    return study


def next_quiz_item(session: Session, rater: Rater) -> QuizItem | None:
    """The quiz question to show now; None when the quiz is over (or the study has none)."""
    from toolkit.store.studies import resolve_in_root

    study = _study(session, rater)
    if rater.quiz_passed is not None:
        return None
    order = quiz_item_ids(session, rater, study)
    answered = _answered(session, rater)
    for position, item_id in enumerate(order, start=1):
        if item_id in answered:
            continue
        item = session.get(Item, item_id)
        assert item is not None  # read from the same table just now
        return QuizItem(
            item_id=item.id,
            path=item.path,
            kind=item.kind,
            file=resolve_in_root(Path(study.media_root), item.path),
            position=position,
            total=len(order),
        )
    return None


def submit_quiz_answer(
    session: Session, rater: Rater, item_id: int, level: int, now: datetime | None = None
) -> QuizResult:
    """Record an answer to the current quiz question; the last one decides pass or fail."""
    if isinstance(level, bool) or level not in (1, 2, 3, 4, 5):
        raise InputError(f"quiz answer must be an integer level 1-5, got {level!r}")
    if rater.revoked:
        raise StoreError("unknown or revoked rater token")
    study = _study(session, rater)
    order = quiz_item_ids(session, rater, study)
    if item_id not in order:
        raise StoreError(f"item {item_id} is not a quiz question for rater {rater.name!r}; reload the page")
    item = session.get(Item, item_id)
    assert item is not None and item.expected_level is not None  # a gold item with a known answer
    answered = _answered(session, rater)
    if item_id not in answered:
        correct = abs(level - item.expected_level) <= item.tolerance
        # A second tab answering at once: the first answer stands.
        values = dict(rater_id=rater.id, item_id=item_id, level=level, correct=correct, answered_at=now or utcnow())
        insert_or_skip(session, QuizAnswer, values)
        answered = _answered(session, rater)
    given = session.scalar(
        select(QuizAnswer.level).where(QuizAnswer.rater_id == rater.id, QuizAnswer.item_id == item_id)
    )
    assert given is not None
    finished = all(i in answered for i in order)
    passed: bool | None = None
    if finished:
        protocol = study_protocol(study)
        passed = sum(answered[i] for i in order) >= min(protocol.quiz_pass, len(order))
        if rater.quiz_passed is None:
            rater.quiz_passed = passed
            rater.quiz_finished_at = now or utcnow()
            session.flush()
        passed = rater.quiz_passed
    return QuizResult(
        correct=answered[item_id],
        expected_level=item.expected_level,
        given_level=int(given),
        tolerance=item.tolerance,
        finished=finished,
        passed=passed,
    )


def quiz_answer_ids(session: Session, rater: Rater) -> list[int]:
    """Gold items this rater met in the quiz (not served again as interleaved gold)."""
    return [int(i) for i in session.scalars(select(QuizAnswer.item_id).where(QuizAnswer.rater_id == rater.id))]
