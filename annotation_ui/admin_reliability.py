"""How far a study's labels can be trusted: the Results tab's reliability table.

Split-half agreement (Spearman-Brown corrected, the noise ceiling of an automatic scorer),
Krippendorff's alpha (ordinal) and ICC(2,k) / ICC(2,1), each with a bootstrap 95 % interval, come
with the cached subject-model fit of :mod:`annotation_ui.admin_data`: the figures ``qalign analyze``
reports for the same votes.
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
                "agreement of two halves of the votes (Spearman-Brown)",
            ),
            ("Split-half PLCC", agreement.plcc, *agreement.plcc_ci, "the same, linear"),
        ]
    reliability = fit.reliability
    if reliability is not None and reliability.alpha is not None:
        alpha = reliability.alpha
        rows.append(
            (
                f"Krippendorff's alpha ({alpha.metric})",
                alpha.alpha,
                *alpha.ci,
                "chance-corrected agreement of votes",
            )
        )
    if reliability is not None and reliability.icc is not None:
        icc = reliability.icc
        rows += [
            ("ICC(2,k)", icc.icc, *icc.ci, f"reliability of the mean of k = {icc.k:.1f} votes"),
            ("ICC(2,1)", icc.icc_single, *icc.icc_single_ci, "reliability of one vote"),
        ]
    return rows


def reliability_frame(rows: list[tuple[str, float, float, float, str]]) -> pd.DataFrame:
    """The table as shown: ``measure, estimate, 95% CI, meaning`` (the interval as one text)."""
    return pd.DataFrame(
        [(m, e, f"{low:.3f} – {high:.3f}" if pd.notna(low) else "", what) for m, e, low, high, what in rows],
        columns=["measure", "estimate", "95% CI", "meaning"],
    )


def reliability_section(store: Store, name: str, stamp: str, fit: SubjectFit) -> None:
    rows = reliability_rows(fit)
    st.markdown("**Reliability of the labels** (95% bootstrap intervals)")
    if not rows:
        st.caption("Reliability unavailable: " + (fit.error or "too few items with two or more votes"))
        return
    st.dataframe(
        reliability_frame(rows),
        hide_index=True,
        column_config={"estimate": st.column_config.NumberColumn("estimate", format="%.3f")},
    )
    details = []
    if fit.agreement is not None:
        details.append(f"split-half over {fit.agreement.n_items:,} items with two or more votes")
    if fit.reliability is not None and fit.reliability.icc is not None:
        details.append(f"ICC by {fit.reliability.icc.method}, absolute agreement")
    if details:
        st.caption("; ".join(details) + ".")
    for note in fit.notes:
        if any(word in note for word in ("agreement", "alpha", "ICC")):
            st.caption(note)
