"""The administrator's side, behind the admin secret: set-up, progress, raters, results, exports, tokens."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from annotation_ui.state import get_store
from annotation_ui.text import plain
from toolkit.errors import ToolkitError
from toolkit.store import Store, export_study, get_study, list_studies
from toolkit.store.admin import (
    DEFAULT_LEVEL_LABELS,
    SAMPLE_STUDY_NAME,
    StudySetup,
    check_admin_secret,
    check_media,
    create_sample_study,
    invite_rater,
    item_progress,
    level_labels,
    missing_items,
    rater_stats,
    reissue_token,
    set_rater_access,
    set_rater_excluded,
    setup_study,
    study_summary,
    valid_item_stats,
)

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
        with store.session() as session:
            ok = check_admin_secret(session, secret or "")
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
        task = st.selectbox("Task", ["quality", "aesthetics", "custom"], key="new_task")
        question = st.text_input("Question (required for a custom task; optional otherwise)", key="new_question")
        cols = st.columns(5)
        labels = [c.text_input(f"Level {5 - k}", value=DEFAULT_LEVEL_LABELS[k], key=f"new_label_{k}") for k, c in enumerate(cols)]
        cols = st.columns(3)
        target = cols[0].number_input("Votes per item", min_value=1, value=15, key="new_target")
        per_session = cols[1].number_input("Items per session", min_value=1, value=50, key="new_per_session")
        gold_every = cols[2].number_input("A gold item every N votes (0 = none)", min_value=0, value=10, key="new_gold_every")
        open_join = st.checkbox("Raters may register themselves", key="new_open")
        created = st.form_submit_button("Create study")
    if created:
        try:
            with store.session() as session:
                study, added = setup_study(session, StudySetup(
                    name=name, media_root=media, manifest=manifest or None, task=task, question=question or None,
                    labels=labels, target_votes=int(target), items_per_session=int(per_session),
                    gold_every=int(gold_every), allow_self_register=open_join,
                ))
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


def _study_votes(store: Store, name: str) -> pd.DataFrame:
    from toolkit.store import votes_frame

    with store.session() as session:
        return votes_frame(session, get_study(session, name))


def analysis_screening(store: Store, name: str) -> None:
    """Rater screening from ``toolkit.analysis`` (gold, straightlining, response times, agreement)."""
    try:
        from toolkit.analysis import screen_raters
    except ImportError:  # an install without the analysis package still shows the store figures
        return
    votes = _study_votes(store, name)
    if votes.empty:
        return
    try:
        report = screen_raters(votes)
    except ToolkitError as exc:
        st.caption(f"Rater screening unavailable: {exc}")
        return
    st.subheader("Screening")
    st.dataframe(report.table)


def subject_model(store: Store, name: str) -> None:
    """Item scores from the MLE subject model (rater bias and inconsistency removed)."""
    try:
        from toolkit.analysis import fit_subject_model, prepare_votes
    except ImportError:
        return
    votes = _study_votes(store, name)
    votes = votes[votes["role"] == "test"] if not votes.empty else votes
    if votes.empty or votes["rater"].nunique() < 2:
        return
    try:
        result = fit_subject_model(prepare_votes(votes, source=f"study {name!r}"), "mle_co")
    except ToolkitError as exc:
        st.caption(f"Subject model unavailable: {exc}")
        return
    st.subheader("Subject model (MLE, P.910 Annex E)")
    cols = st.columns(2)
    cols[0].dataframe(result.items_table(), hide_index=True)
    cols[1].dataframe(result.raters_table(), hide_index=True)


def raters_tab(store: Store, name: str) -> None:
    with store.session() as session:
        stats = rater_stats(session, get_study(session, name))
    st.caption(
        "gold_accuracy: share of check items answered within tolerance. fast_share: votes under 1 s. "
        "longest_run: identical votes in a row. min_session_sd: 0 means a whole session answered with one level."
    )
    st.dataframe(stats, hide_index=True)
    analysis_screening(store, name)


def results_tab(store: Store, name: str) -> None:
    with store.session() as session:
        stats = valid_item_stats(session, get_study(session, name))
    if stats.empty:
        st.info("No votes on test items yet.")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_mos, ax_hist) = plt.subplots(1, 2, figsize=(10, max(3.0, 0.25 * len(stats) + 1.5)))
    y = np.arange(len(stats))
    ax_mos.errorbar(stats["mos"], y, xerr=[stats["mos"] - stats["ci_low"], stats["ci_high"] - stats["mos"]], fmt="o", capsize=3)
    ax_mos.set_yticks(y, [str(i) for i in stats.index])
    ax_mos.set_xlim(0.8, 5.2)
    ax_mos.invert_yaxis()
    ax_mos.set_xlabel("MOS with 95% CI")
    counts = stats[["c1", "c2", "c3", "c4", "c5"]].to_numpy()
    left = np.zeros(len(stats))
    labels = level_labels_for(store, name)
    for k in range(5):
        ax_hist.barh(y, counts[:, k], left=left, label=labels[4 - k])
        left += counts[:, k]
    ax_hist.set_yticks(y, [""] * len(y))
    ax_hist.invert_yaxis()
    ax_hist.set_xlabel("votes per level")
    ax_hist.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    st.pyplot(fig)
    plt.close(fig)
    st.dataframe(stats)
    subject_model(store, name)


def level_labels_for(store: Store, name: str) -> list[str]:
    with store.session() as session:
        return level_labels(get_study(session, name))


def _export_bytes(store: Store, name: str, aggregate: bool, suffix: str) -> bytes | None:
    with tempfile.TemporaryDirectory() as tmp, store.session() as session:
        try:
            path = export_study(session, get_study(session, name), Path(tmp) / f"export{suffix}", aggregate=aggregate)
        except ToolkitError:
            return None
        return path.read_bytes()


def export_tab(store: Store, name: str) -> None:
    fmt = st.radio("Format", list(EXPORT_FORMATS), horizontal=True, key="export_format")
    suffix = EXPORT_FORMATS[fmt]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    for aggregate, what in ((False, "raw votes"), (True, "per-item aggregates")):
        data = _export_bytes(store, name, aggregate, suffix)
        if data is None:
            st.caption(f"No {what} to export yet.")
            continue
        st.download_button(
            f"Download {what} ({fmt})", data=data, file_name=f"{safe}-{'mos' if aggregate else 'votes'}{suffix}",
            mime=MIME[suffix], key=f"download-{int(aggregate)}",
        )
    hf_export(store, name)


def hf_export(store: Store, name: str) -> None:
    """Q-Align training data (a Hugging Face dataset) through ``toolkit.convert``, when installed."""
    try:
        from toolkit.convert import convert
    except ImportError:
        return
    st.subheader("Q-Align training data (Hugging Face dataset)")
    with st.form("hf_export"):
        out = st.text_input("Output folder on the server", key="hf_out")
        split = st.text_input("Split (content groups never straddle two parts)", value="train=0.8,test=0.2", key="hf_split")
        write = st.form_submit_button("Write dataset")
    if not (write and out):
        return
    votes = _study_votes(store, name)
    votes = votes[votes["role"] == "test"] if not votes.empty else votes
    if votes.empty:
        st.error("No votes on test items yet.")
        return
    with store.session() as session:
        study = get_study(session, name)
        task = study.task if study.task in ("quality", "aesthetics") else "quality"
        root = study.media_root
    try:
        with st.spinner("Writing the dataset..."):
            result = convert(
                votes, out, fmt="dataset", images=root, task=task, video=bool((votes["kind"] == "video").all()),
                split=split or None, group_by="content_group",
            )
    except ToolkitError as exc:
        st.error(str(exc))
    else:
        st.success(f"Dataset of {len(result.table)} items written to {plain(out)}")


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
        raters = rater_stats(session, get_study(session, name))[["rater", "revoked", "excluded", "self_registered", "votes"]]
    if raters.empty:
        st.info("No raters yet.")
        return
    st.dataframe(raters, hide_index=True)
    who = st.selectbox("Rater", raters["rater"].tolist(), key="token_rater")
    row = raters.set_index("rater").loc[who]
    cols = st.columns(3)
    action = None
    if cols[0].button("Restore access" if row["revoked"] else "Revoke token", key="token_revoke"):
        action = ("access", not bool(row["revoked"]))
    if cols[1].button("Count votes again" if row["excluded"] else "Exclude votes", key="token_exclude"):
        action = ("exclude", not bool(row["excluded"]))
    if cols[2].button("Issue a new token", key="token_reissue"):
        action = ("reissue", None)
    if action is None:
        return
    with store.session() as session:
        study = get_study(session, name)
        if action[0] == "access":
            set_rater_access(session, study, who, revoked=action[1])
        elif action[0] == "exclude":
            set_rater_excluded(session, study, who, excluded=action[1])
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
        name = st.selectbox("Study", names, key="admin_study")
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
