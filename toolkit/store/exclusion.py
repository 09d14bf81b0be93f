"""Automatic exclusion of unreliable raters (P.808, the P.910 crowd kit, KonIQ), with an admin override.

The rules of ``StudyProtocol`` (each off unless set): failed traps, gold accuracy, straightlining
(the longest run of one level, or one level's share of the votes) and responding too fast (the
median response time). A run records each broken rule as a ``RaterFlag`` with its figures and sets
``Rater.excluded``: the votes stay in the store, and every label computation leaves them out (the
study snapshot drops excluded raters). An administrator's override (keep or exclude, with a reason,
who and when) wins over the rules, now and in later runs; a rater the administrator excluded
outside the rules (``set_rater_excluded``) is never brought back by a rule run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.schema import Item, Rater, RaterFlag, Rating, Study, TrapAnswer, utcnow
from toolkit.store.study_settings import StudyProtocol, study_protocol

Decision = Literal["keep", "exclude"]


@dataclass(frozen=True)
class Flag:
    rule: str  # failed_traps | gold_accuracy | same_run | level_share | too_fast
    value: float
    threshold: float
    reason: str


@dataclass
class RaterScreening:
    rater: str
    flags: list[Flag]
    excluded: bool  # after the run (an override decides over the flags)
    override: str | None


@dataclass
class FlagRow:
    """One line of the administrator's list: a broken rule, or a rater with an override only."""

    rater: str
    excluded: bool
    rule: str | None
    value: float | None
    threshold: float | None
    reason: str | None
    flagged_at: datetime | None
    override: str | None
    override_reason: str | None
    override_by: str | None
    override_at: datetime | None


def longest_run(levels: list[int]) -> int:
    """The longest stretch of one level given in a row."""
    best = run = 0
    previous: int | None = None
    for level in levels:
        run = run + 1 if level == previous else 1
        previous = level
        best = max(best, run)
    return best


@dataclass
class _RaterVotes:
    test_levels: list[int]  # in the order given
    response_ms: list[float]
    gold_correct: list[bool]
    traps_failed: int = 0


def _votes_by_rater(session: Session, study: Study, rater_ids: list[int]) -> dict[int, _RaterVotes]:
    found: dict[int, _RaterVotes] = defaultdict(lambda: _RaterVotes([], [], []))
    rows = session.execute(
        select(Rating.rater_id, Rating.level, Rating.response_ms, Item.role, Item.expected_level, Item.tolerance)
        .join(Item, Rating.item_id == Item.id)
        .where(Rating.study_id == study.id, Rating.rater_id.in_(rater_ids))
        .order_by(Rating.rater_id, Rating.answered_at, Rating.id)
    )
    for rater_id, level, response_ms, role, expected, tolerance in rows:
        votes = found[rater_id]
        if role == "test":
            votes.test_levels.append(level)
            if response_ms is not None:
                votes.response_ms.append(float(response_ms))
        elif role == "gold" and expected is not None:
            votes.gold_correct.append(abs(level - expected) <= tolerance)
    traps = session.execute(select(TrapAnswer.rater_id, TrapAnswer.passed).where(TrapAnswer.rater_id.in_(rater_ids)))
    for rater_id, passed in traps:
        if not passed:
            found[rater_id].traps_failed += 1
    return found


def evaluate_rules(protocol: StudyProtocol, votes: _RaterVotes) -> list[Flag]:
    """The rules a rater's answers break (empty: none)."""
    flags: list[Flag] = []
    p = protocol
    if p.max_failed_traps is not None and votes.traps_failed >= p.max_failed_traps:
        flags.append(
            Flag(
                "failed_traps",
                votes.traps_failed,
                p.max_failed_traps,
                f"failed {votes.traps_failed} trapping questions",
            )
        )
    if p.min_gold_accuracy is not None and votes.gold_correct:
        accuracy = float(np.mean(votes.gold_correct))
        if accuracy < p.min_gold_accuracy:
            flags.append(
                Flag(
                    "gold_accuracy",
                    accuracy,
                    p.min_gold_accuracy,
                    f"gold accuracy {accuracy:.0%} over {len(votes.gold_correct)} gold items "
                    f"(needs {p.min_gold_accuracy:.0%})",
                )
            )
    levels = votes.test_levels
    if len(levels) >= max(p.rule_min_votes, 1):
        run = longest_run(levels)
        if p.max_same_run is not None and run >= p.max_same_run:
            flags.append(Flag("same_run", run, p.max_same_run, f"gave one level {run} times in a row"))
        counts = np.bincount(np.asarray(levels), minlength=6)
        share = float(counts.max() / len(levels))
        if p.max_level_share is not None and share >= p.max_level_share:
            flags.append(
                Flag(
                    "level_share",
                    share,
                    p.max_level_share,
                    f"gave level {int(counts.argmax())} in {share:.0%} of {len(levels)} votes",
                )
            )
    if p.min_median_ms is not None and len(votes.response_ms) >= max(p.rule_min_votes, 1):
        median = float(np.median(votes.response_ms))
        if median < p.min_median_ms:
            flags.append(
                Flag(
                    "too_fast",
                    median,
                    p.min_median_ms,
                    f"median response time {median:.0f} ms (needs {p.min_median_ms:.0f})",
                )
            )
    return flags


