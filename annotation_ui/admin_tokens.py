"""The Tokens tab: invite raters, revoke or restore access, exclude votes, issue a fresh token."""

from __future__ import annotations

from typing import Literal, cast

import streamlit as st

from annotation_ui.text import plain
from toolkit.errors import ToolkitError
from toolkit.store import Store, get_study
from toolkit.store.progress import rater_stats
from toolkit.store.raters import invite_rater, reissue_token, set_rater_access, set_rater_excluded

REISSUED_KEY = "reissued"  # (rater, token) shown once on the next run, after st.rerun


def show_reissued() -> None:
    reissued = st.session_state.pop(REISSUED_KEY, None)
    if reissued:
        st.success(f"New token for {plain(reissued[0])} (the old one no longer works):")
        st.code(reissued[1], language=None)


def tokens_tab(store: Store, name: str) -> None:
    with st.form("invite"):
        rater = st.text_input("New rater's name", key="invite_name")
        invited = st.form_submit_button("Create invite token")
    if invited:
        try:
            with store.session() as session:
                token = invite_rater(session, get_study(session, name), rater or "")
        except ToolkitError as exc:
            st.error(str(exc))
        else:
            st.success(f"Token for {plain(rater)} (shown once, only its hash is stored):")
            st.code(token, language=None)
            st.caption("Invite link: the app's address followed by /?token=<token>")
    with store.session() as session:
        raters = rater_stats(session, get_study(session, name))[
            ["rater", "revoked", "excluded", "self_registered", "votes"]
        ]
    if raters.empty:
        st.info("No raters yet.")
        return
    st.dataframe(raters, hide_index=True)
    who = cast(str, st.selectbox("Rater", raters["rater"].tolist(), key="token_rater"))
    row = raters.set_index("rater").loc[who]
    cols = st.columns(3)
    action: Literal["access", "exclude", "reissue"] | None = None
    if cols[0].button("Restore access" if row["revoked"] else "Revoke token", key="token_revoke"):
        action = "access"
    if cols[1].button("Count votes again" if row["excluded"] else "Exclude votes", key="token_exclude"):
        action = "exclude"
    if cols[2].button("Issue a new token", key="token_reissue"):
        action = "reissue"
    if action is None:
        return
    with store.session() as session:
        study = get_study(session, name)
        if action == "access":
            set_rater_access(session, study, who, revoked=not bool(row["revoked"]))
        elif action == "exclude":
            set_rater_excluded(session, study, who, excluded=not bool(row["excluded"]))
        else:
            st.session_state[REISSUED_KEY] = (who, reissue_token(session, study, who))
    st.rerun()
