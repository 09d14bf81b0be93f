"""Model-in-the-loop rater QA on the Raters tab: the administrator uploads a model's score file
(``qalign score`` output: ``path``, ``score``) and sees, per rater, the rank correlation of their
votes with the model and with the other raters (leave-one-out MOS). A rater who disagrees with
both is worth a look; one who disagrees with the model only may simply see what it misses.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from annotation_ui import admin_data
from annotation_ui.text import plain
from toolkit.store import Store


def model_qa_section(store: Store, name: str, stamp: str) -> None:
    st.subheader("Raters against a model")
    upload = st.file_uploader(
        "Model score file (qalign score output: path, score; CSV, Parquet or JSON)",
        type=["csv", "parquet", "json", "jsonl"],
        key="model_scores",
    )
    if upload is None:
        st.caption(
            "Upload a model's scores of this study's items to compare every rater with the model and "
            "with the other raters."
        )
        return
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    qa = admin_data.model_qa(store, store.url, name, stamp, digest, upload.name, data)
    if isinstance(qa, str):
        st.error(qa)
        return
    cols = st.columns(3)
    cols[0].metric("Items matched", f"{qa.n_matched:,} / {qa.n_items:,}")
    cols[1].metric("Model vs MOS (SRCC)", f"{qa.srcc_mos:.3f}")
    cols[2].metric("Raters disagreeing with both", f"{len(qa.flagged):,}")
    for note in qa.notes:
        st.caption(note)
    config = qa.config
    st.caption(
        f"srcc_model: rank correlation of the rater's votes with the model's scores; srcc_peers: with the mean of "
        f"the other raters' votes. Flagged below {config.min_srcc_model} and {config.min_srcc_peers} "
        f"with {config.min_items} or more common items. Valid votes only (excluded raters are not here)."
    )
    if len(qa.flagged):
        names = ", ".join(f"**{plain(r)}**" for r in qa.flagged.index)
        st.warning(f"Disagree with the model and with the other raters: {names}")
    table = qa.table.reset_index().sort_values(["disagrees_with_both", "srcc_peers"], ascending=[False, True])
    st.dataframe(
        table,
        hide_index=True,
        column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in ("srcc_model", "srcc_peers")},
    )
