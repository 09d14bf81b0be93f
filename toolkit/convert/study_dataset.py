"""A study as a Hugging Face dataset: media, labels with intervals, splits, and a dataset card.

:func:`export_study_dataset` takes a study's label table
(:func:`toolkit.analysis.study_labels.study_label_table`: valid votes only, plain MOS with a Student-t
interval or a subject model's scores with its intervals, levels on the vote scale [1, 5]; the
same labels ``qalign convert --study`` writes), drops byte-identical media by their stored
SHA-256, splits by content group (no source content on two sides), and writes one folder::

    README.md            dataset card (YAML metadata + design, raters, labels, licence, citation)
    data/<split>.parquet  media bytes embedded; ``load_dataset("parquet", ...)`` or the hub read it
    hf_dataset/          ``DatasetDict.save_to_disk`` (``datasets.load_from_disk``)
    items.csv            one row per item: split, group, MOS, SD, CI, vote counts, hash
    dropped_duplicates.csv  when duplicates were dropped

With ``push_to_hub`` the dataset goes to the Hugging Face hub through ``DatasetDict.push_to_hub``
and the card is merged into the one ``datasets`` writes there. That needs a token (argument,
``HF_TOKEN`` or a stored login); without one the export stops before doing anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toolkit.convert.labels import LabelTable
from toolkit.convert.splits import DuplicateReport, drop_duplicates, parse_fractions, split_notes, split_table
from toolkit.errors import InputError
from toolkit.files import atomic_directory, atomic_write_text, claim_output_dir
from toolkit.io import csv_text
from toolkit.qalign import COUNT_COLUMNS, LEVELS, InputKind, Task, check_kind, is_task

if TYPE_CHECKING:
    import datasets

    from toolkit.store.snapshot import StudySnapshot

FORMATS: tuple[str, ...] = ("dataset", "parquet")
DEFAULT_SPLIT = "train=0.8,test=0.2"
SINGLE_SPLIT = "train"


# --------------------------------------------------------------------------- the export


@dataclass
class DatasetExport:
    """What :func:`export_study_dataset` wrote."""

    out: Path
    table: LabelTable  # after deduplication, with splits
    items: pd.DataFrame  # items.csv
    duplicates: DuplicateReport
    files: list[Path]
    card: str
    hub_url: str | None = None
    notes: list[str] = field(default_factory=list)


def hub_token(token: str | None = None) -> str:
    """The Hugging Face token to push with: the argument, ``HF_TOKEN`` or a stored login."""
    if token:
        return token
    from huggingface_hub import get_token

    found = get_token()
    if not found:
        raise InputError(
            "pushing to the Hugging Face hub needs an access token: set HF_TOKEN, run `hf auth login`,"
            " or pass a token; nothing was exported"
        )
    return found


def export_study_dataset(
    study: str | StudySnapshot,
    out: str | os.PathLike[str],
    *,
    db_url: str | None = None,
    formats: Sequence[str] = FORMATS,
    split: str | None = DEFAULT_SPLIT,
    seed: int = 0,
    subject_model: str = "mos",
    license: str | None = None,
    license_link: str | None = None,
    citation: str | None = None,
    pretty_name: str | None = None,
    description: str | None = None,
    push_to_hub: str | None = None,
    token: str | None = None,
    private: bool = True,
    overwrite: bool = False,
) -> DatasetExport:
    """Export a study as a Hugging Face dataset folder (see the module docstring).

    ``study`` is a study name (read from ``db_url``) or a snapshot already read.
    ``split`` is e.g. ``'train=0.8,test=0.2'`` (by content group) or None for one ``train`` split.
    ``push_to_hub`` names a hub repository (``user/name``) to upload to as well.
    ``out`` is replaced as a whole: it must be new, empty, or (with ``overwrite``) an earlier
    toolkit output, and must not hold the study's media (:func:`toolkit.files.claim_output_dir`).
    """
    from toolkit.convert.card import card_metadata, render_card, write_card
    from toolkit.convert.hf import export_parquet, save_dataset
    from toolkit.convert.study import study_training_table
    from toolkit.store.snapshot import LABEL_VOTE_COLUMNS, StudySnapshot, load_snapshot

    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"unknown export format(s) {unknown or formats}; use {' and/or '.join(FORMATS)}")
    push_token = hub_token(token) if push_to_hub else None  # fail before any work
    fractions = parse_fractions(split) if split else None
    out = claim_output_dir(out, overwrite=overwrite)

    # Labels need no vote times: the lean read skips their second pass over the votes.
    snapshot = study if isinstance(study, StudySnapshot) else load_snapshot(study, db_url, LABEL_VOTE_COLUMNS)
    claim_output_dir(out, overwrite=overwrite, inputs=(snapshot.media_root,))
    full_table, study_labels = study_training_table(snapshot, subject_model, soft="histogram")
    labels = study_labels.table
    notes = list(study_labels.notes)
    if study_labels.unrated:
        notes.append(f"{len(study_labels.unrated)} test item(s) without valid votes are not in the dataset")
    kind = _media_kind(labels)
    table, duplicates = drop_duplicates(full_table, snapshot.media_root, kind)
    if len(duplicates):
        notes.append(f"dropped {len(duplicates)} byte-identical duplicate(s) before splitting")
    if fractions:
        table = split_table(table, fractions, seed)
        notes.extend(split_notes(table))
        empty = [name for name in fractions if name not in set(table.frame["split"])]
        if empty:
            notes.append(f"split(s) {', '.join(empty)} received no items (too few content groups)")
    else:
        table = table.with_frame(table.frame.assign(split=SINGLE_SPLIT))
    task: Task = snapshot.task if is_task(snapshot.task) else "quality"
    if task != snapshot.task:
        notes.append(f"the study's task is {snapshot.task!r}; the Q-Align question column uses the quality prompts")

    dataset = build_dataset(table, labels, snapshot.media_root, task, kind, seed)
    items = items_csv(table, labels)
    metadata = card_metadata(
        snapshot,
        table,
        kind=kind,
        license=license,
        license_link=license_link,
        pretty_name=pretty_name,
        parquet="parquet" in formats,
    )
    body = render_card(
        snapshot,
        table,
        items,
        duplicates,
        subject_model=subject_model,
        kind=kind,
        license=license,
        license_link=license_link,
        citation=_citation_text(citation),
        description=description,
        formats=formats,
        notes=notes,
        seed=seed,
        fractions=fractions,
    )
    inputs = (snapshot.media_root,)
    with atomic_directory(out, overwrite=overwrite, written_by="qalign export-dataset", inputs=inputs) as tmp:
        if "parquet" in formats:
            export_parquet(dataset, tmp / "data")
        if "dataset" in formats:
            save_dataset(dataset, tmp / "hf_dataset")
        atomic_write_text(tmp / "items.csv", csv_text(items))
        if len(duplicates):
            atomic_write_text(tmp / "dropped_duplicates.csv", csv_text(duplicates.dropped))
        card = write_card(tmp / "README.md", metadata, body)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    result = DatasetExport(out, table, items, duplicates, files, card, notes=notes)
    if push_to_hub and push_token is not None:  # the token was found above whenever push_to_hub is set
        result.hub_url = push_dataset(dataset, push_to_hub, metadata, body, push_token, private)
    return result


def _media_kind(labels: pd.DataFrame) -> InputKind:
    kinds = set(labels["kind"])
    if len(kinds) > 1:
        raise InputError("the study mixes images and videos; a dataset holds one kind of media")
    return check_kind(kinds.pop()) if kinds else "image"


def _citation_text(citation: str | None) -> str | None:
    """Citation text, or the contents of the file it names (a ``.bib`` file, say)."""
    if not citation:
        return None
    path = Path(citation)
    if len(citation) < 4096 and "\n" not in citation and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return citation.strip()


def build_dataset(
    table: LabelTable, labels: pd.DataFrame, media_root: Path, task: Task, kind: InputKind, seed: int
) -> datasets.DatasetDict:
    """:func:`toolkit.convert.hf.to_dataset_dict` plus the interval, vote-count and hash columns.

    ``labels`` is the study's label table (:attr:`toolkit.analysis.StudyLabels.table`)."""
    import datasets as hf

    from toolkit.convert.hf import to_dataset_dict

    dataset = to_dataset_dict(table, image_root=media_root, task=task, kind=kind, seed=seed)
    by_path = labels.set_index("item")
    for name, part in table.by_split().items():
        rows = by_path.loc[part.frame["path"].astype(str)]
        counts = rows[list(COUNT_COLUMNS)].to_numpy(dtype=np.int64)  # LEVELS order
        ds = dataset[name]
        ds = ds.add_column("mos_ci_low", rows["ci_low"].to_numpy(dtype=float).tolist(), feature=hf.Value("float64"))
        ds = ds.add_column("mos_ci_high", rows["ci_high"].to_numpy(dtype=float).tolist(), feature=hf.Value("float64"))
        ds = ds.add_column("vote_counts", counts.tolist(), feature=hf.List(hf.Value("int64"), length=5))
        ds = ds.add_column("sha256", rows["sha256"].astype(str).tolist(), feature=hf.Value("string"))
        dataset[name] = ds
    return dataset


