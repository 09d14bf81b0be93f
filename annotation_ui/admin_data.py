"""The admin page's reads of one study, cached until the study changes.

Reading a study of 10,000 items and 150,000 votes takes seconds and a subject-model fit as long
again; every click in Streamlit reruns the page. So each figure here is cached under the study's
*version* (:func:`toolkit.store.admin_views.study_version`: vote count, last vote id, items and
the raters' exclusion state), read afresh on every run by three small indexed queries: a click
costs those queries, and only a new vote, a new item or an exclusion recomputes the figures.

The cached functions take the store as ``_store`` (left out of the cache key) and the database
URL, study name and version stamp as the key, so two databases or two studies never share an entry.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import streamlit as st

from toolkit.analysis import (
    AnalysisOptions,
    Reliability,
    SplitHalfResult,
    StudyLabels,
    analyze_votes,
    prepare_votes,
    screen_raters,
    study_label_table,
    study_mos_labels,
)
from toolkit.analysis.model_agreement import ModelAgreement, read_model_agreement
from toolkit.analysis.names import is_model_name
from toolkit.errors import ToolkitError
from toolkit.store import Store, StudySnapshot, get_study, read_snapshot
from toolkit.store.admin_views import study_version
from toolkit.store.progress import rater_stats
from toolkit.store.snapshot import LABEL_VOTE_COLUMNS, VOTE_COLUMNS

SPLIT_HALF_SPLITS = 200


@dataclass(frozen=True)
class Version:
    """A study's version as the page keys its caches: a short digest, and the vote count."""

    stamp: str
    votes: int


def current_version(store: Store, name: str) -> Version:
    with store.session() as session:
        version = study_version(session, get_study(session, name))
    return Version(hashlib.sha256(repr(version).encode()).hexdigest()[:16], version.votes)


def version_stamp(store: Store, name: str) -> str:
    """A short digest of the study's current version: equal stamps, equal cached figures."""
    return current_version(store, name).stamp


PINNED_KEY = "admin_pinned"  # {(study, view): Version} a tab shows in this browser session


def pinned_version(store: Store, name: str, view: str) -> tuple[Version, Version]:
    """The version ``view`` (a tab) shows (the one current when the administrator first opened it,
    or last asked to update) and the current one.

    In a study taking a vote a second, keying a tab on the live version would refit the subject
    model or re-read every vote on almost every click; the administrator updates when they choose.
    """
    current = current_version(store, name)
    pinned: dict[tuple[str, str], Version] = st.session_state.setdefault(PINNED_KEY, {})
    return pinned.setdefault((name, view), current), current


def unpin(name: str, view: str) -> None:
    """The next run of ``view`` shows the study's current version."""
    st.session_state.setdefault(PINNED_KEY, {}).pop((name, view), None)


def staleness_note(name: str, view: str, shown: Version, current: Version) -> None:
    """Say that the study changed since ``shown``, with a button that updates ``view``."""
    if shown == current:
        return
    new = current.votes - shown.votes
    change = f"{new:,} new vote(s)" if new > 0 else "votes or raters changed"
    cols = st.columns([4, 1], vertical_alignment="center")
    cols[0].info(f"The study has changed since these figures were made ({change}).")
    if cols[1].button("Update the figures", key=f"{view}_refresh", width="stretch"):
        unpin(name, view)
        st.rerun()


# A few studies' snapshots at most: they are the largest objects here, and shared read-only.
@st.cache_resource(max_entries=4, show_spinner=False)
def snapshot(
    _store: Store, url: str, name: str, stamp: str, columns: tuple[str, ...] = tuple(VOTE_COLUMNS)
) -> StudySnapshot:
    """The study as the tabs read it: set-up, items and valid votes (excluded raters left out),
    with the vote ``columns`` a tab needs (the labels, the fit and the exports take
    ``LABEL_VOTE_COLUMNS``: at tens of millions of votes, the times alone are gigabytes)."""
    with _store.session() as session:
        return read_snapshot(session, get_study(session, name), columns=columns)


