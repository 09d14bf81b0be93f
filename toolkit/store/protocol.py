"""The rater's way through a study, in the order of P.808 and the P.910 crowd kit: instructions,
consent, a screen check, training examples, a qualification quiz, rating, completion.

``rater_flow`` says which screen the app shows next, so the app stays a thin shell; each step a
study does not use (no instructions text, no screen requirement, no quiz, ...) is skipped. The
rating functions (``next_step``, ``submit_vote``) refuse a rater who has not been admitted, so no
page can skip a step. Trapping questions are defined here too (``add_trap``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.store.schema import EnvironmentCheck, Item, Rater, Study, TrapItem, utcnow
from toolkit.store.study_settings import StudyProtocol, study_protocol

FlowStep = Literal["instructions", "consent", "environment", "training", "quiz", "rating", "completion", "not_admitted"]

# Steps that must be done before any vote is taken (training is offered, not enforced, as before).
GATES: tuple[str, ...] = ("instructions", "consent", "environment", "quiz", "not_admitted")


@dataclass
class FlowState:
    step: FlowStep
    reason: str | None = None  # why the rater is not admitted, or why the last screen check failed


@dataclass
class EnvironmentResult:
    passed: bool
    reason: str | None  # shown to the rater when the check fails


_STUDY_OF_TRANSACTION = "qalign_rater_study"


def rater_study(session: Session, rater: Rater) -> Study:
    """The rater's study, read once per transaction.

    The session's identity map holds objects weakly: a study nobody keeps a reference to is read
    again by the next ``session.get``. A vote asks for it several times (admission, the vote, the
    next item), so the transaction keeps it.
    """
    transaction = session.get_transaction()
    kept = session.info.get(_STUDY_OF_TRANSACTION)
    if kept is not None and transaction is not None and kept[0] is transaction and kept[1].id == rater.study_id:
        return kept[1]
    study = session.get(Study, rater.study_id)
    if study is None:  # the foreign key (ON DELETE CASCADE) keeps this from happening
        raise StoreError(f"rater {rater.name!r} belongs to no study")
    session.info[_STUDY_OF_TRANSACTION] = (session.get_transaction(), study)
    return study


_study = rater_study


def _latest_check(session: Session, rater: Rater) -> EnvironmentCheck | None:
    return session.scalar(
        select(EnvironmentCheck)
        .where(EnvironmentCheck.rater_id == rater.id)
        .order_by(EnvironmentCheck.checked_at.desc(), EnvironmentCheck.id.desc())
        .limit(1)
    )


def _has_training(session: Session, study: Study) -> bool:
    return (
        session.scalar(
            select(Item.id)
            .where(Item.study_id == study.id, Item.role == "training", Item.missing_since.is_(None))
            .limit(1)
        )
        is not None
    )


def rater_flow(session: Session, rater: Rater, now: datetime | None = None) -> FlowState:
    """What the app should show this rater next (see the module docstring for the order)."""
    from toolkit.store.qualification import quiz_size

    if rater.revoked:
        return FlowState("not_admitted", "this rater's access was revoked")
    study = _study(session, rater)
    protocol = study_protocol(study)
    if study.instructions and rater.instructions_seen_at is None:
        return FlowState("instructions")
    if study.consent_text and rater.consent_given_at is None:
        return FlowState("consent")
    if protocol.needs_environment_check:
        latest = _latest_check(session, rater)
        if latest is None or not latest.passed:
            return FlowState("environment", latest.reason if latest is not None else None)
    if rater.trained_at is None and _has_training(session, study):
        return FlowState("training")
    if protocol.quiz_items > 0 and rater.quiz_passed is not True and quiz_size(session, study, protocol) > 0:
        if rater.quiz_passed is False:
            return FlowState("not_admitted", "the qualification quiz was not passed")
        return FlowState("quiz")
    if rater.completed_at is not None:
        return FlowState("completion")
    return FlowState("rating")


def admission_refusal(session: Session, rater: Rater, now: datetime | None = None) -> str | None:
    """Why this rater may not rate yet (one line), or None when they may."""
    study = _study(session, rater)
    protocol = study_protocol(study)
    # A study with none of the gates answers without a query, as rating did before.
    if not (study.instructions or study.consent_text or protocol.needs_environment_check or protocol.quiz_items):
        return None
    state = rater_flow(session, rater, now)
    if state.step not in GATES:
        return None
    if state.step == "not_admitted":
        return f"rater {rater.name!r} is not admitted: {state.reason}"
    return f"rater {rater.name!r} must finish the {state.step} step before rating"


def mark_instructions_seen(session: Session, rater: Rater, now: datetime | None = None) -> None:
    """Record that the rater read the instructions (the first time counts)."""
    if rater.instructions_seen_at is None:
        rater.instructions_seen_at = now or utcnow()
        session.flush()


def give_consent(session: Session, rater: Rater, now: datetime | None = None) -> None:
    """Record the rater's consent (after the instructions, when the study has them)."""
    study = _study(session, rater)
    if study.instructions and rater.instructions_seen_at is None:
        raise StoreError(f"rater {rater.name!r} must read the instructions before consenting")
    if rater.consent_given_at is None:
        rater.consent_given_at = now or utcnow()
        session.flush()


