"""The administrator's side, behind the admin secret: set-up, progress, raters, results, exports, tokens.

Every figure about the items (labels, aggregates, subject model, the Hugging Face dataset) comes
from one :class:`~toolkit.store.StudySnapshot` through :mod:`toolkit.analysis.study_labels` and
:func:`toolkit.convert.study_dataset.export_study_dataset`, the functions the command line uses, so a
table on this page, a download and ``qalign export-dataset`` agree on every item's MOS.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal, cast

import pandas as pd
import streamlit as st

from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.analysis import (
    SUBJECT_MODELS,
    AnalysisOptions,
    analyze_votes,
    item_aggregates,
    screen_raters,
    study_label_table,
)
from toolkit.convert.study_dataset import DEFAULT_SPLIT, export_study_dataset
from toolkit.errors import ToolkitError
from toolkit.io import write_table
from toolkit.qalign import COUNT_COLUMNS, TASKS
from toolkit.store import (
    Store,
    StudySnapshot,
    export_study,
    get_study,
    list_studies,
    read_snapshot,
)
from toolkit.store.admin_secret import try_admin_secret
from toolkit.store.media_check import check_media, missing_items
from toolkit.store.progress import item_progress, rater_stats, study_summary
from toolkit.store.raters import (
    invite_rater,
    reissue_token,
    set_rater_access,
    set_rater_excluded,
)
from toolkit.store.setup import (
    DEFAULT_LEVEL_LABELS,
    SAMPLE_STUDY_NAME,
    StudySetup,
    create_sample_study,
    setup_study,
)

# Streamlit's choice widgets (selectbox, radio) open with an overload for empty options typed
# ``Sequence[typing.Never]``; at Python 3.10, the version mypy checks for, ``typing.Never`` does not
# exist, that overload takes every sequence and the widget's value comes out as ``None``. The
# options given here are never empty, so the value is one of them: the ``cast``s below say which.

ADMIN_KEY = "admin_ok"
EXPORT_FORMATS = {"CSV": ".csv", "Parquet": ".parquet", "JSON": ".json"}
MIME = {".csv": "text/csv", ".parquet": "application/octet-stream", ".json": "application/json"}


def sign_in(store: Store) -> bool:
    if st.session_state.get(ADMIN_KEY):
        return True
    st.header("Administration")
    with st.form("admin_login"):
        secret = st.text_input("Admin secret", type="password", key="admin_secret")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        try:
            # Counted in the database: a new browser session does not start the count afresh.
            with store.session() as session:
                ok = try_admin_secret(session, secret or "")
        except ToolkitError as exc:
            st.error(str(exc))
            return False
        if ok:
            st.session_state[ADMIN_KEY] = True
            st.rerun()
        st.error("Wrong admin secret.")
    return False


# --------------------------------------------------------------------------- set-up


def setup_tab(store: Store) -> None:
    st.subheader("New study")
    with st.form("new_study"):
        name = st.text_input("Study name", key="new_name")
        media = st.text_input("Media folder on the server", key="new_media")
        manifest = st.text_input(
            "Manifest CSV (optional: path, kind, content_group, role, expected_level, tolerance)", key="new_manifest"
        )
        task = cast(str, st.selectbox("Task", [*TASKS, "custom"], key="new_task"))
        question = st.text_input("Question (required for a custom task; optional otherwise)", key="new_question")
        cols = st.columns(5)
        labels = [
            c.text_input(f"Level {5 - k}", value=DEFAULT_LEVEL_LABELS[k], key=f"new_label_{k}")
            for k, c in enumerate(cols)
        ]
        numbers = st.columns(3)
        target = numbers[0].number_input("Votes per item", min_value=1, value=15, key="new_target")
        per_session = numbers[1].number_input("Items per session", min_value=1, value=50, key="new_per_session")
        gold_every = numbers[2].number_input(
            "A gold item every N votes (0 = none)", min_value=0, value=10, key="new_gold_every"
        )
        open_join = st.checkbox("Raters may register themselves", key="new_open")
        created = st.form_submit_button("Create study")
    if created:
        try:
            with store.session() as session:
                study, added = setup_study(
                    session,
                    StudySetup(
                        name=name,
                        media_root=media,
                        manifest=manifest or None,
                        task=task,
                        question=question or None,
                        labels=labels,
                        target_votes=int(target),
                        items_per_session=int(per_session),
                        gold_every=int(gold_every),
                        allow_self_register=open_join,
                    ),
                )
                message = f"Study {plain(study.name)} created with {len(added.added)} items."
        except ToolkitError as exc:
            st.error(str(exc))
        else:
            st.success(message)
    with store.session() as session:
        has_sample = any(s.name == SAMPLE_STUDY_NAME for s in list_studies(session))
    if not has_sample and st.button("Add the bundled sample study", key="add_sample"):
        with store.session() as session:
            create_sample_study(session)
        st.rerun()


# --------------------------------------------------------------------------- per study


def progress_tab(store: Store, name: str) -> None:
    with store.session() as session:
        study = get_study(session, name)
        summary = study_summary(session, study)
        items = item_progress(session, study)
    cols = st.columns(4)
    cols[0].metric("Items", summary["test_items"])
    cols[1].metric("Raters", summary["raters"])
    cols[2].metric("Votes", summary["votes"])
    cols[3].metric("Target reached", f"{summary['target_fraction']:.0%}")
    st.progress(summary["target_fraction"])
    missing = items[items["missing"]]
    if len(missing):
        st.warning(f"{len(missing)} item(s) have no file on disk and are skipped for raters:")
        st.dataframe(missing[["item", "role", "kind"]], hide_index=True)
    if st.button("Check media files now", key="check_media"):
        with store.session() as session:
            result = check_media(session, get_study(session, name))
        st.info(f"{len(result.missing)} missing, {len(result.restored)} back on disk.")
    st.dataframe(items.drop(columns=["item_id"]), hide_index=True)


def _snapshot(store: Store, name: str) -> StudySnapshot:
    """The study as every tab reads it: set-up, items and valid votes (excluded raters left out)."""
    with store.session() as session:
        return read_snapshot(session, get_study(session, name))


def analysis_screening(snapshot: StudySnapshot) -> None:
    """Rater screening from ``toolkit.analysis`` (gold, straightlining, response times, agreement)."""
    if snapshot.votes.empty:
        return
    try:
        report = screen_raters(snapshot.votes)
    except ToolkitError as exc:
        st.caption(f"Rater screening unavailable: {exc}")
        return
    st.subheader("Screening")
    if snapshot.excluded_raters:
        st.caption(f"On valid votes: the {snapshot.raters_excluded} excluded rater(s) are not screened again.")
    st.dataframe(report.table)


def raters_tab(store: Store, name: str) -> None:
    with store.session() as session:
        stats = rater_stats(session, get_study(session, name))
    st.caption(
        "gold_accuracy: share of check items answered within tolerance. fast_share: votes under 1 s. "
        "longest_run: identical votes in a row. min_session_sd: 0 means a whole session answered with one level. "
        "Every vote of a rater counts here, excluded or not."
    )
    st.dataframe(stats, hide_index=True)
    analysis_screening(_snapshot(store, name))


def subject_model(snapshot: StudySnapshot) -> None:
    """Item scores from the MLE subject model (rater bias and inconsistency removed)."""
    votes = snapshot.votes[snapshot.votes["role"] == "test"]
    if votes.empty or votes["rater"].nunique() < 2:
        return
    try:
        labels = study_label_table(snapshot, "mle_co")
        # The same votes and options as the label table, for the raters' side of the same fit.
        fit = analyze_votes(
            votes.reset_index(drop=True),
            AnalysisOptions(model="mle_co", screening=None, agreement_splits=0),
            source=f"study {snapshot.name}",
        )
    except ToolkitError as exc:
        st.caption(f"Subject model unavailable: {exc}")
        return
    st.subheader("Subject model (MLE, P.910 Annex E)")
    for note in labels.notes:
        st.caption(note)
    cols = st.columns(2)
    cols[0].dataframe(labels.table[["item", "mos", "ci_low", "ci_high", "n", "level"]], hide_index=True)
    cols[1].dataframe(fit.result.raters_table(), hide_index=True)


def results_tab(store: Store, name: str) -> None:
    snapshot = _snapshot(store, name)
    labels = study_label_table(snapshot, "mos")
    for note in labels.notes:
        st.caption(note)
    if not len(labels):
        st.info("No valid votes on test items yet.")
        return
    stats = labels.table.sort_values("mos", ascending=False, kind="stable").reset_index(drop=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_mos, ax_hist) = plt.subplots(1, 2, figsize=(10, max(3.0, 0.25 * len(stats) + 1.5)))
    y = np.arange(len(stats))
    mos = stats["mos"].to_numpy(dtype=float)
    err = [mos - stats["ci_low"].to_numpy(dtype=float), stats["ci_high"].to_numpy(dtype=float) - mos]
    ax_mos.errorbar(mos, y, xerr=err, fmt="o", capsize=3)
    ax_mos.set_yticks(y, stats["item"].astype(str).tolist())
    ax_mos.set_xlim(0.8, 5.2)
    ax_mos.invert_yaxis()
    ax_mos.set_xlabel("MOS with 95% CI")
    # COUNT_COLUMNS and the study's labels both run best first, so bars stack from the top level.
    counts = stats[list(COUNT_COLUMNS)].to_numpy(dtype=float)
    left = np.zeros(len(stats))
    # Green for the best level through red for the worst, so the shares read at a glance.
    colours = matplotlib.colormaps["RdYlGn"](np.linspace(0.9, 0.1, len(snapshot.level_labels)))
    for k, label in enumerate(snapshot.level_labels):
        ax_hist.barh(y, counts[:, k], left=left, label=label, color=colours[k])
        left += counts[:, k]
    ax_hist.set_yticks(y, [""] * len(y))
    ax_hist.invert_yaxis()
    ax_hist.set_xlabel("votes per level")
    # Below the bars, never over them.
    ax_hist.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=len(snapshot.level_labels))
    fig.tight_layout()
    st.pyplot(fig)
    plt.close(fig)
    st.dataframe(stats, hide_index=True)
    subject_model(snapshot)


def _table_bytes(frame: pd.DataFrame, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_table(frame, Path(tmp) / f"table{suffix}").read_bytes()


def _raw_votes_bytes(store: Store, name: str, suffix: str) -> bytes | None:
    with tempfile.TemporaryDirectory() as tmp, store.session() as session:
        try:
            path = export_study(session, get_study(session, name), Path(tmp) / f"votes{suffix}")
        except ToolkitError:
            return None
        return path.read_bytes()


def export_tab(store: Store, name: str) -> None:
    fmt = cast(str, st.radio("Format", list(EXPORT_FORMATS), horizontal=True, key="export_format"))
    suffix = EXPORT_FORMATS[fmt]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    # The raw votes are the stored record, excluded raters' votes included, as `qalign study export`
    # writes them; the aggregates are the labels of the valid votes, as `--aggregate` writes them.
    raw = _raw_votes_bytes(store, name, suffix)
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
    aggregates = item_aggregates(_snapshot(store, name))
    st.download_button(
        f"Download per-item aggregates ({fmt})",
        data=_table_bytes(aggregates, suffix),
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


def tokens_tab(store: Store, name: str) -> None:
    with st.form("invite"):
        rater = st.text_input("New rater's name", key="invite_name")
        invited = st.form_submit_button("Create invite token")
    if invited:
        try:
            with store.session() as session:
                token = invite_rater(session, get_study(session, name), rater or "")
        except ToolkitError as exc:
            st.error(str(exc))
        else:
            st.success(f"Token for {plain(rater)} (shown once, only its hash is stored):")
            st.code(token, language=None)
            st.caption("Invite link: the app's address followed by /?token=<token>")
    with store.session() as session:
        raters = rater_stats(session, get_study(session, name))[
            ["rater", "revoked", "excluded", "self_registered", "votes"]
        ]
    if raters.empty:
        st.info("No raters yet.")
        return
    st.dataframe(raters, hide_index=True)
    who = cast(str, st.selectbox("Rater", raters["rater"].tolist(), key="token_rater"))
    row = raters.set_index("rater").loc[who]
    cols = st.columns(3)
    action: Literal["access", "exclude", "reissue"] | None = None
    if cols[0].button("Restore access" if row["revoked"] else "Revoke token", key="token_revoke"):
        action = "access"
    if cols[1].button("Count votes again" if row["excluded"] else "Exclude votes", key="token_exclude"):
        action = "exclude"
    if cols[2].button("Issue a new token", key="token_reissue"):
        action = "reissue"
    if action is None:
        return
    with store.session() as session:
        study = get_study(session, name)
        if action == "access":
            set_rater_access(session, study, who, revoked=not bool(row["revoked"]))
        elif action == "exclude":
            set_rater_excluded(session, study, who, excluded=not bool(row["excluded"]))
        else:
            st.session_state["reissued"] = (who, reissue_token(session, study, who))
    st.rerun()


def render() -> None:
    store = get_store()
    if not sign_in(store):
        st.stop()
    st.title("Study administration")
    if st.sidebar.button("Sign out", key="admin_sign_out"):
        st.session_state.pop(ADMIN_KEY, None)
        st.rerun()
    reissued = st.session_state.pop("reissued", None)
    if reissued:
        st.success(f"New token for {plain(reissued[0])} (the old one no longer works):")
        st.code(reissued[1], language=None)
    with store.session() as session:
        names = [s.name for s in list_studies(session)]
        flagged = {n: len(missing_items(session, get_study(session, n))) for n in names}
    tabs = ["Set-up"] + (["Progress", "Raters", "Results", "Export", "Tokens"] if names else [])
    if names:
        name = cast(str, st.selectbox("Study", names, key="admin_study"))
        if flagged.get(name):
            st.warning(f"{flagged[name]} item(s) of this study are missing on disk: see Progress.")
    views = st.tabs(tabs)
    with views[0]:
        setup_tab(store)
    if not names:
        return
    for view, draw in zip(views[1:], (progress_tab, raters_tab, results_tab, export_tab, tokens_tab)):
        with view:
            draw(store, name)
