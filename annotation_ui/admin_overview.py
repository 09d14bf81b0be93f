"""The overview the administrator lands on: every study (they may open) with its progress,
recent activity and flagged raters; choosing a row opens that study."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timezone

import pandas as pd
import streamlit as st

from toolkit.store import Store
from toolkit.store.admin_views import StudyBoardRow, study_board

STUDY_KEY = "admin_study"  # the study picker's state: a study name, or OVERVIEW
OVERVIEW = ""  # the picker's first choice (a study name is never empty)
TABLE_KEY = "overview_table"
ORDER_KEY = "overview_order"  # the studies in the table's row order, for the selection callback

BOARD_COLUMNS = (
    "study",
    "task",
    "complete",
    "progress",
    "votes",
    "valid_votes",
    "votes_last_hour",
    "raters",
    "raters_active",
    "flagged_raters",
    "last_vote_at",
)


def board_frame(rows: Sequence[StudyBoardRow]) -> pd.DataFrame:
    """The overview table: one row per study, ``BOARD_COLUMNS`` (``progress`` in per cent)."""
    frame = pd.DataFrame(
        [
            (
                r.study,
                r.task,
                f"{r.complete_items:,} / {r.test_items:,}",
                round(100.0 * r.target_fraction, 1),
                r.votes,
                r.valid_votes,
                r.votes_last_hour,
                r.raters,
                r.raters_active,
                r.flagged_raters,
                r.last_vote_at,
            )
            for r in rows
        ],
        columns=list(BOARD_COLUMNS),
    )
    frame["last_vote_at"] = pd.to_datetime(frame["last_vote_at"])
    return frame


def _open_selected() -> None:
    # Runs before the rerun, so the picker (drawn again on it) can still be set.
    rows = st.session_state[TABLE_KEY]["selection"]["rows"]
    order = st.session_state.get(ORDER_KEY, [])
    if rows and rows[0] < len(order):
        st.session_state[STUDY_KEY] = order[rows[0]]


BOARD_TTL_S = 30


@st.cache_data(ttl=BOARD_TTL_S, max_entries=16, show_spinner="Counting the votes...")
def board(_store: Store, url: str, names: tuple[str, ...] | None) -> tuple[list[StudyBoardRow], datetime]:
    """:func:`study_board` and when it was read. Cached for ``BOARD_TTL_S``: on a store of two
    million votes the counts take seconds (they scan every vote), and every click reruns the page."""
    with _store.session() as session:
        return study_board(session, names=names), datetime.now(timezone.utc)


def overview_tab(store: Store, names: Collection[str] | None) -> None:
    """The studies in ``names`` (None: all of them)."""
    rows, read_at = board(store, store.url, None if names is None else tuple(names))
    if not rows:
        st.info("No study yet: create one under New study.")
        return
    frame = board_frame(rows)
    cols = st.columns(5)
    cols[0].metric("Studies", f"{len(frame):,}")
    cols[1].metric("Items complete", f"{sum(r.complete_items for r in rows):,} / {sum(r.test_items for r in rows):,}")
    cols[2].metric("Votes in the last hour", f"{int(frame['votes_last_hour'].sum()):,}")
    cols[3].metric("Raters active (last hour)", f"{int(frame['raters_active'].sum()):,}")
    cols[4].metric("Flagged raters", f"{int(frame['flagged_raters'].sum()):,}")
    st.session_state[ORDER_KEY] = frame["study"].tolist()
    st.dataframe(
        frame,
        hide_index=True,
        key=TABLE_KEY,
        on_select=_open_selected,
        selection_mode="single-row",
        column_config={
            "complete": st.column_config.TextColumn("items complete", help="test items at their vote target"),
            "progress": st.column_config.ProgressColumn(
                "target reached", min_value=0.0, max_value=100.0, format="%.0f%%", help="valid votes / wanted votes"
            ),
            "votes": st.column_config.NumberColumn("votes", format="localized"),
            "valid_votes": st.column_config.NumberColumn(
                "valid votes", format="localized", help="excluded raters' votes left out"
            ),
            "votes_last_hour": st.column_config.NumberColumn(
                "votes/hour", format="localized", help="votes given in the app in the last hour (imports not counted)"
            ),
            "raters_active": st.column_config.NumberColumn(
                "active", help="raters who voted in the app in the last hour"
            ),
            "flagged_raters": st.column_config.NumberColumn(
                "flagged", help="raters the study's exclusion rules flagged (see the study's Raters tab)"
            ),
            "last_vote_at": st.column_config.DatetimeColumn(
                "last vote (UTC)", format="YYYY-MM-DD HH:mm", width="medium"
            ),
        },
    )
    note, refresh = st.columns([5, 1], vertical_alignment="center")
    note.caption(
        f"Counts as of {read_at:%H:%M:%S} UTC (read again every {BOARD_TTL_S} s). Select a row, or a study in the "
        "picker above, to open its progress, raters, results and exports."
    )
    if refresh.button("Refresh", key="overview_refresh", width="stretch"):
        board.clear()
        st.rerun()
