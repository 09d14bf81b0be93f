"""The rater's screens with stimuli: training examples, the qualification quiz and rating.

All three draw the rating screen component; only the rating part runs again after a vote (a
fragment), and the vote's transaction also chooses the next item. Every answer is checked against
the stimulus the server put on this rater's screen.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import streamlit as st
from sqlalchemy.orm import Session

from annotation_ui import look
from annotation_ui.components.rating_screen import Screen, ScreenEvent, event, rating_screen
from annotation_ui.media import stimulus_url, video_duration
from annotation_ui.rater_session import (
    NEXT_KEY,
    SERVED_KEY,
    TOKEN_KEY,
    TRAIN_KEY,
    RaterContext,
    Served,
    context,
    flash,
    served,
    sign_out,
    take_flash,
)
from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.errors import ToolkitError
from toolkit.levels import LEVEL_VALUES
from toolkit.store import Store, rater_for_token
from toolkit.store.assignment import (
    NextStep,
    RaterProgress,
    can_undo,
    mark_trained,
    next_step,
    start_new_session,
    submit_trap,
    submit_vote,
    training_items,
    undo_last_vote,
)
from toolkit.store.qualification import next_quiz_item, submit_quiz_answer
from toolkit.store.schema import Rater, Study
from toolkit.store.studies import resolve_in_root

# A vote on a video counts only once the clip can have played in full since it was shown; the page
# also waits for the player's "ended" event. The margin covers clock granularity.
VIDEO_SLACK_S = 0.25
SHOWN_KEY = "rater_shown_at"  # when this session first drew a stimulus the server keeps no time for


def _message(note: tuple[str, str] | None) -> dict[str, str] | None:
    return {"kind": note[0], "text": note[1]} if note else None


def _sign_out_event() -> None:
    if event("signout") is not None:
        sign_out()


def _first_shown(key: str) -> datetime:
    shown: dict[str, datetime] = st.session_state.setdefault(SHOWN_KEY, {})
    return shown.setdefault(key, datetime.now(timezone.utc))


def _answer(name: str = "vote") -> tuple[ScreenEvent, Served, int, float | None] | None:
    """The screen's answer to the stimulus on screen: (event, stimulus, level, scale); None when it
    answers a screen no longer shown, or (with a message for the rater) when it is not acceptable."""
    answer, shown = event(name), served()
    if answer is None or shown is None or answer.key != shown.key:
        return None  # a late second click on the screen before
    level, scale = answer.values.get("level"), answer.values.get("scale")
    if isinstance(level, bool) or level not in LEVEL_VALUES:
        flash("error", "That answer was not one of the five levels; please answer again.")
        return None
    if shown.kind == "video" and not _video_seen(shown, answer.values.get("played") is True):
        flash("warning", "Please watch the whole video before you answer.")
        return None
    scale_factor = float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else None
    return answer, shown, cast(int, level), scale_factor


def _video_seen(shown: Served, played: bool) -> bool:
    if not played or shown.shown_at is None:
        return False
    elapsed = (datetime.now(timezone.utc) - shown.shown_at).total_seconds()
    return elapsed + VIDEO_SLACK_S >= video_duration(str(shown.file))


# --------------------------------------------------------------------------- training


def scale_text(ctx: RaterContext) -> str:
    levels = ", ".join(f"**{plain(label)}**" for label in ctx.labels)
    return (
        f"Answer on five levels, best first: {levels}. Click a level, or press its key: "
        f"**5** for {plain(ctx.labels[0])} down to **1** for {plain(ctx.labels[-1])}."
    )


def presentation_text(ctx: RaterContext) -> str:
    return f"Each {ctx.kind_words} is shown on a grey background at its true size. " + (
        "A video plays once from the start; the buttons open when it has ended."
        if "video" in ctx.kinds
        else "Take the time you need, then answer."
    )


def _next_example() -> None:
    if event("next") is not None:
        st.session_state[TRAIN_KEY] = st.session_state.get(TRAIN_KEY, 0) + 1


def training_view(store: Store, ctx: RaterContext, quiz_next: bool = False) -> None:
    """The training examples, then how to answer; ``quiz_next``: a qualification quiz comes first."""
    with store.session() as session:
        study = session.get(Study, ctx.study_id)
        examples = [(i.id, i.path, i.kind, i.expected_level) for i in training_items(session, study)] if study else []
        root = Path(study.media_root) if study else Path()
    index = st.session_state.get(TRAIN_KEY, 0)
    if index < len(examples):
        item_id, path, kind, level = examples[index]
        label = ctx.labels[5 - level] if level else ""
        screen = Screen(
            key=f"t{index}-i{item_id}",
            mode="train",
            kind=kind,
            src=stimulus_url(resolve_in_root(root, path)),
            labels=list(ctx.labels),
            question=ctx.ask(kind),
            caption=f"Example {index + 1} of {len(examples)}: this {kind} is an example of {label}.",
            progress={"text": f"Training: example {index + 1} of {len(examples)}", "fraction": index / len(examples)},
            message=_message(take_flash()),
            who=ctx.who,
            replay="free",
            audio=ctx.audio,
            example_level=level,
            next_label="Next example" if index + 1 < len(examples) else "Done with the examples",
        )
        rating_screen(screen, {"next": _next_example, "signout": _sign_out_event})
        return
    with look.text_page():
        st.title("Rating study")
        note = take_flash()
        if note:
            getattr(st, note[0])(plain(note[1]))
        st.markdown(f"You will be asked: **{plain(ctx.ask(ctx.kind_words))}**")
        st.markdown(scale_text(ctx))
        st.markdown(presentation_text(ctx))
        if quiz_next:
            st.markdown(
                "First a short qualification: a few items whose answer is known, answered like the rating itself."
            )
        if st.button("Start the qualification" if quiz_next else "Start rating", key="train_done"):
            with store.session() as session:
                mark_trained(session, rater_for_token(session, ctx.token))
            st.session_state.pop(TRAIN_KEY, None)
            st.rerun()


# --------------------------------------------------------------------------- qualification quiz


def _on_quiz_answer() -> None:
    ctx, taken = context(), _answer()
    if ctx is None or taken is None:
        return
    _, shown, level, _ = taken
    try:
        with get_store().session() as session:
            result = submit_quiz_answer(session, rater_for_token(session, ctx.token), shown.item_id, level)
    except ToolkitError as exc:
        flash("error", str(exc))
        return
    expected = ctx.labels[5 - result.expected_level]
    if result.finished and result.passed:
        flash("success", "You passed the qualification: the rating starts now.")
    elif result.correct:
        flash("success", f"Right: the expected answer was {expected}.")
    else:
        flash("warning", f"The expected answer was {expected}; you answered {ctx.labels[5 - level]}.")


def quiz_view(store: Store, ctx: RaterContext) -> bool:
    """Draw the next quiz question; False when there is none left (the page moves on)."""
    with store.session() as session:
        question = next_quiz_item(session, rater_for_token(session, ctx.token))
    if question is None:
        return False
    key = f"q{question.position}-i{question.item_id}"
    shown = Served(key, question.item_id, question.kind, "quiz", question.file, _first_shown(key))
    st.session_state[SERVED_KEY] = shown
    screen = Screen(
        key=key,
        mode="rate",
        kind=question.kind,
        src=stimulus_url(question.file),
        labels=list(ctx.labels),
        question=ctx.ask(question.kind),
        caption=f"Qualification: question {question.position} of {question.total}.",
        progress={
            "text": f"Qualification: {question.position - 1} of {question.total} answered",
            "fraction": (question.position - 1) / question.total,
        },
        message=_message(take_flash()),
        offer_undo=False,
        who=ctx.who,
        replay=ctx.replay,
        audio=ctx.audio,
        oversize=ctx.oversize,
    )
    rating_screen(screen, {"vote": _on_quiz_answer, "signout": _sign_out_event})
    return True


# --------------------------------------------------------------------------- rating


def progress_line(progress: RaterProgress, ctx: RaterContext, traps_answered: int = 0) -> tuple[str, float]:
    """One count of the rater's answers (test, check and trap items alike) and of those to come.

    Check (gold) items come one after every ``gold_every`` test votes while any are left, traps one
    after every ``trap_every`` test votes while test items remain, so their numbers follow from the
    test items' number.
    """
    tests = progress.rated + progress.remaining
    golds = min(ctx.n_gold, tests // ctx.gold_every) if ctx.gold_every > 0 else 0
    traps = min(ctx.n_traps, max(tests - 1, 0) // ctx.trap_every) if ctx.trap_every > 0 else 0
    done = progress.rated + progress.gold_rated + traps_answered
    total = tests + max(golds, progress.gold_rated) + max(traps, traps_answered)
    fraction = 1.0 if total == 0 else min(1.0, done / total)
    return f"{done} of {total} done", fraction


def _on_vote() -> None:
    ctx, taken = context(), _answer()
    if ctx is None or taken is None:
        return
    _, shown, level, scale_factor = taken
    try:
        with get_store().session() as session:
            rater = rater_for_token(session, ctx.token)
            if shown.role == "trap":
                submit_trap(session, rater, shown.item_id, level)
                gold = None
            else:
                result = submit_vote(session, rater, shown.item_id, level, scale_factor=scale_factor)
                gold = result.gold if result.created else None
            _choose_next(session, rater)
    except ToolkitError as exc:
        flash("error", str(exc))
        return
    if gold is not None:
        expected = ctx.labels[5 - gold.expected_level]
        if gold.correct:
            flash("success", f"Check item: well done, the expected answer was {expected}.")
        else:
            flash(
                "warning",
                f"Check item: the expected answer was {expected}; you answered {ctx.labels[5 - level]}. "
                "Please look carefully.",
            )


def _choose_next(session: Session, rater: Rater) -> None:
    """The step after an answer, chosen in the answer's transaction, for the run that follows."""
    st.session_state[NEXT_KEY] = _step(session, rater)


