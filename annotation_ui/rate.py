"""The rater's side: join (invite token or self-registration), training examples, rating.

Everything a rater may do goes through ``toolkit.store.assignment`` with the rater found from
their token on every action, so a page can only ever show or change that rater's own votes.
Stimuli and the scale are drawn by the rating screen component (``components/rating_screen``):
one stimulus pixel per device pixel on a mid-grey surround, five identical buttons beside it.
Only the rating part runs again after a vote (a fragment); the study's settings are read once
per browser session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotation_ui import look
from annotation_ui.components.rating_screen import Screen, event, rating_screen
from annotation_ui.media import stimulus_url, video_duration
from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.errors import StoreError, ToolkitError
from toolkit.levels import LEVEL_VALUES
from toolkit.store import Store, list_studies, rater_for_token
from toolkit.store.assignment import (
    RaterProgress,
    can_undo,
    mark_trained,
    next_step,
    self_register,
    start_new_session,
    submit_vote,
    training_items,
    undo_last_vote,
)
from toolkit.store.schema import Item, Rater, Study
from toolkit.store.setup import level_labels, study_question
from toolkit.store.studies import resolve_in_root
from toolkit.store.study_settings import study_protocol

TOKEN_KEY = "rater_token"
FLASH_KEY = "rater_flash"
CONTEXT_KEY = "rater_context"
SERVED_KEY = "rater_served"
TRAIN_KEY = "train_index"
NEXT_KEY = "rater_next"

# A vote on a video counts only once the clip can have played in full since the server showed it;
# the page also waits for the player's "ended" event. The margin covers clock granularity.
VIDEO_SLACK_S = 0.25


# --------------------------------------------------------------------------- session state


@dataclass(frozen=True)
class RaterContext:
    """What the pages need of the rater and their study, read once per browser session."""

    token: str
    rater_name: str
    study_id: int
    study_name: str
    labels: tuple[str, ...]
    question: str  # with "{input}" for the media kind, as stored
    kinds: tuple[str, ...]  # media kinds of the study's items ("image", "video")
    gold_every: int
    n_gold: int
    replay: str = "once"
    audio: str = "muted"
    oversize: str = "scale"

    def ask(self, kind: str) -> str:
        return study_question_text(self.question, kind)

    @property
    def kind_words(self) -> str:
        """How texts name this study's stimuli: image, video, or image or video."""
        return " or ".join(self.kinds) or "image"


@dataclass(frozen=True)
class Served:
    """The stimulus on the rater's screen, for checking the screen's answer against."""

    key: str
    item_id: int
    kind: str
    file: Path
    shown_at: datetime | None


def study_question_text(template: str, kind: str) -> str:
    return template.replace("{input}", kind)


def load_context(store: Store, token: str) -> RaterContext:
    """The rater's context (raises ToolkitError for an unknown or revoked token)."""
    cached = st.session_state.get(CONTEXT_KEY)
    if isinstance(cached, RaterContext) and cached.token == token:
        return cached
    with store.session() as session:
        rater = rater_for_token(session, token)
        study = session.get(Study, rater.study_id)
        if study is None:  # the foreign key (ON DELETE CASCADE) keeps this from happening
            raise StoreError(f"rater {rater.name!r} belongs to no study")
        rows = session.execute(
            select(Item.kind, Item.role).where(Item.study_id == study.id, Item.role != "training").distinct()
        ).all()
        context = RaterContext(
            token=token,
            rater_name=rater.name,
            study_id=study.id,
            study_name=study.name,
            labels=tuple(level_labels(study)),
            question=study_question(study, "{input}"),
            kinds=tuple(sorted({kind for kind, _ in rows})),
            gold_every=study.gold_every,
            n_gold=session.scalar(
                select(func.count()).select_from(Item).where(Item.study_id == study.id, Item.role == "gold")
            )
            or 0,
            **_presentation(study),
        )
    st.session_state[CONTEXT_KEY] = context
    return context


