"""How far a study's labels can be trusted: the Results tab's reliability table.

Split-half agreement (Spearman-Brown corrected, the noise ceiling of an automatic scorer) comes
with the cached subject-model fit of :mod:`annotation_ui.admin_data`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from annotation_ui.admin_data import SubjectFit
from toolkit.store import Store

RELIABILITY_COLUMNS = ("measure", "estimate", "ci_low", "ci_high", "meaning")


def reliability_rows(fit: SubjectFit) -> list[tuple[str, float, float, float, str]]:
    """The rows of the reliability table: measure, estimate, 95 % interval, what it says."""
    rows: list[tuple[str, float, float, float, str]] = []
    agreement = fit.agreement
    if agreement is not None:
        rows += [
            (
                "Split-half SRCC",
                agreement.srcc,
                *agreement.srcc_ci,
                f"rank agreement of two halves of the votes, Spearman-Brown corrected ({agreement.n_items:,} items)",
            ),
            ("Split-half PLCC", agreement.plcc, *agreement.plcc_ci, "the same, linear correlation"),
        ]
    return rows


def reliability_section(store: Store, name: str, stamp: str, fit: SubjectFit) -> None:
    rows = reliability_rows(fit)
    st.subheader("Reliability")
    if not rows:
        st.caption("Reliability unavailable: " + (fit.error or "too few items with two or more votes"))
        return
    st.dataframe(
        pd.DataFrame(rows, columns=list(RELIABILITY_COLUMNS)),
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ("estimate", "ci_low", "ci_high")},
    )
    for note in fit.notes:
        if "agreement" in note:
            st.caption(note)
