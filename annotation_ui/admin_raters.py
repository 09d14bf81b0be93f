"""The Raters tab: every rater's figures, flagged raters first and highlighted with the reasons.

A rater is flagged by the analysis' screening of the valid votes (gold answers, straightlining,
response times, agreement with the others). The table itself counts every vote of a rater,
excluded or not: it is what the administrator judges a rater by, including whether to take an
exclusion back.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotation_ui import admin_data
from annotation_ui.text import plain
from toolkit.store import Store

FLAG_COLOUR = "background-color: #fde2e1"  # a light red: reads as a warning, keeps the text legible

STATS_HELP = (
    "gold_accuracy: share of check items answered within tolerance. fast_share: votes under 1 s. "
    "longest_run: identical votes in a row. min_session_sd: 0 means a whole session answered with one level. "
    "Every vote of a rater counts here, excluded or not."
)


def flag_table(stats: pd.DataFrame, screening: pd.DataFrame | None) -> pd.DataFrame:
    """``stats`` (one row per rater) with ``flagged`` and ``flag_reasons`` in front, flagged raters
    first (then by name). ``screening`` is the analysis' table (index ``rater``; ``flagged``,
    ``reason``) or None when it could not run."""
    table = stats.copy()
    reasons = pd.Series("", index=table.index, dtype=object)
    if screening is not None and len(screening):
        flagged = screening.loc[screening["flagged"].astype(bool), "reason"].astype(str)
        reasons = table["rater"].map(flagged).fillna("").astype(str)
    table.insert(1, "flagged", reasons != "")
    table.insert(2, "flag_reasons", reasons)
    order = table.assign(_unflagged=~table["flagged"]).sort_values(["_unflagged", "rater"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _highlight(row: pd.Series) -> list[str]:
    return [FLAG_COLOUR if row["flagged"] else ""] * len(row)


def flagged_summary(table: pd.DataFrame) -> None:
    flagged = table[table["flagged"]]
    if flagged.empty:
        st.success("No rater is flagged.")
        return
    lines = [f"- **{plain(r.rater)}**: {plain(r.flag_reasons)}" for r in flagged.itertuples()]
    st.warning(f"{len(flagged)} rater(s) flagged:\n" + "\n".join(lines))


def raters_tab(store: Store, name: str) -> None:
    stamp = admin_data.version_stamp(store, name)
    stats = admin_data.raters(store, store.url, name, stamp)
    if stats.empty:
        st.info("No raters yet.")
        return
    report = admin_data.screening(store, store.url, name, stamp)
    screening = report if isinstance(report, pd.DataFrame) else None
    table = flag_table(stats, screening)
    flagged_summary(table)
    st.caption(STATS_HELP)
    st.dataframe(table.style.apply(_highlight, axis=1), hide_index=True)

    st.subheader("Screening")
    if screening is None:
        st.caption(f"Rater screening unavailable: {report}")
        return
    snapshot = admin_data.snapshot(store, store.url, name, stamp)
    if snapshot.excluded_raters:
        st.caption(f"On valid votes: the {snapshot.raters_excluded} excluded rater(s) are not screened again.")
    st.dataframe(screening.style.apply(_highlight, axis=1))
