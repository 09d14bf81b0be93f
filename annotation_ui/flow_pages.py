"""The rater's text pages around rating (P.808 and the P.910 crowd kit order): instructions,
consent, the screen check, the end of the study (completion code, a crowd platform's return), an
MTurk preview and a rater who is not admitted. ``toolkit.store.protocol.rater_flow`` says which."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.orm import Session

from annotation_ui import look
from annotation_ui.components.page_tools import measure_screen, measured, post_form, redirect
from annotation_ui.rater_session import PREVIEW_KEY, RaterContext, context, flash, sign_in, sign_out, take_flash
from annotation_ui.rating import presentation_text, scale_text
from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.errors import InputError, ToolkitError
from toolkit.store import Store, list_studies, rater_for_token
from toolkit.store.crowd import completion, crowd_join, detect_platform
from toolkit.store.protocol import check_environment, give_consent, mark_instructions_seen
from toolkit.store.schema import Study
from toolkit.store.study_settings import study_protocol

# The query parameters crowd platforms add to the study link (and ``study``, which names the study
# when several take workers from one platform); all leave the address bar once read.
MTURK_SUBMIT_KEY = "mturk_submit_to"
CROWD_PARAMS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID", "workerId", "assignmentId", "hitId", "turkSubmitTo", "study")


def _note() -> None:
    taken = take_flash()
    if taken:
        getattr(st, taken[0])(plain(taken[1]))


# --------------------------------------------------------------------------- crowd workers


def crowd_token(store: Store) -> str | None:
    """Join (or resume) a crowd worker from Prolific's or MTurk's link parameters; their token.

    None when the link carries no worker (or is an MTurk preview, which records nothing: the
    page then shows the preview). The parameters leave the address bar like an invite token.
    """
    params = {name: str(st.query_params[name]) for name in CROWD_PARAMS if name in st.query_params}
    platform = detect_platform(params)
    if platform is None:
        return None
    for name in params:
        del st.query_params[name]
    try:
        with store.session() as session:
            study = _crowd_study(session, platform, params.get("study"))
            joined = crowd_join(session, study, params)
            if joined.preview:
                st.session_state[PREVIEW_KEY] = study.name
                return None
    except ToolkitError as exc:
        flash("error", str(exc))
        return None
    st.session_state.pop(PREVIEW_KEY, None)
    if "turkSubmitTo" in params:
        # The HIT's own submit address, needed at the end, after the parameters left the address bar.
        st.session_state[MTURK_SUBMIT_KEY] = params["turkSubmitTo"]
    if joined.token:
        sign_in(joined.token)
    return joined.token


def _crowd_study(session: Session, platform: str, name: str | None) -> Study:
    studies = [s for s in list_studies(session) if platform in study_protocol(s).crowd_platforms]
    if name is not None:
        studies = [s for s in studies if s.name == name]
    if len(studies) != 1:
        where = f"study {name!r}" if name else "one study"
        raise InputError(f"this {platform} link does not lead to {where} that takes {platform} workers")
    return studies[0]


def preview_page() -> bool:
    """MTurk's preview of the task (nothing recorded); False when this is not a preview."""
    name = st.session_state.get(PREVIEW_KEY)
    if not name:
        return False
    with look.text_page():
        st.title("Rating study")
        st.markdown(
            f"This is a preview of the study **{plain(name)}**: you will rate the quality of images or videos "
            "on five levels. **Accept the HIT** to start; nothing is recorded before that."
        )
    return True


# --------------------------------------------------------------------------- before rating


def instructions_page(store: Store, ctx: RaterContext) -> None:
    with look.text_page():
        st.title("Instructions")
        _note()
        st.markdown(ctx.instructions or "")  # the study's Markdown (raw HTML is not rendered)
        st.markdown(scale_text(ctx))
        st.markdown(presentation_text(ctx))
        if st.button("I have read the instructions", key="instructions_done"):
            with store.session() as session:
                mark_instructions_seen(session, rater_for_token(session, ctx.token))
            st.rerun()


def consent_page(store: Store, ctx: RaterContext) -> None:
    with look.text_page():
        st.title("Consent")
        _note()
        st.markdown(ctx.consent or "")
        if st.button("I agree", key="consent_yes"):
            with store.session() as session:
                give_consent(session, rater_for_token(session, ctx.token))
            st.rerun()
        if st.button("I do not agree", key="consent_no"):
            sign_out()
            flash("info", "You did not agree, so you take no part in this study. You may close this page.")
            st.rerun()


def _on_measured() -> None:
    ctx, figures = context(), measured()
    if ctx is None or figures is None:
        return
    try:
        with get_store().session() as session:
            result = check_environment(
                session,
                rater_for_token(session, ctx.token),
                figures.get("width"),  # type: ignore[arg-type]  # checked by check_environment
                figures.get("height"),  # type: ignore[arg-type]
                figures.get("dpr"),  # type: ignore[arg-type]
                figures.get("zoom"),
            )
    except ToolkitError as exc:
        flash("error", str(exc))
        return
    if result.passed:
        flash("success", "Your screen suits this study.")


def environment_page(ctx: RaterContext, reason: str | None) -> None:
    with look.text_page():
        st.title("Screen check")
        _note()
        st.markdown(
            f"This study shows each {ctx.kind_words} at its true size, one image pixel to one screen pixel, "
            "so it needs a large enough browser window and the browser zoom at 100 %. "
            "Use full screen (F11) if you can."
        )
        if reason:
            st.warning(f"The check did not pass: {plain(reason)}.")
        measure_screen("environment", _on_measured)


# --------------------------------------------------------------------------- the end


def completion_page(store: Store, ctx: RaterContext) -> None:
    with store.session() as session:
        submit_to = st.session_state.get(MTURK_SUBMIT_KEY)
        params = {"turkSubmitTo": submit_to} if submit_to else None
        done = completion(session, rater_for_token(session, ctx.token), params=params)
    with look.text_page():
        st.title("Thank you!")
        _note()
        st.markdown("There is nothing left for you to rate in this study.")
        if done.code:
            st.markdown("Your completion code:")
            st.code(done.code, language=None)
        if done.redirect_url:
            st.markdown("You are taken back to Prolific now; if nothing happens, follow this link:")
            redirect(done.redirect_url, "Return to Prolific")
        elif done.form_action:
            st.markdown("Submit the HIT to finish:")
            post_form(done.form_action, done.form_fields, "Submit the HIT")


def not_admitted_page(reason: str | None) -> None:
    with look.text_page():
        st.title("Rating study")
        st.error(f"You cannot take part in this study: {plain(reason or 'not admitted')}.")
