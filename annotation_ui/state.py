"""The app's connection to the study store, shared by all browser sessions of one server."""

from __future__ import annotations

import os

import streamlit as st
from streamlit.logger import get_logger

from toolkit.errors import ToolkitError
from toolkit.store import Store, resolve_db_url, safe_url

SAMPLE_ENV = "QALIGN_UI_SAMPLE"  # "0": do not add the sample study to an empty database


@st.cache_resource(show_spinner=False)
def _store_for(url: str) -> Store:
    # Keyed by URL: tests (and a server restarted on another database) never share a store.
    from toolkit.store.setup import prepare_database

    report = prepare_database(url, sample=os.environ.get(SAMPLE_ENV, "1") != "0")
    if report.generated_admin_secret:
        # Shown once, on the server's console: whoever started the app is the administrator.
        print(f"qalign ui: admin secret for {safe_url(url)}: {report.generated_admin_secret}", flush=True)
    return Store(url)


def get_store() -> Store:
    """The store for ``$QALIGN_DB_URL``; stops the page with a readable error when unusable."""
    url = resolve_db_url()
    try:
        return _store_for(url)
    except ToolkitError as exc:
        # The reason names the database and server paths: for the log, not for visitors.
        get_logger("annotation_ui").error("study database %s cannot be used: %s", safe_url(url), exc)
        st.error("The study database cannot be used right now; the error was logged.")
        st.stop()
        raise  # not reached: st.stop ends the script run
