"""Each page is drawn behind one guard: a visitor who hits a bug sees a short message, and the
traceback (which names server paths, SQL and parameters) goes to the server's log only."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.logger import get_logger

FAILURE_MESSAGE = "Something went wrong; the error was logged."

log = get_logger("annotation_ui")


def render_page(render: Callable[[], None]) -> None:
    """Run ``render``; an unexpected exception is logged with its traceback and shown as one line.

    Streamlit's st.stop and st.rerun derive from BaseException, not Exception, so they pass.
    """
    try:
        render()
    except Exception:
        log.exception("page failed while rendering")
        st.error(FAILURE_MESSAGE)