def _environment_reasons(protocol: StudyProtocol, width: int, height: int, dpr: float, zoom: float | None) -> list[str]:
    reasons: list[str] = []
    if width < protocol.min_viewport_width or height < protocol.min_viewport_height:
        reasons.append(
            f"the browser window shows {width}x{height} pixels; this study needs at least "
            f"{protocol.min_viewport_width}x{protocol.min_viewport_height}: enlarge the window or use a larger screen"
        )
    if dpr < protocol.min_dpr:
        reasons.append(
            f"the screen has {dpr:g} device pixels per CSS pixel; this study needs at least {protocol.min_dpr:g}"
        )
    if protocol.max_zoom_deviation is not None:
        if zoom is None:
            reasons.append("the browser zoom could not be read; set it to 100 % and reload")
        elif abs(zoom - 1.0) > protocol.max_zoom_deviation + 1e-9:
            reasons.append(f"the browser zoom is {zoom * 100:.0f} %: set it to 100 % (Ctrl+0 or Cmd+0) and check again")
    if protocol.oversize == "refuse":
        device_w, device_h = int(width * dpr), int(height * dpr)
        if device_w < protocol.stimulus_width or device_h < protocol.stimulus_height:
            reasons.append(
                f"the stimuli are up to {protocol.stimulus_width}x{protocol.stimulus_height} pixels and must be shown "
                f"unscaled, but the window holds {device_w}x{device_h} screen pixels: use a larger screen or window"
            )
    return reasons


def check_environment(
    session: Session,
    rater: Rater,
    viewport_width: int,
    viewport_height: int,
    dpr: float,
    zoom: float | None = None,
    now: datetime | None = None,
) -> EnvironmentResult:
    """Check the rater's screen against the study's requirements and record the result.

    ``viewport_*`` are the browser window's inner size in CSS pixels, ``dpr`` its device pixel
    ratio and ``zoom`` the browser zoom (1.0 = 100 %) as the page measured them. A failure comes
    with the reason to show; the rater may fix it and check again (every try is recorded).
    """
    for name, value in (("viewport width", viewport_width), ("viewport height", viewport_height), ("dpr", dpr)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InputError(f"screen check: {name} must be a positive number, got {value!r}")
    if zoom is not None and (isinstance(zoom, bool) or not isinstance(zoom, (int, float)) or not zoom > 0):
        raise InputError(f"screen check: zoom must be a positive number, got {zoom!r}")
    protocol = study_protocol(_study(session, rater))
    reasons = _environment_reasons(protocol, int(viewport_width), int(viewport_height), float(dpr), zoom)
    reason = "; ".join(reasons) or None
    session.add(
        EnvironmentCheck(
            rater_id=rater.id,
            checked_at=now or utcnow(),
            viewport_width=int(viewport_width),
            viewport_height=int(viewport_height),
            dpr=float(dpr),
            zoom=None if zoom is None else float(zoom),
            passed=reason is None,
            reason=reason,
        )
    )
    session.flush()
    return EnvironmentResult(passed=reason is None, reason=reason)


# --------------------------------------------------------------------------- traps


def trap_message(study: Study, instructed_level: int, kind: str = "image") -> str:
    """The default instruction drawn over a trap: which button to press."""
    from toolkit.store.setup import level_labels

    label = level_labels(study)[5 - instructed_level]
    return f"Attention check: for this {kind}, please select \u201c{label}\u201d."


def add_trap(session: Session, study: Study, path: str, instructed_level: int, message: str | None = None) -> TrapItem:
    """A trapping question: the stimulus at ``path`` (inside the media root) with an instruction to
    press ``instructed_level``; the app draws ``message`` (default: :func:`trap_message`) over it."""
    from toolkit.store.studies import media_kind, resolve_in_root

    if isinstance(instructed_level, bool) or instructed_level not in (1, 2, 3, 4, 5):
        raise InputError(f"trap {path!r}: the instructed level must be 1-5, got {instructed_level!r}")
    relative = str(path).strip()
    file = resolve_in_root(Path(study.media_root), relative)
    if not file.is_file():
        raise InputError(f"trap {relative!r}: no such file in the media root {study.media_root!r}")
    kind = media_kind(relative)
    text = (message or "").strip() or trap_message(study, instructed_level, kind)
    existing = session.scalar(
        select(TrapItem).where(
            TrapItem.study_id == study.id, TrapItem.path == relative, TrapItem.instructed_level == instructed_level
        )
    )
    if existing is not None:
        existing.message = text
        session.flush()
        return existing
    trap = TrapItem(study_id=study.id, path=relative, kind=kind, instructed_level=instructed_level, message=text)
    session.add(trap)
    session.flush()
    return trap


def count_traps(session: Session, study: Study) -> int:
    return int(session.scalar(select(func.count()).select_from(TrapItem).where(TrapItem.study_id == study.id)) or 0)
