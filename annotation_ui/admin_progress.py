"""The Progress tab: headline figures, items missing on disk, and every item's votes so far.

Live figures (who has which item on screen, which files are missing), read afresh on every run
(the vote counts are stored per item, so this costs the same at any number of votes); the items
are shown one page at a time, searchable, so a study of 250,000 items loads as fast as a small one.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotation_ui.paged_table import fetch_page, page_controls, page_footer, sorted_page
from toolkit.store import Store, get_study
from toolkit.store.media_check import check_media
from toolkit.store.progress import item_progress, study_summary


def progress_tab(store: Store, name: str) -> None:
    with store.session() as session:
        study = get_study(session, name)
        items = item_progress(session, study)
        summary = study_summary(session, study, items)
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
    item_table(items)


SORTS = {
    "Fewest valid votes first": ("valid_votes", True),
    "Most votes first": ("votes", False),
    "On screen now first": ("on_screen", False),
    "Item name": ("item", True),
}
PAGE_SIZES = (50, 100, 200, 500)


def progress_page(items: pd.DataFrame, query: str, sort: str, page: int, size: int) -> tuple[pd.DataFrame, int]:
    """One page of the item table: rows whose path contains ``query`` (any case), ordered by
    ``sort`` (a key of ``SORTS``, ties by item name); and how many rows match."""
    rows = items
    query = query.strip().lower()
    if query:
        rows = rows[rows["item"].str.lower().str.contains(query, regex=False)]
    column, ascending = SORTS[sort]
    return sorted_page(rows.drop(columns=["item_id"]), column, ascending, page, size), len(rows)


def item_table(items: pd.DataFrame) -> None:
    st.subheader("Items")
    request = page_controls("progress", "Search item", list(SORTS), PAGE_SIZES)
    rows, total, page = fetch_page(request, lambda n, size: progress_page(items, request.query, request.sort, n, size))
    st.dataframe(rows, hide_index=True)
    page_footer(request, page, len(rows), total, f"{len(items):,} in the study")
