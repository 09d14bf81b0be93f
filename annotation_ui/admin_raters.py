"""The Raters tab: every rater's figures, flagged raters first and highlighted with the reasons,
the administrator's override of an exclusion (with a reason), and a model-in-the-loop check.

A rater is flagged by the study's exclusion rules (:mod:`toolkit.store.exclusion`, run as votes
arrive; they exclude the rater unless an override keeps them) or by the analysis' screening of the
valid votes (gold answers, straightlining, response times, agreement with the others; advisory).
The table counts every vote of a rater, excluded or not: it is what the administrator judges a
rater by, including whether to take an exclusion back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pandas as pd
import streamlit as st

from annotation_ui import admin_data
from annotation_ui.admin_model_qa import model_qa_section
from annotation_ui.paged_table import fetch_page, page_controls, page_footer, sorted_page
from annotation_ui.text import plain
from toolkit.errors import ToolkitError
from toolkit.store import Store, get_study
from toolkit.store.exclusion import Decision, FlagRow, list_flags, override_exclusion

FLAG_COLOUR = "background-color: #fde2e1"  # a light red: reads as a warning, keeps the text legible
KEPT_COLOUR = "background-color: #fff4ce"  # a light amber: flagged, but the administrator keeps them
ADMIN_BY_KEY = "admin_by"  # who overrides: set at sign-in ("global admin" or "study admin")

# What the administrator reads first, then the figures behind the flags; the set-up columns last.
COLUMN_ORDER = (
    "rater",
    "flagged",
    "excluded",
    "votes",
    "rule_flags",
    "screening_flags",
    "override",
    "gold_accuracy",
    "fast_share",
    "median_response_s",
    "longest_run",
    "vote_sd",
    "min_session_sd",
    "sessions",
    "gold_votes",
    "last_vote_at",
    "revoked",
    "self_registered",
    "trained_at",
    "created_at",
)


def _column_config() -> dict[str, object]:
    number = st.column_config.NumberColumn
    return {
        "rule_flags": st.column_config.TextColumn(
            "rule flags", width="medium", help="the study's exclusion rules: they exclude the rater unless overridden"
        ),
        "screening_flags": st.column_config.TextColumn(
            "screening flags", width="medium", help="the analysis' screening of the valid votes (advisory)"
        ),
        "override": st.column_config.TextColumn("override", width="small", help="the administrator's decision"),
        "votes": number("votes", format="localized", help="every vote, excluded or not"),
        "gold_accuracy": number("gold acc.", format="percent", help="check items answered within tolerance"),
        "fast_share": number("fast", format="percent", help="votes given in under 1 s"),
        "median_response_s": number("median s", format="%.1f", help="median response time, seconds"),
        "longest_run": number("longest run", help="identical votes in a row"),
        "vote_sd": number("vote sd", format="%.2f"),
        "min_session_sd": number("min session sd", format="%.2f", help="0: a whole session answered with one level"),
        "last_vote_at": st.column_config.DatetimeColumn("last vote (UTC)", format="YYYY-MM-DD HH:mm"),
        "trained_at": st.column_config.DatetimeColumn("trained (UTC)", format="YYYY-MM-DD HH:mm"),
        "created_at": st.column_config.DatetimeColumn("joined (UTC)", format="YYYY-MM-DD HH:mm"),
    }


DECISIONS: dict[str, Decision | None] = {
    "Keep (count their votes)": "keep",
    "Exclude (leave their votes out)": "exclude",
    "Let the rules decide again": None,
}


def _joined(values: pd.Series) -> str:
    return "; ".join(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def flag_table(stats: pd.DataFrame, screening: pd.DataFrame | None, flags: Sequence[FlagRow] = ()) -> pd.DataFrame:
    """``stats`` (one row per rater, ``rater`` column) with ``flagged``, ``rule_flags``,
    ``screening_flags`` and ``override`` in front; flagged raters first, then by name.

    ``screening`` is the analysis' table (index ``rater``; ``flagged``, ``reason``) or None when it
    could not run; ``flags`` the store's rule flags and overrides (:func:`list_flags`).
    """
    table = stats.copy()
    screened = pd.Series(dtype=object)
    if screening is not None and len(screening):
        screened = screening.loc[screening["flagged"].astype(bool), "reason"].astype(str)
    rules = pd.Series(dtype=object)
    overrides = pd.Series(dtype=object)
    if flags:
        frame = pd.DataFrame([vars(f) for f in flags])
        rules = frame.groupby("rater")["reason"].agg(_joined)
        decided = frame.dropna(subset=["override"]).drop_duplicates("rater").set_index("rater")
        overrides = pd.Series(
            [
                f"{row.override}: {row.override_reason}" + (f" ({row.override_by})" if row.override_by else "")
                for row in decided.itertuples()
            ],
            index=decided.index,
            dtype=object,
        )
    table.insert(1, "rule_flags", table["rater"].map(rules).astype(object).fillna("").astype(str))
    table.insert(2, "screening_flags", table["rater"].map(screened).astype(object).fillna("").astype(str))
    table.insert(1, "flagged", (table["rule_flags"] != "") | (table["screening_flags"] != ""))
    table.insert(4, "override", table["rater"].map(overrides).astype(object).fillna("").astype(str))
    order = table.assign(_unflagged=~table["flagged"]).sort_values(["_unflagged", "rater"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _highlight(row: pd.Series) -> list[str]:
    colour = ""
    if row["flagged"]:
        colour = KEPT_COLOUR if str(row.get("override", "")).startswith("keep") else FLAG_COLOUR
    return [colour] * len(row)


def flagged_summary(table: pd.DataFrame) -> None:
    flagged = table[table["flagged"]]
    if flagged.empty:
        st.success("No rater is flagged.")
        return
    lines = []
    for r in flagged.itertuples():
        reasons = "; ".join(x for x in (r.rule_flags, r.screening_flags) if x)
        kept = f" — *{plain(r.override)}*" if r.override else ""
        lines.append(f"- **{plain(r.rater)}**: {plain(reasons)}{kept}")
    st.warning(f"{len(flagged)} rater(s) flagged:\n" + "\n".join(lines))


MAX_RATER_CHOICES = 1000
"""Up to this many raters the override form offers a list to choose from; above, a name to type."""


def override_form(store: Store, name: str, table: pd.DataFrame) -> None:
    """Keep or exclude a rater whatever the rules say, with a reason (stored with who and when)."""
    with st.expander("Override an exclusion: keep or exclude a rater whatever the rules say"), st.form("override"):
        cols = st.columns([2, 2])
        if len(table) <= MAX_RATER_CHOICES:  # flagged raters first: the table's order
            who = cast(str, cols[0].selectbox("Rater", table["rater"].tolist(), key="override_rater"))
        else:  # a list of tens of thousands of names is no help: the name, checked when saved
            who = cols[0].text_input("Rater (name as in the table)", key="override_rater").strip()
        decision = cast(str, cols[1].selectbox("Decision", list(DECISIONS), key="override_decision"))
        reason = st.text_input("Reason (required to keep or exclude)", key="override_reason")
        submitted = st.form_submit_button("Save decision")
    if not submitted:
        return
    try:
        with store.session() as session:
            override_exclusion(
                session,
                get_study(session, name),
                who,
                DECISIONS[decision],
                reason=reason or None,
                by=st.session_state.get(ADMIN_BY_KEY),
            )
    except ToolkitError as exc:
        st.error(str(exc))
        return
    admin_data.unpin(name, "raters")  # the decision changes who is excluded: show it at once
    st.rerun()  # the table above was drawn before the decision


PAGE_SIZES = (50, 100, 200)
SORTS: dict[str, tuple[str, bool]] = {
    "Flagged first": ("_position", True),  # flag_table's order
    "Most votes first": ("votes", False),
    "Fewest votes first": ("votes", True),
    "Rater name": ("rater", True),
}


def rater_page(table: pd.DataFrame, query: str, sort: str, page: int, size: int) -> tuple[pd.DataFrame, int]:
    """One page of the raters table: rows whose name or flags contain ``query`` (any case),
    ordered by ``sort`` (a key of ``SORTS``); and how many rows match."""
    rows = table.assign(_position=range(len(table)))
    query = query.strip().lower()
    if query:
        hit = rows["rater"].astype(str).str.lower().str.contains(query, regex=False)
        for column in ("rule_flags", "screening_flags"):
            hit |= rows[column].str.lower().str.contains(query, regex=False)
        rows = rows[hit]
    column, ascending = SORTS[sort]
    return sorted_page(rows, column, ascending, page, size, name="rater").drop(columns="_position"), len(rows)


def rater_table(table: pd.DataFrame) -> None:
    """The raters a page at a time (a study may have tens of thousands), flagged ones highlighted."""
    request = page_controls("raters", "Search rater or flag", list(SORTS), PAGE_SIZES)
    rows, total, page = fetch_page(request, lambda n, size: rater_page(table, request.query, request.sort, n, size))
    st.dataframe(
        rows.style.apply(_highlight, axis=1),
        hide_index=True,
        column_order=[c for c in COLUMN_ORDER if c in rows.columns],
        column_config=_column_config(),  # type: ignore[arg-type]
    )
    page_footer(request, page, len(rows), total, f"{len(table):,} raters in all", noun="raters")
    st.caption("Every vote of a rater counts in this table, excluded or not. Hover a column name for its meaning.")


def raters_tab(store: Store, name: str) -> None:
    # The figures of every vote stay those first shown until the administrator updates them (as on
    # Results); the rules' flags and overrides below are read live.
    shown, current = admin_data.pinned_version(store, name, "raters")
    stamp = shown.stamp
    admin_data.staleness_note(name, "raters", shown, current)
    stats = admin_data.raters(store, store.url, name, stamp)
    if stats.empty:
        st.info("No raters yet.")
        return
    report = admin_data.screening(store, store.url, name, stamp)
    screening = report if isinstance(report, pd.DataFrame) else None
    with store.session() as session:
        flags = list_flags(session, get_study(session, name))
    table = flag_table(stats, screening, flags)
    flagged_summary(table)
    rater_table(table)
    override_form(store, name, table)

    model_qa_section(store, name, stamp)

    st.subheader("Screening")
    if screening is None:
        st.caption(f"Rater screening unavailable: {report}")
        return
    snapshot = admin_data.snapshot(store, store.url, name, stamp)
    if snapshot.excluded_raters:
        st.caption(f"On valid votes: the {snapshot.raters_excluded} excluded rater(s) are not screened again.")
    if len(screening) > MAX_RATER_CHOICES:  # the flagged ones: every rater's figures are a download
        st.caption(f"The {int(screening['flagged'].sum()):,} flagged of {len(screening):,} raters.")
        st.download_button(
            "Download the screening of every rater (CSV)",
            screening.to_csv().encode(),
            file_name=f"{name}-screening.csv",
            mime="text/csv",
        )
        screening = screening[screening["flagged"].astype(bool)]
    st.dataframe(screening.style.apply(_highlight, axis=1))
