"""The Progress tab: headline figures, items missing on disk, and every item's votes so far.

Live figures (who has which item on screen, which files are missing), read afresh on every run
(the vote counts are stored per item, so this costs the same at any number of votes); the items
are shown one page at a time, searchable, so a study of 250,000 items loads as fast as a small one.
"""

from __future__ import annotations

import math
from typing import cast

import pandas as pd
import streamlit as st

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
PAGE_KEY = "progress_page"  # + the search, order and page size: a new filter opens on its first page


def progress_page(items: pd.DataFrame, query: str, sort: str, page: int, size: int) -> tuple[pd.DataFrame, int]:
    """One page of the item table: rows whose path contains ``query`` (any case), ordered by
    ``sort`` (a key of ``SORTS``, ties by item name); and how many rows match."""
    rows = items
    query = query.strip().lower()
    if query:
        rows = rows[rows["item"].str.lower().str.contains(query, regex=False)]
    column, ascending = SORTS[sort]
    keys = [column] if column == "item" else [column, "item"]
    rows = rows.sort_values(keys, ascending=[ascending] + [True] * (len(keys) - 1), kind="stable")
    start = (max(page, 1) - 1) * size
    return rows.drop(columns=["item_id"]).iloc[start : start + size].reset_index(drop=True), len(rows)


def item_table(items: pd.DataFrame) -> None:
    st.subheader("Items")
    cols = st.columns([3, 2, 1])
    query = cols[0].text_input("Search item", key="progress_search")
    sort = cast(str, cols[1].selectbox("Order", list(SORTS), key="progress_sort"))
    size = cast(int, cols[2].selectbox("Rows per page", PAGE_SIZES, key="progress_page_size"))
    key = f"{PAGE_KEY}:{query}:{sort}:{size}"
    rows, total = progress_page(items, query, sort, int(st.session_state.get(key, 1)), size)
    pages = max(1, math.ceil(total / size))
    page = min(int(st.session_state.get(key, 1)), pages)
    if page != st.session_state.get(key, 1):
        rows, total = progress_page(items, query, sort, page, size)
    st.dataframe(rows, hide_index=True)
    below = st.columns([3, 2])
    with below[0]:
        st.pagination(pages, key=key)
    first = (page - 1) * size + 1
    shown = f"items {first:,}–{first + len(rows) - 1:,} of {total:,}" if total else "no item"
    below[1].caption(f"{shown} matching; {len(items):,} in the study.")
