"""The annotation app: ``qalign ui`` or ``streamlit run annotation_ui/app.py``.

The database comes from ``$QALIGN_DB_URL`` (default ``sqlite:///qalign.db``); on first use it is
migrated and, when empty, gets the bundled sample study. Pages: *Rate* (join, training, rating)
and *Admin* (behind the admin secret).
"""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

# Also when started with a bare `streamlit run` (qalign ui passes the same option): tracebacks and
# exception messages go to the server's console, never to a visitor's browser.
st.set_option("client.showErrorDetails", "none")
st.set_page_config(page_title="Rating study", layout="centered")
navigation = st.navigation(
    [
        st.Page(HERE / "views" / "rate.py", title="Rate", default=True),  # served at / (invite links: /?token=...)
        st.Page(HERE / "views" / "admin.py", title="Admin", url_path="admin"),
    ],
    position="top",
)
navigation.run()