def _presentation(study: Study) -> dict[str, str]:
    """The study's presentation settings (replay, audio, oversize policy); defaults where unset."""
    protocol = study_protocol(study)
    return {"replay": protocol.video_replay, "audio": protocol.audio, "oversize": protocol.oversize}


# --------------------------------------------------------------------------- token in the session


def current_token() -> str | None:
    """The rater's token: from the invite link (``?token=``) when one was opened, else from this
    browser session.

    The link's token moves into the session and off the address bar, where it would stay in the
    browser's history, in screenshots and in links shared by mistake. Opening the invite link
    again resumes where the rater was; a reload of the bare address asks for the token.
    """
    token = st.session_state.get(TOKEN_KEY)
    linked = st.query_params.get("token")
    if "token" in st.query_params:
        del st.query_params["token"]
    if linked and linked.strip():
        token = linked.strip()
        st.session_state[TOKEN_KEY] = token
    return token or None


def sign_in(token: str) -> None:
    st.session_state[TOKEN_KEY] = token


def sign_out() -> None:
    for key in (TOKEN_KEY, TRAIN_KEY, CONTEXT_KEY, SERVED_KEY, NEXT_KEY):
        st.session_state.pop(key, None)
    if "token" in st.query_params:
        del st.query_params["token"]


def flash(kind: str, message: str) -> None:
    """A message for the next run (callbacks run before the page is drawn again)."""
    st.session_state[FLASH_KEY] = (kind, message)


def take_flash() -> tuple[str, str] | None:
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    return (kind, message) if kind else None


def show_flash() -> None:
    """Show the waiting message on a text page (messages are plain text, shown as typed)."""
    taken = take_flash()
    if taken:
        getattr(st, taken[0])(plain(taken[1]))


# --------------------------------------------------------------------------- join


def join_view(store: Store) -> None:
    st.header("Join a rating study")
    with st.form("join"):
        token = st.text_input("Your invite token", type="password", key="join_token")
        joined = st.form_submit_button("Join")
    if joined:
        try:
            with store.session() as session:
                rater_for_token(session, token or "")
        except ToolkitError:
            st.error("Unknown or revoked token.")
            return
        sign_in(token.strip())
        st.rerun()

    with store.session() as session:
        open_studies = [(s.id, s.name) for s in list_studies(session) if s.allow_self_register]
    if not open_studies:
        return
    st.subheader("No invitation? Register")
    names = dict(open_studies)
    with st.form("register"):
        # Cast: at Python 3.10, the version mypy checks for, streamlit's overload for empty options
        # (typed with typing.Never, which 3.10 lacks) takes every call and types the value None.
        # The options are not empty (checked above), so the value is one of the study ids.
        study_id = cast(int, st.selectbox("Study", list(names), format_func=lambda i: names[i], key="register_study"))
        name = st.text_input("A name or nickname", key="register_name", max_chars=100)
        registered = st.form_submit_button("Register")
    if registered:
        try:
            with store.session() as session:
                study = session.get(Study, study_id)
                if study is None:  # removed since the page was drawn
                    raise StoreError("this study no longer exists")
                _, token = self_register(session, study, name or "")
        except ToolkitError as exc:
            st.error(str(exc))
            return
        sign_in(token)
        flash("info", f"Your personal token is {token} . Keep it: it lets you come back and continue later.")
        st.rerun()


# --------------------------------------------------------------------------- training


def scale_text(context: RaterContext) -> str:
    levels = ", ".join(f"**{plain(label)}**" for label in context.labels)
    return (
        f"Answer on five levels, best first: {levels}. Click a level, or press its key: "
        f"**5** for {plain(context.labels[0])} down to **1** for {plain(context.labels[-1])}."
    )


def _next_example() -> None:
    if event("next") is not None:
        st.session_state[TRAIN_KEY] = st.session_state.get(TRAIN_KEY, 0) + 1


