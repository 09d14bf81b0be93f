"""The Progress tab: headline figures, items missing on disk, and every item's votes so far.

Live figures (who has which item on screen, which files are missing), read afresh on every run.
"""

from __future__ import annotations

import streamlit as st

from toolkit.store import Store, get_study
from toolkit.store.media_check import check_media
from toolkit.store.progress import item_progress, study_summary


def progress_tab(store: Store, name: str) -> None:
    with store.session() as session:
        study = get_study(session, name)
        summary = study_summary(session, study)
        items = item_progress(session, study)
    cols = st.columns(4)
    cols[0].metric("Items", f"{summary['test_items']:,}")
    cols[1].metric("Raters", f"{summary['raters']:,}")
    cols[2].metric("Votes", f"{summary['votes']:,}")
    cols[3].metric("Target reached", f"{summary['target_fraction']:.0%}")
    st.progress(float(summary["target_fraction"]))
    missing = items[items["missing"]]
    if len(missing):
        st.warning(f"{len(missing)} item(s) have no file on disk and are skipped for raters:")
        st.dataframe(missing[["item", "role", "kind"]], hide_index=True)
    if st.button("Check media files now", key="check_media"):
        with store.session() as session:
            result = check_media(session, get_study(session, name))
        st.info(f"{len(result.missing)} missing, {len(result.restored)} back on disk.")
    # The grid scrolls (only the visible rows are drawn), so every item can be listed here.
    st.dataframe(items.drop(columns=["item_id"]), hide_index=True)
