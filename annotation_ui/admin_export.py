"""The Export tab: raw votes, per-item aggregates and the Q-Align training data of a study.

The raw votes are the stored record (excluded raters' votes included, as `qalign study export`
writes them); the aggregates are the labels of the valid votes (as `--aggregate` writes them); the
dataset is written by what `qalign export-dataset` runs. All three agree on every item's MOS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import cast

import pandas as pd
import streamlit as st

from annotation_ui import admin_data
from annotation_ui.text import plain
from toolkit.analysis import SUBJECT_MODELS, item_aggregates
from toolkit.convert.study_dataset import DEFAULT_SPLIT, export_study_dataset
from toolkit.errors import ToolkitError
from toolkit.io import write_table
from toolkit.store import Store, export_study, get_study
from toolkit.store.snapshot import LABEL_VOTE_COLUMNS

EXPORT_FORMATS = {"CSV": ".csv", "Parquet": ".parquet", "JSON": ".json"}
MIME = {".csv": "text/csv", ".parquet": "application/octet-stream", ".json": "application/json"}


def _table_bytes(frame: pd.DataFrame, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_table(frame, Path(tmp) / f"table{suffix}").read_bytes()


# Both files are made on every run that shows the tab (a download button needs its bytes), so
# they are cached per study version and format: a click costs a copy, not an export.
@st.cache_data(max_entries=8, show_spinner="Preparing the aggregates...")
def _aggregates_bytes(_store: Store, url: str, name: str, stamp: str, suffix: str) -> bytes:
    return _table_bytes(item_aggregates(admin_data.snapshot(_store, url, name, stamp, LABEL_VOTE_COLUMNS)), suffix)


@st.cache_data(max_entries=8, show_spinner="Preparing the raw votes...")
def _raw_votes_bytes(_store: Store, url: str, name: str, stamp: str, suffix: str) -> bytes | None:
    with tempfile.TemporaryDirectory() as tmp, _store.session() as session:
        try:
            path = export_study(session, get_study(session, name), Path(tmp) / f"votes{suffix}")
        except ToolkitError:
            return None
        return path.read_bytes()


def export_tab(store: Store, name: str) -> None:
    fmt = cast(str, st.radio("Format", list(EXPORT_FORMATS), horizontal=True, key="export_format"))
    suffix = EXPORT_FORMATS[fmt]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    stamp = admin_data.version_stamp(store, name)
    raw = _raw_votes_bytes(store, store.url, name, stamp, suffix)
    if raw is None:
        st.caption("No raw votes to export yet.")
    else:
        st.download_button(
            f"Download raw votes ({fmt})",
            data=raw,
            file_name=f"{safe}-votes{suffix}",
            mime=MIME[suffix],
            key="download-0",
        )
    st.download_button(
        f"Download per-item aggregates ({fmt})",
        data=_aggregates_bytes(store, store.url, name, stamp, suffix),
        file_name=f"{safe}-mos{suffix}",
        mime=MIME[suffix],
        key="download-1",
    )
    hf_export(store, name)


def hf_export(store: Store, name: str) -> None:
    """Q-Align training data (a Hugging Face dataset), written by what `qalign export-dataset` runs."""
    st.subheader("Q-Align training data (Hugging Face dataset)")
    with st.form("hf_export"):
        out = st.text_input("Output folder on the server", key="hf_out")
        split = st.text_input("Split (content groups never straddle two parts)", value=DEFAULT_SPLIT, key="hf_split")
        model = cast(str, st.selectbox("Labels", SUBJECT_MODELS, index=SUBJECT_MODELS.index("mos"), key="hf_model"))
        overwrite = st.checkbox(
            "Replace an earlier export",
            key="hf_overwrite",
            help="Only a folder this toolkit wrote is ever replaced; any other non-empty folder is refused.",
        )
        write = st.form_submit_button("Write dataset")
    if not (write and out):
        return
    try:
        with st.spinner("Writing the dataset..."):
            result = export_study_dataset(
                name, out, db_url=store.url, split=split or None, subject_model=model, overwrite=overwrite
            )
    except ToolkitError as exc:
        st.error(str(exc))
    else:
        st.success(f"Dataset of {len(result.table)} items written to {plain(out)}")
        for note in result.notes:
            st.caption(note)