def training_view(store: Store, context: RaterContext) -> None:
    with store.session() as session:
        study = session.get(Study, context.study_id)
        examples = [(i.id, i.path, i.kind, i.expected_level) for i in training_items(session, study)] if study else []
        root = Path(study.media_root) if study else Path()
    index = st.session_state.get(TRAIN_KEY, 0)
    if index < len(examples):
        item_id, path, kind, level = examples[index]
        file = resolve_in_root(root, path)
        label = context.labels[5 - level] if level else ""
        note = take_flash()
        screen = Screen(
            key=f"t{index}-i{item_id}",
            mode="train",
            kind=kind,
            src=stimulus_url(file),
            labels=list(context.labels),
            question=context.ask(kind),
            caption=f"Example {index + 1} of {len(examples)}: this {kind} is an example of {label}.",
            progress={"text": f"Training: example {index + 1} of {len(examples)}", "fraction": index / len(examples)},
            who=f"{context.study_name}: {context.rater_name}",
            replay="free",
            audio=context.audio,
            example_level=level,
            message={"kind": note[0], "text": note[1]} if note else None,
            next_label="Next example" if index + 1 < len(examples) else "Done with the examples",
        )
        rating_screen(screen, {"next": _next_example, "signout": _sign_out_event})
        return
    with look.text_page():
        st.title("Rating study")
        show_flash()
        st.markdown(f"You will be asked: **{plain(context.ask(context.kind_words))}**")
        st.markdown(scale_text(context))
        st.markdown(
            f"Each {context.kind_words} is shown on a grey background at its true size. "
            + (
                "A video plays once from the start; the buttons open when it has ended."
                if "video" in context.kinds
                else "Take the time you need, then answer."
            )
        )
        if st.button("Start rating", key="train_done"):
            with store.session() as session:
                mark_trained(session, rater_for_token(session, context.token))
            st.session_state.pop(TRAIN_KEY, None)
            st.rerun()


# --------------------------------------------------------------------------- rating


