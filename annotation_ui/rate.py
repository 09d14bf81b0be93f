"""The rater's side: join (invite token or self-registration), training examples, rating.

Everything a rater may do goes through ``toolkit.store.assignment`` with the rater found from
their token on every run, so a page can only ever show or change that rater's own votes.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import streamlit as st

from annotation_ui.media import show_image, show_video
from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.errors import StoreError, ToolkitError
from toolkit.levels import LEVEL_VALUES
from toolkit.store import Store, list_studies, rater_for_token
from toolkit.store.assignment import (
    can_undo,
    mark_trained,
    next_step,
    self_register,
    start_new_session,
    submit_vote,
    training_items,
    undo_last_vote,
)
from toolkit.store.schema import Study
from toolkit.store.setup import level_labels, study_question
from toolkit.store.studies import resolve_in_root

TOKEN_KEY = "rater_token"
FLASH_KEY = "rater_flash"


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
    st.session_state.pop(TOKEN_KEY, None)
    st.session_state.pop("train_index", None)
    if "token" in st.query_params:
        del st.query_params["token"]


def flash(kind: str, message: str) -> None:
    """A message for the next run (callbacks run before the page is drawn again)."""
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    if kind:
        getattr(st, kind)(message)


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
        flash("info", f"Your personal token is `{token}`. Keep it: it lets you come back and continue later.")
        st.rerun()


# --------------------------------------------------------------------------- training


def training_view(store: Store, token: str, study: Study) -> None:
    labels = level_labels(study)
    with store.session() as session:
        examples = [(i.path, i.kind, i.expected_level) for i in training_items(session, study)]
    index = st.session_state.get("train_index", 0)
    st.header("Training")
    kinds = {kind for _, kind, _ in examples} or {"image"}
    st.markdown(f"You will be asked: **{plain(study_question(study, ' or '.join(sorted(kinds))))}**")
    st.markdown(
        "Answer on five levels: "
        + ", ".join(f"**{plain(label)}** ({value})" for label, value in zip(labels, LEVEL_VALUES))
        + "."
    )
    if index < len(examples):
        path, kind, level = examples[index]
        st.progress((index + 1) / len(examples), text=f"Example {index + 1} of {len(examples)}")
        file = resolve_in_root(Path(study.media_root), path)
        if kind == "video":
            show_video(file, key=f"train-{index}")
        else:
            show_image(file)
        st.info(f"This is an example of **{plain(labels[5 - level])}** ({level}).")
        if st.button("Next example", key="train_next", type="primary"):
            st.session_state["train_index"] = index + 1
            st.rerun()
        return
    if st.button("Start rating", key="train_done", type="primary"):
        with store.session() as session:
            mark_trained(session, rater_for_token(session, token))
        st.session_state.pop("train_index", None)
        st.rerun()


# --------------------------------------------------------------------------- rating


def _vote(store: Store, token: str, item_id: int, level: int, labels: list[str]) -> None:
    try:
        with store.session() as session:
            result = submit_vote(session, rater_for_token(session, token), item_id, level)
    except ToolkitError as exc:
        flash("error", str(exc))
        return
    if result.gold is not None and result.created:
        expected = f"**{plain(labels[5 - result.gold.expected_level])}**"
        if result.gold.correct:
            flash("success", f"Check item: well done, the expected answer was {expected}.")
        else:
            flash(
                "warning",
                f"Check item: the expected answer was {expected}; you answered **{plain(labels[5 - level])}**. "
                "Please look carefully.",
            )


def _undo(store: Store, token: str) -> None:
    with store.session() as session:
        path = undo_last_vote(session, rater_for_token(session, token))
    flash("info", "Your last vote was taken back: rate this item again." if path else "There is no vote to take back.")


def _new_session(store: Store, token: str) -> None:
    with store.session() as session:
        start_new_session(session, rater_for_token(session, token))


def rating_view(store: Store, token: str, study: Study) -> None:
    labels = level_labels(study)
    with store.session() as session:
        rater = rater_for_token(session, token)
        step = next_step(session, rater)
        undo_ok = can_undo(session, rater)
    progress = step.progress
    st.progress(progress.fraction, text=f"{progress.rated} rated, {progress.remaining} to go")
    if step.skipped_missing:
        st.warning(
            f"{len(step.skipped_missing)} item(s) could not be loaded and were skipped; "
            "the study's administrator can see which."
        )
    if step.status == "finished":
        st.success("Thank you! There is nothing left for you to rate in this study.")
        return
    if step.status == "session_done":
        st.success(f"Session complete ({progress.session_votes} votes). Take a short break before you go on.")
        st.button(
            "Start the next session", key="next_session", type="primary", on_click=_new_session, args=(store, token)
        )
        return

    item = step.item
    assert item is not None  # only "finished" and "session_done" come without an item
    st.caption(f"Session: {progress.session_votes} of {progress.session_size}")
    st.markdown(f"### {plain(study_question(study, item.kind))}")
    if item.kind == "video":
        ready = show_video(item.file, key=f"a{item.assignment_id}", shown_at=item.shown_at)
        if not ready:
            st.caption("The buttons open once the clip has played to the end.")
            st.button("I have watched the clip", key="video_check")
    else:
        show_image(item.file)
        ready = True

    columns = st.columns(5)
    for column, label, value in zip(columns, labels, LEVEL_VALUES):
        column.button(
            f"{label} ({value})",
            key=f"vote-{value}",
            on_click=_vote,
            args=(store, token, item.item_id, value, labels),
            disabled=not ready,
            shortcut=str(value),
            width="stretch",
            type="primary" if value == 3 else "secondary",
        )
    st.button("Undo last vote", key="undo", on_click=_undo, args=(store, token), disabled=not undo_ok)
    st.caption("Keys: 5 = best .. 1 = worst.")


# --------------------------------------------------------------------------- page


def render() -> None:
    store = get_store()
    st.title("Rating study")
    token = current_token()
    if not token:
        show_flash()
        join_view(store)
        return
    try:
        with store.session() as session:
            rater = rater_for_token(session, token)
            study = session.get(Study, rater.study_id)
            if study is None:  # the foreign key (ON DELETE CASCADE) keeps this from happening
                raise StoreError(f"rater {rater.name!r} belongs to no study")
            name, trained = rater.name, rater.trained_at is not None
    except ToolkitError:
        sign_out()
        st.error("Unknown or revoked token.")
        st.stop()
    top = st.columns([4, 1])
    top[0].caption(f"{plain(study.name)}: signed in as {plain(name)}")
    if top[1].button("Sign out", key="sign_out"):
        sign_out()
        st.rerun()
    show_flash()
    if not trained:
        training_view(store, token, study)
    else:
        rating_view(store, token, study)