# A resource, not data: the table of a large study (a quarter of a million rows) is shared as it
# is, where a data cache would copy it by pickling on every click.
@st.cache_resource(max_entries=8, show_spinner="Labelling the items...")
def labels(_store: Store, url: str, name: str, stamp: str, model: str) -> StudyLabels | str:
    """:func:`~toolkit.analysis.study_label_table` of the study with ``model``, or the one-line
    reason the model cannot label it (cached too: a failing fit is not retried on every click).

    The plain MOS comes from the items' stored vote histograms (the same table, without reading
    a vote); a subject model is fitted to the votes."""
    try:
        if model == "mos":
            with _store.session() as session:
                return study_mos_labels(session, get_study(session, name))
        return study_label_table(snapshot(_store, url, name, stamp, LABEL_VOTE_COLUMNS), model)
    except ToolkitError as exc:
        return str(exc)


@dataclass
class SubjectFit:
    """The raters' side of a subject-model fit, and the split-half agreement, Krippendorff's alpha
    and ICC(2,k) of the same votes (the figures ``qalign analyze`` reports)."""

    raters: pd.DataFrame | None = None  # bias, inconsistency, rejected, reason per rater
    agreement: SplitHalfResult | None = None
    reliability: Reliability | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # why there is no fit (too few raters, a degenerate study)


@st.cache_data(max_entries=32, show_spinner="Fitting the subject model...")
def subject_fit(_store: Store, url: str, name: str, stamp: str, model: str) -> SubjectFit:
    """:func:`~toolkit.analysis.analyze_votes` on the valid test votes (the label table's votes)."""
    shot = snapshot(_store, url, name, stamp, LABEL_VOTE_COLUMNS)
    votes = shot.votes[shot.votes["role"] == "test"].reset_index(drop=True)
    if votes.empty or votes["rater"].nunique() < 2:
        return SubjectFit(error="a subject model needs valid test votes from two raters or more")
    if not is_model_name(model):
        return SubjectFit(error=f"unknown subject model {model!r}")
    options = AnalysisOptions(model=model, screening=None, agreement_splits=SPLIT_HALF_SPLITS)
    try:
        fit = analyze_votes(votes, options, source=f"study {shot.name}")
    except ToolkitError as exc:
        return SubjectFit(error=str(exc))
    return SubjectFit(
        raters=fit.result.raters_table(),
        agreement=fit.agreement,
        reliability=fit.reliability,
        notes=list(fit.notes),
    )


@st.cache_data(max_entries=32, show_spinner="Screening the raters...")
def screening(_store: Store, url: str, name: str, stamp: str) -> pd.DataFrame | str:
    """The analysis' rater screening of the valid votes (``flagged``, ``reason`` per rater), or
    the one-line reason it cannot run."""
    shot = snapshot(_store, url, name, stamp)
    if shot.votes.empty:
        return "no valid votes yet"
    try:
        return screen_raters(shot.votes).table
    except ToolkitError as exc:
        return str(exc)


@st.cache_data(max_entries=32, show_spinner=False)
def raters(_store: Store, url: str, name: str, stamp: str) -> pd.DataFrame:
    """:func:`~toolkit.store.progress.rater_stats`: every vote of every rater, excluded or not."""
    with _store.session() as session:
        return rater_stats(session, get_study(session, name))


@st.cache_data(max_entries=16, show_spinner="Comparing the raters with the model...")
def model_qa(
    _store: Store, url: str, name: str, stamp: str, digest: str, file_name: str, _data: bytes
) -> ModelAgreement | str:
    """Each rater's agreement with a model's scores and with the other raters (leave-one-out MOS)
    on the valid test votes, from an uploaded score file (keyed by its content ``digest``); or
    the one-line reason it cannot be made."""
    shot = snapshot(_store, url, name, stamp)
    votes = shot.votes[shot.votes["role"] == "test"].reset_index(drop=True)
    if votes.empty:
        return "no valid votes on test items yet"
    suffix = Path(file_name).suffix or ".csv"
    with tempfile.TemporaryDirectory() as tmp:
        # The readers go by the file's suffix and name it in their messages: keep both.
        path = Path(tmp) / (Path(file_name).name or f"scores{suffix}")
        path.write_bytes(_data)
        try:
            return read_model_agreement(path, prepare_votes(votes, source=f"study {shot.name}"))
        except ToolkitError as exc:
            return str(exc)
