"""Training data straight from a study in the store (``qalign convert --study``).

The labels are the study's label table (:func:`toolkit.analysis.study_labels.study_label_table`): valid
votes only, plain MOS or a subject model's score, on the vote scale [1, 5] with levels from
five equal intervals of it. ``qalign export-dataset`` builds its dataset from the same
:class:`LabelTable` (:func:`training_table`), so both give every item the same level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from toolkit.convert.labels import LabelTable, SoftLabelMode, labels_from_counts
from toolkit.errors import InputError
from toolkit.files import atomic_write_text
from toolkit.qalign import COUNT_COLUMNS, Task, check_task, is_task

if TYPE_CHECKING:
    from toolkit.analysis.study_labels import StudyLabels
    from toolkit.convert.pipeline import ConvertResult, OutputFormat
    from toolkit.store.snapshot import StudySnapshot


def training_table(labels: StudyLabels, soft: SoftLabelMode = "auto", source: str = "study votes") -> LabelTable:
    """The :class:`LabelTable` of a study's label table: its MOS, SD, vote histograms (the soft
    labels with ``soft='auto'``) and content groups, its levels on its scale.

    Raises :class:`InputError` when no test item has a valid vote yet.
    """
    from toolkit.analysis.study_labels import LEVEL_RULE

    if not len(labels):
        raise InputError(f"{source}: no valid votes on the study's test items yet")
    table = labels.table
    return labels_from_counts(
        table,
        path="item",
        counts=tuple(reversed(COUNT_COLUMNS)),
        mos="mos",
        sd="sd",
        group="content_group",
        rule=LEVEL_RULE,
        low=labels.scale.low,
        high=labels.scale.high,
        soft=soft,
        source=source,
    )


def study_training_table(
    snapshot: StudySnapshot, subject_model: str = "mos", soft: SoftLabelMode = "auto"
) -> tuple[LabelTable, StudyLabels]:
    """The study's label table and the :class:`LabelTable` built from it."""
    from toolkit.analysis.study_labels import study_label_table

    labels = study_label_table(snapshot, subject_model)
    return training_table(labels, soft, source=f"study {snapshot.name}"), labels


def convert_study(
    study: str | StudySnapshot,
    out: str | os.PathLike[str],
    *,
    db_url: str | None = None,
    subject_model: str = "mos",
    fmt: OutputFormat = "json",
    images: str | os.PathLike[str] | None = None,
    task: str | None = None,
    video: bool | None = None,
    split: str | Mapping[str, float] | None = None,
    seed: int = 0,
    soft: SoftLabelMode = "auto",
    prefix: str = "",
    soft_labels_in_json: bool = False,
    overwrite: bool = False,
) -> ConvertResult:
    """Write Q-Align training data for a study's rated test items (``qalign convert --study``).

    ``study`` is a study name (read from ``db_url``) or a snapshot already read. ``images``
    defaults to the study's media root, ``task`` to the study's task (quality for a custom
    one), ``video`` to whether the study's test items are videos.
    """
    from toolkit.convert.pipeline import SUMMARY_FILE, write_training_data
    from toolkit.store.snapshot import LABEL_VOTE_COLUMNS, StudySnapshot, load_snapshot

    # Labels need no vote times: the lean read skips their second pass over the votes.
    snapshot = study if isinstance(study, StudySnapshot) else load_snapshot(study, db_url, LABEL_VOTE_COLUMNS)
    table, labels = study_training_table(snapshot, subject_model, soft)
    study_task: Task
    if task is None:
        study_task = snapshot.task if is_task(snapshot.task) else "quality"
    else:
        study_task = check_task(task)
    if video is None:
        video = bool(len(labels.table)) and bool((labels.table["kind"] == "video").all())
    result = write_training_data(
        table,
        out,
        fmt=fmt,
        images=images if images is not None else snapshot.media_root,
        task=study_task,
        video=video,
        split=split,
        seed=seed,
        prefix=prefix,
        soft_labels_in_json=soft_labels_in_json,
        overwrite=overwrite,
    )
    notes = list(labels.notes)
    if labels.unrated:
        notes.append(f"{len(labels.unrated)} test item(s) without valid votes are not in the training data")
    if notes:
        result.notes[:0] = notes
        summary = next((p for p in result.outputs if p.name == SUMMARY_FILE), None)
        if summary is not None:  # written before these notes were known; the folder's record should hold them
            atomic_write_text(summary, json.dumps(result.summary(), indent=2) + "\n")
    return result