def items_csv(table: LabelTable, labels: pd.DataFrame) -> pd.DataFrame:
    """The per-item table written beside the dataset."""
    frame = table.frame
    rows = labels.set_index("item").loc[frame["path"].astype(str)]
    out = pd.DataFrame(
        {
            "path": frame["path"].astype(str).to_numpy(),
            "split": frame["split"].to_numpy(),
            "content_group": frame["group"].to_numpy(),
            "mos": rows["mos"].to_numpy(),
            "sd": rows["sd"].to_numpy(),
            "ci_low": rows["ci_low"].to_numpy(),
            "ci_high": rows["ci_high"].to_numpy(),
            "n": rows["n"].to_numpy(),
            "level": [LEVELS[5 - int(v)] for v in frame["level"]],
        }
    )
    for column in COUNT_COLUMNS:
        out[column] = rows[column].to_numpy()
    out["sha256"] = rows["sha256"].to_numpy()
    return out


def push_dataset(
    dataset: datasets.DatasetDict, repo: str, metadata: dict, body: str, token: str, private: bool = True
) -> str:
    """Upload with ``DatasetDict.push_to_hub``, then merge our card into the one it wrote there."""
    from huggingface_hub import DatasetCard

    try:
        dataset.push_to_hub(repo, token=token, private=private)
        card = DatasetCard.load(repo, repo_type="dataset", token=token)
    except Exception as exc:  # offline, bad token, no rights: one readable line
        raise InputError(f"pushing to the hub repository {repo!r} failed: {type(exc).__name__}: {exc}") from None
    hub_data = card.data.to_dict()
    merged = {
        **{k: v for k, v in metadata.items() if k != "configs"},
        **{k: hub_data[k] for k in ("configs", "dataset_info") if k in hub_data},
    }
    from toolkit.convert.card import card_text

    DatasetCard(card_text(merged, body)).push_to_hub(repo, repo_type="dataset", token=token)
    return f"https://huggingface.co/datasets/{repo}"
