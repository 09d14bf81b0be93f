"""The New study tab: a study from a media folder (and an optional manifest), or the bundled sample."""

from __future__ import annotations

from typing import cast

import streamlit as st

from annotation_ui.text import plain
from toolkit.errors import ToolkitError
from toolkit.qalign import TASKS
from toolkit.store import Store, list_studies
from toolkit.store.setup import (
    DEFAULT_LEVEL_LABELS,
    SAMPLE_STUDY_NAME,
    StudySetup,
    create_sample_study,
    setup_study,
)

OPEN_STUDY_KEY = "admin_open_study"  # a study to open on the next run (set where the picker is drawn)
NOTICE_KEY = "admin_notice"  # a success message shown once on the next run

# Streamlit's choice widgets (selectbox, radio) open with an overload for empty options typed
# ``Sequence[typing.Never]``; at Python 3.10, the version mypy checks for, ``typing.Never`` does not
# exist, that overload takes every sequence and the widget's value comes out as ``None``. The
# options given here are never empty, so the value is one of them: the ``cast``s say which.


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
                study_name = study.name
                message = f"Study {plain(study_name)} created with {len(added.added)} items."
        except ToolkitError as exc:
            st.error(str(exc))
        else:
            # Open the new study at once; the picker above was drawn before it existed.
            st.session_state[OPEN_STUDY_KEY] = study_name
            st.session_state[NOTICE_KEY] = message
            st.rerun()
    with store.session() as session:
        has_sample = any(s.name == SAMPLE_STUDY_NAME for s in list_studies(session))
    if not has_sample and st.button("Add the bundled sample study", key="add_sample"):
        with store.session() as session:
            create_sample_study(session)
        st.rerun()
