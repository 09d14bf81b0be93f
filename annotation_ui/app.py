"""The annotation app: ``qalign ui`` or ``streamlit run annotation_ui/app.py``.

The database comes from ``$QALIGN_DB_URL`` (default ``sqlite:///qalign.db``); on first use it is
migrated and, when empty, gets the bundled sample study. Pages: *Rate* (join, training, rating)
and *Admin* at ``/admin`` (behind the admin secret).
"""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

# Also when started with a bare `streamlit run` (qalign ui passes the same option): tracebacks and
# exception messages go to the server's console, never to a visitor's browser.
st.set_option("client.showErrorDetails", "none")
# No settings menu (and so no theme switch) for raters; the theme itself is fixed by the server's
# configuration (`--theme.base light` from qalign ui, .streamlit/config.toml for `streamlit run`).
st.set_option("client.toolbarMode", "minimal")
st.set_page_config(page_title="Rating study", layout="wide")  # both pages use the whole width
navigation = st.navigation(
    [
        st.Page(HERE / "views" / "rate.py", title="Rate", default=True),  # served at / (invite links: /?token=...)
        st.Page(HERE / "views" / "admin.py", title="Admin", url_path="admin"),
    ],
    # No navigation bar: raters see only their page; the admin page is at /admin.
    position="hidden",
)
navigation.run()