def _decide(rater: Rater, flags: list[Flag]) -> None:
    if rater.exclusion_override is not None:
        rater.excluded = rater.exclusion_override == "exclude"
        rater.excluded_by_rules = False
    elif flags:
        if not rater.excluded:
            rater.excluded = True
            rater.excluded_by_rules = True
    elif rater.excluded_by_rules:  # the rules excluded them, and no rule holds any more
        rater.excluded = False
        rater.excluded_by_rules = False


def run_exclusion(
    session: Session, study: Study, rater: Rater | None = None, now: datetime | None = None
) -> list[RaterScreening]:
    """Evaluate the study's rules for every rater (or one), record the flags and set ``excluded``."""
    now = now or utcnow()
    protocol = study_protocol(study)
    raters = (
        [rater]
        if rater is not None
        else list(session.scalars(select(Rater).where(Rater.study_id == study.id).order_by(Rater.name)))
    )
    ids = [r.id for r in raters]
    votes = _votes_by_rater(session, study, ids)
    session.execute(delete(RaterFlag).where(RaterFlag.rater_id.in_(ids)))
    results: list[RaterScreening] = []
    for r in raters:
        flags = evaluate_rules(protocol, votes[r.id]) if protocol.has_exclusion_rules else []
        for flag in flags:
            session.add(
                RaterFlag(
                    rater_id=r.id,
                    rule=flag.rule,
                    value=flag.value,
                    threshold=flag.threshold,
                    reason=flag.reason,
                    flagged_at=now,
                )
            )
        _decide(r, flags)
        results.append(RaterScreening(rater=r.name, flags=flags, excluded=r.excluded, override=r.exclusion_override))
    session.flush()
    return results


def _rater(session: Session, study: Study, name: str) -> Rater:
    rater = session.scalar(select(Rater).where(Rater.study_id == study.id, Rater.name == name))
    if rater is None:
        raise StoreError(f"study {study.name!r} has no rater named {name!r}")
    return rater


def override_exclusion(
    session: Session,
    study: Study,
    rater_name: str,
    decision: Decision | None,
    reason: str | None = None,
    by: str | None = None,
    now: datetime | None = None,
) -> Rater:
    """Keep or exclude a rater whatever the rules say (``None``: the rules decide again).

    A decision needs a reason; it is stored with who made it and when, and later rule runs keep it.
    """
    rater = _rater(session, study, rater_name)
    if decision is None:
        rater.exclusion_override = rater.override_reason = rater.override_by = rater.override_at = None
        session.flush()
        run_exclusion(session, study, rater=rater, now=now)
        return rater
    if decision not in ("keep", "exclude"):
        raise InputError(f"override must be 'keep' or 'exclude', got {decision!r}")
    if not (reason or "").strip():
        raise InputError(f"overriding the exclusion of rater {rater_name!r} needs a reason")
    rater.exclusion_override = decision
    rater.override_reason = (reason or "").strip()
    rater.override_by = (by or "").strip() or None
    rater.override_at = now or utcnow()
    rater.excluded = decision == "exclude"
    rater.excluded_by_rules = False
    session.flush()
    return rater


def list_flags(session: Session, study: Study) -> list[FlagRow]:
    """Every flag of the last rule runs, and every override, by rater name (for the admin page)."""
    raters = list(session.scalars(select(Rater).where(Rater.study_id == study.id).order_by(Rater.name)))
    flags: dict[int, list[RaterFlag]] = defaultdict(list)
    for flag in session.scalars(
        select(RaterFlag).where(RaterFlag.rater_id.in_([r.id for r in raters])).order_by(RaterFlag.id)
    ):
        flags[flag.rater_id].append(flag)
    rows: list[FlagRow] = []
    for r in raters:
        override = (r.exclusion_override, r.override_reason, r.override_by, r.override_at)
        if not flags[r.id] and r.exclusion_override is None:
            continue
        listed: list[RaterFlag | None] = list(flags[r.id]) or [None]
        for entry in listed:
            rows.append(
                FlagRow(
                    r.name,
                    r.excluded,
                    entry.rule if entry else None,
                    entry.value if entry else None,
                    entry.threshold if entry else None,
                    entry.reason if entry else None,
                    entry.flagged_at if entry else None,
                    *override,
                )
            )
    return rows
