"""The administrator's side, behind the admin secret: an overview of every study, then per study
its progress, raters, results, exports and tokens; and the form for a new study.

Every figure about the items (labels, aggregates, subject model, the Hugging Face dataset) comes
from one :class:`~toolkit.store.StudySnapshot` through :mod:`toolkit.analysis.study_labels` and
:func:`toolkit.convert.study_dataset.export_study_dataset`, the functions the command line uses, so a
table on this page, a download and ``qalign export-dataset`` agree on every item's MOS.

The page is split by tab: ``admin_overview``, ``admin_setup``, ``admin_progress``,
``admin_raters``, ``admin_results`` (with ``admin_plots`` and ``admin_reliability``),
``admin_export`` and ``admin_tokens``; ``admin_data`` caches what they compute. Tabs run lazily:
only the open one reads the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import streamlit as st

from annotation_ui.admin_data import PINNED_KEY
from annotation_ui.admin_export import export_tab
from annotation_ui.admin_overview import OVERVIEW, STUDY_KEY, overview_tab
from annotation_ui.admin_progress import progress_tab
from annotation_ui.admin_raters import ADMIN_BY_KEY, raters_tab
from annotation_ui.admin_results import results_tab
from annotation_ui.admin_setup import NOTICE_KEY, OPEN_STUDY_KEY, setup_tab
from annotation_ui.admin_tokens import show_reissued, tokens_tab
from annotation_ui.state import get_store
from toolkit.errors import ToolkitError
from toolkit.store import Store, get_study, list_studies
from toolkit.store.admin_secret import AdminAccess, admin_sign_in
from toolkit.store.media_check import missing_items

ADMIN_KEY = "admin_access"  # the signed-in administrator's AdminAccess: every study, or some
HOME_TABS_KEY = "admin_home_tab"
STUDY_TABS_KEY = "admin_tab"
STUDY_TABS: dict[str, Callable[[Store, str], None]] = {
    "Progress": progress_tab,
    "Raters": raters_tab,
    "Results": results_tab,
    "Export": export_tab,
    "Tokens": tokens_tab,
}


def sign_in(store: Store) -> AdminAccess | None:
    """The administrator's access: the global secret opens every study, a study's own secret that
    study only. Draws the sign-in form while there is none."""
    access = st.session_state.get(ADMIN_KEY)
    if isinstance(access, AdminAccess):
        return access
    st.header("Administration")
    with st.form("admin_login"):
        secret = st.text_input("Admin secret (the global one, or a study's own)", type="password", key="admin_secret")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            # Counted in the database: a new browser session does not start the count afresh.
            with store.session() as session:
                access = admin_sign_in(session, secret or "")
        except ToolkitError as exc:
            st.error(str(exc))
            return None
        if access is not None:
            st.session_state[ADMIN_KEY] = access
            st.session_state[ADMIN_BY_KEY] = "global admin" if access.all_studies else "study admin"
            st.rerun()
        st.error("Wrong admin secret.")
    return None


def _study_names(store: Store, access: AdminAccess) -> list[str]:
    """The studies ``access`` opens, in creation order."""
    with store.session() as session:
        return [s.name for s in list_studies(session) if access.allows(s)]


def home(store: Store, access: AdminAccess, names: list[str]) -> None:
    """The overview, and the new-study form for the global administrator."""
    if not access.all_studies:
        overview_tab(store, names)
        return
    overview, new = st.tabs(["Overview", "New study"], key=HOME_TABS_KEY, on_change="rerun")
    if overview.open:
        with overview:
            overview_tab(store, None)
    if new.open:
        with new:
            setup_tab(store)


def study_page(store: Store, name: str) -> None:
    with store.session() as session:
        missing = len(missing_items(session, get_study(session, name)))
    if missing:
        st.warning(f"{missing} item(s) of this study are missing on disk: see Progress.")
    for tab, draw in zip(st.tabs(list(STUDY_TABS), key=STUDY_TABS_KEY, on_change="rerun"), STUDY_TABS.values()):
        if tab.open:
            with tab:
                draw(store, name)


# The full width for the admin's many-column tables, also on the reruns where the entry page's
# centred layout reaches the browser after this page's own setting (seen on long first runs).
WIDE_STYLE = (
    "<style>[data-testid='stMainBlockContainer'] "
    "{ max-width: none !important; padding-left: 5rem; padding-right: 5rem; }</style>"
)


def render() -> None:
    # Wide: the overview and the rater table have many columns (the app's default is centred).
    st.set_page_config(page_title="Study administration", layout="wide")
    st.html(WIDE_STYLE)
    store = get_store()
    access = sign_in(store)
    if access is None:
        st.stop()
        return
    # No sidebar: it would take a fifth of the width from the tables for one button.
    title, out = st.columns([6, 1], vertical_alignment="bottom")
    title.title("Study administration")
    if out.button("Sign out", key="admin_sign_out", width="stretch"):
        for key in (ADMIN_KEY, ADMIN_BY_KEY, STUDY_KEY, PINNED_KEY):
            st.session_state.pop(key, None)
        st.rerun()
    if not access.all_studies:
        st.caption("Signed in with a study's own secret: only that study is shown.")
    show_reissued()
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.success(notice)
    names = _study_names(store, access)
    if st.session_state.get(OPEN_STUDY_KEY) in names:
        st.session_state[STUDY_KEY] = st.session_state.pop(OPEN_STUDY_KEY)
    if st.session_state.get(STUDY_KEY) not in (OVERVIEW, *names):
        st.session_state[STUDY_KEY] = OVERVIEW  # a study renamed or gone since the last run
    choice = cast(
        str,
        st.selectbox(
            "Study",
            [OVERVIEW, *names],
            key=STUDY_KEY,
            format_func=lambda n: "All studies (overview)" if n == OVERVIEW else n,
        ),
    )
    if choice == OVERVIEW:
        home(store, access, names)
    else:
        study_page(store, choice)  # one of ``names``: a study this administrator may open