def progress_line(progress: RaterProgress, gold_every: int, n_gold: int) -> tuple[str, float]:
    """One count of the rater's answers (test and check items alike) and of those still to come.

    Check (gold) items come one after every ``gold_every`` test votes while any are left, so
    their number is known from the test items' number.
    """
    tests = progress.rated + progress.remaining
    golds = min(n_gold, tests // gold_every) if gold_every > 0 else 0
    golds = max(golds, progress.gold_rated)
    done = progress.rated + progress.gold_rated
    total = tests + golds
    fraction = 1.0 if total == 0 else min(1.0, done / total)
    return f"{done} of {total} done", fraction


def _served() -> Served | None:
    served = st.session_state.get(SERVED_KEY)
    return served if isinstance(served, Served) else None


def _on_vote() -> None:
    answer, served = event("vote"), _served()
    if answer is None or served is None or answer.key != served.key:
        return  # an answer to a screen that is no longer shown (a late second click)
    level, scale = answer.values.get("level"), answer.values.get("scale")
    if isinstance(level, bool) or level not in LEVEL_VALUES:
        flash("error", "That answer was not one of the five levels; please answer again.")
        return
    scale_factor = float(scale) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else None
    if served.kind == "video" and not _video_seen(served, answer.values.get("played") is True):
        flash("warning", "Please watch the whole video before you answer.")
        return
    submit(cast(int, level), served.item_id, scale_factor)


def _video_seen(served: Served, played: bool) -> bool:
    if not played or served.shown_at is None:
        return False
    elapsed = (datetime.now(timezone.utc) - served.shown_at).total_seconds()
    return elapsed + VIDEO_SLACK_S >= video_duration(str(served.file))


def submit(level: int, item_id: int, scale_factor: float | None) -> None:
    """Store the vote and choose the next item in the same transaction (one round trip per vote)."""
    context: RaterContext | None = st.session_state.get(CONTEXT_KEY)
    if context is None:
        return
    try:
        with get_store().session() as session:
            rater = rater_for_token(session, context.token)
            result = submit_vote(session, rater, item_id, level, scale_factor=scale_factor)
            _choose_next(session, rater)
    except ToolkitError as exc:
        flash("error", str(exc))
        return
    labels = context.labels
    if result.gold is not None and result.created:
        expected = labels[5 - result.gold.expected_level]
        if result.gold.correct:
            flash("success", f"Check item: well done, the expected answer was {expected}.")
        else:
            flash(
                "warning",
                f"Check item: the expected answer was {expected}; you answered {labels[5 - level]}. "
                "Please look carefully.",
            )


def _choose_next(session: Session, rater: Rater) -> None:
    """The step after an answer, for the run that follows the callback to draw."""
    st.session_state[NEXT_KEY] = (next_step(session, rater), can_undo(session, rater))


def _on_undo() -> None:
    context: RaterContext | None = st.session_state.get(CONTEXT_KEY)
    if event("undo") is None or context is None:
        return
    with get_store().session() as session:
        rater = rater_for_token(session, context.token)
        path = undo_last_vote(session, rater)
        _choose_next(session, rater)
    flash("info", "Your last vote was taken back: rate this one again." if path else "There is no vote to take back.")


def _sign_out_event() -> None:
    if event("signout") is not None:
        sign_out()


def _new_session(store: Store, token: str) -> None:
    with store.session() as session:
        start_new_session(session, rater_for_token(session, token))


@st.fragment
def rating_view() -> None:
    """The rating part of the page: after a vote only this runs again."""
    rating_body()


def rating_body() -> None:
    context: RaterContext | None = st.session_state.get(CONTEXT_KEY)
    if context is None or st.session_state.get(TOKEN_KEY) != context.token:
        st.rerun()  # signed out from the screen: the whole page shows the join form
        return
    store = get_store()
    chosen = st.session_state.pop(NEXT_KEY, None)
    try:
        if chosen is None:
            with store.session() as session:
                rater = rater_for_token(session, context.token)
                chosen = (next_step(session, rater), can_undo(session, rater))
    except ToolkitError:
        sign_out()
        flash("error", "Unknown or revoked token.")
        st.rerun()
        return
    step, undo_ok = chosen
    text, fraction = progress_line(step.progress, context.gold_every, context.n_gold)
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
            if step.status == "finished":
                st.header("Thank you!")
                st.markdown(f"There is nothing left for you to rate in this study ({text}).")
            else:
                st.header("Session complete")
                st.markdown(
                    f"You gave {step.progress.session_votes} answers in this session ({text} in all). "
                    "Take a short break before you go on."
                )
                st.button(
                    "Start the next session", key="next_session", on_click=_new_session, args=(store, context.token)
                )
        return
    item = step.item
    key = f"a{item.assignment_id}-i{item.item_id}"
    st.session_state[SERVED_KEY] = Served(key, item.item_id, item.kind, item.file, item.shown_at)
    screen = Screen(
        key=key,
        mode="rate",
        kind=item.kind,
        src=stimulus_url(item.file),
        labels=list(context.labels),
        question=context.ask(item.kind),
        progress={"text": text, "fraction": fraction},
        message={"kind": note[0], "text": note[1]} if note else None,
        can_undo=undo_ok,
        who=f"{context.study_name}: {context.rater_name}",
        replay=context.replay,
        audio=context.audio,
        oversize=context.oversize,
    )
    rating_screen(screen, {"vote": _on_vote, "undo": _on_undo, "signout": _sign_out_event})


# --------------------------------------------------------------------------- page


def render() -> None:
    st.set_page_config(page_title="Rating study", layout="wide")
    look.apply()
    store = get_store()
    token = current_token()
    if not token:
        with look.text_page():
            st.title("Rating study")
            show_flash()
            join_view(store)
        return
    try:
        context = load_context(store, token)
        with store.session() as session:
            trained = rater_for_token(session, token).trained_at is not None
    except ToolkitError:
        sign_out()
        with look.text_page():
            st.error("Unknown or revoked token.")
        st.stop()
    if not trained:
        training_view(store, context)
    else:
        rating_view()
