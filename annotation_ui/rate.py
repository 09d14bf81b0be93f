"""The rater's side: join (invite token, self-registration or a crowd platform's link), then the
study's steps in order (``toolkit.store.protocol.rater_flow``): instructions, consent, screen check,
training examples, qualification quiz, rating, completion.

Everything a rater may do goes through ``toolkit.store`` with the rater found from their token on
every action, so a page can only ever show or change that rater's own answers. Stimuli and the
scale are drawn by the rating screen component (``components/rating_screen``): one stimulus pixel
per device pixel on a mid-grey surround, five identical buttons beside it.
"""

from __future__ import annotations

from typing import cast

import streamlit as st

from annotation_ui import flow_pages, look
from annotation_ui.rater_session import TOKEN_KEY, flash, load_context, sign_in, sign_out, take_flash
from annotation_ui.rating import quiz_view, rating_view, training_view
from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.errors import StoreError, ToolkitError
from toolkit.store import Store, list_studies, rater_for_token
from toolkit.store.assignment import self_register
from toolkit.store.protocol import rater_flow
from toolkit.store.schema import Study

# --------------------------------------------------------------------------- token in the session


def current_token(store: Store) -> str | None:
    """The rater's token: from an invite link (``?token=``) or a crowd platform's link when one was
    opened, else from this browser session.

    The link's token moves into the session and off the address bar, where it would stay in the
    browser's history, in screenshots and in links shared by mistake. Opening the link again
    resumes where the rater was; a reload of the bare address asks for the token.
    """
    token = st.session_state.get(TOKEN_KEY)
    linked = st.query_params.get("token")
    if "token" in st.query_params:
        del st.query_params["token"]
    if linked and linked.strip():
        token = linked.strip()
        sign_in(token)
    crowd = flow_pages.crowd_token(store)
    return crowd or token or None


def show_flash() -> None:
    taken = take_flash()
    if taken:
        getattr(st, taken[0])(plain(taken[1]))


# --------------------------------------------------------------------------- join


def join_view(store: Store) -> None:
    st.subheader("Join with an invitation")
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


# --------------------------------------------------------------------------- page


def render() -> None:
    st.set_page_config(page_title="Rating study", layout="wide")
    look.apply()
    store = get_store()
    token = current_token(store)
    if not token:
        if flow_pages.preview_page():
            return
        with look.text_page():
            st.title("Rating study")
            show_flash()
            join_view(store)
        return
    try:
        context = load_context(store, token)
        with store.session() as session:
            rater = rater_for_token(session, token)
            state = rater_flow(session, rater)
            trained = rater.trained_at is not None
    except ToolkitError:
        sign_out()
        with look.text_page():
            st.error("Unknown or revoked token.")
        st.stop()
    if state.step == "instructions":
        flow_pages.instructions_page(store, context)
    elif state.step == "consent":
        flow_pages.consent_page(store, context)
    elif state.step == "environment":
        flow_pages.environment_page(context, state.reason)
    elif state.step == "training" or (state.step in ("quiz", "rating") and not trained):
        training_view(store, context, quiz_next=state.step == "quiz")  # without examples: how to answer
    elif state.step == "quiz":
        if not quiz_view(store, context) and not st.session_state.pop("quiz_moved_on", False):
            st.session_state["quiz_moved_on"] = True
            st.rerun()  # the last answer decided the quiz: the flow moves on
    elif state.step == "completion":
        flow_pages.completion_page(store, context)
    elif state.step == "not_admitted":
        flow_pages.not_admitted_page(state.reason)
    else:
        rating_view()
