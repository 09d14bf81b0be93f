"""The Results tab: labels of a study's test items, readable at 10,000 items.

The figures have a fixed size (a MOS histogram, the worst and the best items with their
intervals); every item is in a table shown one page at a time, searchable by name and sortable.
Labels, fits and agreement come from :mod:`annotation_ui.admin_data`, cached until a vote arrives.
"""

from __future__ import annotations

import io
from typing import cast

import matplotlib.pyplot as plt
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from annotation_ui import admin_data
from annotation_ui.admin_plots import MAX_RANKED, mos_histogram, ranked_items
from annotation_ui.admin_reliability import reliability_section
from annotation_ui.paged_table import fetch_page, page_controls, page_footer, sorted_page
from toolkit.analysis import SUBJECT_MODELS
from toolkit.qalign import COUNT_COLUMNS
from toolkit.store import Store, get_study
from toolkit.store.setup import level_labels

PAGE_SIZES = (25, 50, 100, 200)
SORTS: dict[str, tuple[str, bool]] = {
    "MOS, best first": ("mos", False),
    "MOS, worst first": ("mos", True),
    "Widest interval first": ("ci_width", False),
    "Fewest votes first": ("n", True),
    "Item name": ("item", True),
}
TABLE_COLUMNS = ("item", "mos", "ci_low", "ci_high", "sd", "n", "level", *COUNT_COLUMNS, "content_group")


def table_page(table: pd.DataFrame, query: str, sort: str, page: int, size: int) -> tuple[pd.DataFrame, int]:
    """One page of the label table: rows whose item or content group contains ``query`` (any
    case), ordered by ``sort`` (a key of ``SORTS``, ties by item name); and how many rows match."""
    rows = table
    query = query.strip().lower()
    if query:
        hit = rows["item"].str.lower().str.contains(query, regex=False)
        hit |= rows["content_group"].astype(str).str.lower().str.contains(query, regex=False)
        rows = rows[hit]
    column, ascending = SORTS[sort]
    if column == "ci_width":
        rows = rows.assign(ci_width=rows["ci_high"] - rows["ci_low"])
    return sorted_page(rows, column, ascending, page, size)[list(TABLE_COLUMNS)], len(rows)


def item_table(table: pd.DataFrame) -> None:
    st.subheader("Items")
    request = page_controls("results", "Search item or content group", list(SORTS), PAGE_SIZES)
    rows, total, page = fetch_page(request, lambda n, size: table_page(table, request.query, request.sort, n, size))
    st.dataframe(
        rows,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ("mos", "ci_low", "ci_high", "sd")},
    )
    page_footer(request, page, len(rows), total, f"{len(table):,} rated in all")


@st.cache_data(max_entries=64, show_spinner=False)
def figure_png(
    _table: pd.DataFrame, url: str, name: str, stamp: str, model: str, figure: str, n: int, levels: tuple[str, ...]
) -> bytes:
    """A Results figure as PNG, cached: drawing the three takes about 1.5 s on a 2-core machine,
    which every click would pay otherwise. ``_table`` follows from the key (study version, model).

    ``figure`` is ``histogram``, ``worst`` or ``best``; ``n`` the items of a ranked plot.
    """
    if figure == "histogram":
        fig = mos_histogram(_table["mos"].to_numpy(dtype=float), levels)
    else:
        fig = ranked_items(_table, n, worst=figure == "worst")
    out = io.BytesIO()
    # What st.pyplot would write: cropped, sharp on high-density screens.
    fig.savefig(out, format="png", dpi=200, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()


AUTO_FIT_VOTES = 2_000_000
"""Up to this many votes the reliability figures are computed as the tab opens; above, on request
(they read every vote: half a minute or more at 50 million), so the labels show at once whatever the size."""

FIT_ASKED_KEY = "results_fit_asked"  # {(study, version stamp, model)} the administrator asked to compute


def fit_wanted(name: str, stamp: str, model: str, votes: int, where: DeltaGenerator) -> bool:
    """Whether to compute (or take from the cache) the reliability figures of this version: always
    for a study of up to ``AUTO_FIT_VOTES`` votes, else once the administrator asks (a button in
    ``where``)."""
    asked: set[tuple[str, str, str]] = st.session_state.setdefault(FIT_ASKED_KEY, set())
    if votes <= AUTO_FIT_VOTES or (name, stamp, model) in asked:
        return True
    with where:
        st.markdown("**Reliability of the labels**")
        st.caption(
            f"Split-half agreement, Krippendorff's alpha and ICC read all {votes:,} votes: "
            "half a minute or more at 50 million. `qalign analyze --study` reports them too."
        )
        if st.button("Compute the reliability figures", key="results_fit"):
            asked.add((name, stamp, model))
            st.rerun()
    return False


def results_tab(store: Store, name: str) -> None:
    shown, current = admin_data.pinned_version(store, name, "results")
    stamp = shown.stamp
    admin_data.staleness_note(name, "results", shown, current)
    controls = st.columns([1, 1, 2])
    model = cast(
        str,
        controls[0].selectbox(
            "Labels from",
            SUBJECT_MODELS,
            index=SUBJECT_MODELS.index("mos"),
            key="results_model",
            help="mos: plain mean of the votes. The subject models (P.910 Annex E MLE, BT.500, P.913) "
            "remove rater bias and inconsistency.",
        ),
    )
    n = int(
        controls[1].number_input(
            "Items in each ranked plot", min_value=5, max_value=MAX_RANKED, value=15, key="results_n"
        )
    )
    labels = admin_data.labels(store, store.url, name, stamp, model)
    if isinstance(labels, str):  # a subject model that cannot score this study (yet): say why
        st.warning(labels)
        return
    for note in labels.notes:
        st.caption(note)
    if not len(labels):
        st.info("No valid votes on test items yet.")
        return
    table = labels.table
    n_test = len(table) + len(labels.unrated)
    cols = st.columns(4)
    cols[0].metric("Items rated", f"{len(table):,} / {n_test:,}")
    cols[1].metric("Valid votes on them", f"{int(table['n'].sum()):,}")
    cols[2].metric("Mean MOS", f"{table['mos'].mean():.2f}")
    cols[3].metric("Median 95% CI width", f"{(table['ci_high'] - table['ci_low']).median():.2f}")

    with store.session() as session:
        levels = tuple(level_labels(get_study(session, name)))

    def figure(kind: str) -> None:
        st.image(figure_png(table, store.url, name, stamp, model, kind, n, levels), width="stretch")

    # The figures and the table first; the fit (seconds on a large study, until it is cached)
    # fills the reliability column last, so the page is readable while it runs.
    left, right = st.columns(2)
    with left:
        figure("histogram")
    for side, kind in zip(st.columns(2), ("worst", "best")):
        with side:
            figure(kind)
    item_table(table)
    if not fit_wanted(name, stamp, model, shown.votes, right):
        return
    fit = admin_data.subject_fit(store, store.url, name, stamp, model)
    with right:
        reliability_section(store, name, stamp, fit)

    if model != "mos" and fit.raters is not None:
        st.subheader(f"Raters in the {model} fit")
        st.caption("bias: the rater's offset from the item scores; inconsistency: the spread of their votes.")
        st.dataframe(fit.raters, hide_index=True)
    elif fit.error and model != "mos":
        st.caption(f"Subject model unavailable: {fit.error}")