def _step(session: Session, rater: Rater) -> tuple[NextStep, bool, int]:
    step = next_step(session, rater)
    return step, can_undo(session, rater), step.progress.traps_answered


def _on_undo() -> None:
    ctx = context()
    if event("undo") is None or ctx is None:
        return
    with get_store().session() as session:
        rater = rater_for_token(session, ctx.token)
        path = undo_last_vote(session, rater)
        _choose_next(session, rater)
    flash("info", "Your last vote was taken back: rate this one again." if path else "There is no vote to take back.")


def _new_session(store: Store, token: str) -> None:
    with store.session() as session:
        start_new_session(session, rater_for_token(session, token))


@st.fragment
def rating_view() -> None:
    """The rating part of the page: after a vote only this runs again."""
    rating_body()


def rating_body() -> None:
    ctx = context()
    if ctx is None or st.session_state.get(TOKEN_KEY) != ctx.token:
        st.rerun()  # signed out from the screen: the whole page shows the join form
        return
    store = get_store()
    chosen = st.session_state.pop(NEXT_KEY, None)
    try:
        if chosen is None:
            with store.session() as session:
                chosen = _step(session, rater_for_token(session, ctx.token))
    except ToolkitError:
        sign_out()
        flash("error", "Unknown or revoked token.")
        st.rerun()
        return
    step, undo_ok, traps = chosen
    if step.status == "finished":
        st.session_state.pop(SERVED_KEY, None)
        st.rerun()  # the whole page shows the rater's completion
        return
    text, fraction = progress_line(step.progress, ctx, traps)
    note = take_flash()
    if step.skipped_missing:
        note = note or (
            "warning",
            f"{len(step.skipped_missing)} item(s) could not be loaded and were skipped; "
            "the study's administrator can see which.",
        )
    if step.status != "rate" or step.item is None:
        st.session_state.pop(SERVED_KEY, None)
        with look.text_page():
            if note:
                getattr(st, note[0])(plain(note[1]))
            st.header("Session complete")
            st.markdown(
                f"You gave {step.progress.session_votes} answers in this session ({text} in all). "
                "Take a short break before you go on."
            )
            st.button("Start the next session", key="next_session", on_click=_new_session, args=(store, ctx.token))
        return
    item = step.item
    # A new key whenever the server shows the item anew (after an undo, too): the screen then draws
    # it from the start, as the server's clock for the viewing time does.
    key = f"{item.role}{item.assignment_id}-{int(item.shown_at.timestamp() * 1000)}-i{item.item_id}"
    st.session_state[SERVED_KEY] = Served(key, item.item_id, item.kind, item.role, item.file, item.shown_at)
    screen = Screen(
        key=key,
        mode="rate",
        kind=item.kind,
        src=stimulus_url(item.file),
        labels=list(ctx.labels),
        question=ctx.ask(item.kind),
        progress={"text": text, "fraction": fraction},
        message=_message(note),
        can_undo=undo_ok,
        who=ctx.who,
        replay=ctx.replay,
        audio=ctx.audio,
        oversize=ctx.oversize,
        trap=item.trap.message if item.trap is not None else None,
    )
    rating_screen(screen, {"vote": _on_vote, "undo": _on_undo, "signout": _sign_out_event})
