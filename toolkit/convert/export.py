"""A study as a Hugging Face dataset: media, labels with intervals, splits, and a dataset card.

:func:`export_study_dataset` reads a study's valid votes (raters screened out in the store
are left out), computes per-item labels (plain MOS with a Student-t interval, or a subject
model's scores with its intervals), drops byte-identical media by their stored SHA-256, splits
by content group (no source content on two sides), and writes one folder::

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from toolkit.convert.labels import LabelTable
from toolkit.convert.readers import load_labels
from toolkit.convert.splits import DuplicateReport, drop_duplicates, parse_fractions, split_table
from toolkit.errors import InputError
from toolkit.io import atomic_directory, atomic_write_text
from toolkit.levels import LEVELS, vote_stats

if TYPE_CHECKING:
    import datasets

FORMATS: tuple[str, ...] = ("dataset", "parquet")
SUBJECT_MODELS: tuple[str, ...] = ("mos", "mle", "mle_co", "bt500", "p913")
DEFAULT_SPLIT = "train=0.8,test=0.2"
SINGLE_SPLIT = "train"


# --------------------------------------------------------------------------- reading the study


@dataclass
class StudySnapshot:
    """What the export needs from the store, read in one session."""

    name: str
    task: str
    question: str
    level_labels: list[str]
    media_root: Path
    target_votes: int
    items_per_session: int
    gold_every: int
    items: pd.DataFrame  # item, kind, role, content_group, sha256
    votes: pd.DataFrame  # valid votes, ``toolkit.store.VOTE_COLUMNS``
    raters_registered: int
    raters_excluded: int
    created_at: str


def read_study(study: str, db_url: str | None = None) -> StudySnapshot:
    """A study's set-up, items and valid votes (those of raters screened out in the store dropped)."""
    from sqlalchemy import func, select

    from toolkit.store import Store, get_study, study_items, votes_frame
    from toolkit.store.admin import level_labels, study_question
    from toolkit.store.models import Rater

    store = Store(db_url)
    try:
        with store.session() as session:
            record = get_study(session, study)
            items = pd.DataFrame(
                [(i.path, i.kind, i.role, i.content_group, i.sha256) for i in study_items(session, record)],
                columns=["item", "kind", "role", "content_group", "sha256"],
            )
            votes = votes_frame(session, record)
            excluded = set(session.scalars(
                select(Rater.name).where(Rater.study_id == record.id, Rater.excluded.is_(True))
            ))
            registered = session.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == record.id)) or 0
            kinds = set(items.loc[items["role"] == "test", "kind"])
            snapshot = StudySnapshot(
                name=record.name, task=record.task,
                question=study_question(record, "video" if kinds == {"video"} else "image"),
                level_labels=level_labels(record), media_root=Path(record.media_root),
                target_votes=record.target_votes, items_per_session=record.items_per_session,
                gold_every=record.gold_every, items=items, votes=votes, raters_registered=int(registered),
                raters_excluded=len(excluded), created_at=str(record.created_at)[:10],
            )
    finally:
        store.dispose()
    if not votes.empty and excluded:
        snapshot.votes = votes[~votes["rater"].isin(excluded)].reset_index(drop=True)
    return snapshot


def valid_study_votes(study: str, db_url: str | None = None) -> pd.DataFrame:
    """A study's votes, one row per vote, without those of raters screened out in the store."""
    return read_study(study, db_url).votes


# --------------------------------------------------------------------------- labels


def item_labels(
    votes: pd.DataFrame, subject_model: str = "mos", confidence: float = 0.95, order: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per rated test item: ``path, mos, sd, ci_low, ci_high, n, c1..c5, content_group, sha256``.

    ``mos`` is the plain mean with a Student-t interval, or the score of a subject model
    (``mle``, ``mle_co``, ``bt500``, ``p913``) with that model's interval; ``c1..c5`` (bad ..
    excellent) always count the raw valid votes. Rows follow ``order`` (e.g. the study's item
    order, so that of two identical files the one added first is kept), else the item names.
    """
    if subject_model not in SUBJECT_MODELS:
        raise InputError(f"unknown subject model {subject_model!r}; use one of {', '.join(SUBJECT_MODELS)}")
    test = votes[votes["role"] == "test"] if "role" in votes.columns else votes
    if test.empty:
        raise InputError("the study has no valid votes on its test items yet")
    stats = vote_stats(test, item="item", vote="vote", confidence=confidence)
    if order is not None:
        stats = stats.loc[[i for i in order if i in stats.index]]
    first = test.drop_duplicates("item").set_index("item")
    table = pd.DataFrame({
        "path": stats.index.astype(str),
        "mos": stats["mos"].to_numpy(dtype=float),
        "sd": stats["sd"].to_numpy(dtype=float),
        "ci_low": stats["ci_low"].to_numpy(dtype=float),
        "ci_high": stats["ci_high"].to_numpy(dtype=float),
        "n": stats["n"].to_numpy(dtype=int),
        **{f"c{k}": stats[f"c{k}"].to_numpy(dtype=int) for k in range(1, 6)},
        "content_group": first["content_group"].reindex(stats.index).astype(str).to_numpy(),
        "sha256": first["sha256"].reindex(stats.index).astype(str).to_numpy(),
    })
    if subject_model != "mos":
        from toolkit.analysis import clean_labels

        cleaned = clean_labels(test[["item", "rater", "vote"]], model=subject_model).set_index("item")  # type: ignore[arg-type]
        keyed = cleaned.reindex(table["path"])
        table["mos"] = keyed["score"].to_numpy(dtype=float)
        table["sd"] = keyed["sd"].to_numpy(dtype=float)
        table["ci_low"] = keyed["ci_low"].to_numpy(dtype=float)
        table["ci_high"] = keyed["ci_high"].to_numpy(dtype=float)
    return table


def label_table(items: pd.DataFrame) -> LabelTable:
    """The :class:`LabelTable` of :func:`item_labels`' output: levels on the 1-5 vote scale,
    vote histograms as the level distributions, content groups for splitting."""
    counts = items[["path", "mos", "sd", "content_group", "sha256", "c1", "c2", "c3", "c4", "c5"]]
    low = min(1.0, float(items["mos"].min()))  # subject-model scores may leave [1, 5] slightly
    high = max(5.0, float(items["mos"].max()))
    return load_labels(
        counts, kind="counts", columns={"path": "path", "mos": "mos", "sd": "sd", "group": "content_group"},
        low=low, high=high, soft="histogram", source_name="study votes",
    )


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

    @property
    def split_sizes(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.table.frame["split"].value_counts(sort=False).items()}


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
    study: str,
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
) -> DatasetExport:
    """Export a study as a Hugging Face dataset folder (see the module docstring).

    ``split`` is e.g. ``'train=0.8,test=0.2'`` (by content group) or None for one ``train`` split.
    ``push_to_hub`` names a hub repository (``user/name``) to upload to as well.
    """
    from toolkit.convert.card import card_metadata, render_card, write_card
    from toolkit.convert.hf import export_parquet, save_dataset

    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"unknown export format(s) {unknown or formats}; use {' and/or '.join(FORMATS)}")
    push_token = hub_token(token) if push_to_hub else None  # fail before any work
    fractions = parse_fractions(split) if split else None

    snapshot = read_study(study, db_url)
    notes: list[str] = []
    labels = item_labels(snapshot.votes, subject_model, order=snapshot.items["item"].tolist())
    unrated = int((snapshot.items["role"] == "test").sum()) - len(labels)
    if unrated:
        notes.append(f"{unrated} test item(s) without valid votes are not in the dataset")
    kind = _media_kind(snapshot.items, labels["path"])
    table, duplicates = drop_duplicates(label_table(labels), snapshot.media_root, kind)
    if len(duplicates):
        notes.append(f"dropped {len(duplicates)} byte-identical duplicate(s) before splitting")
    if fractions:
        table = split_table(table, fractions, seed)
        empty = [name for name in fractions if name not in set(table.frame["split"])]
        if empty:
            notes.append(f"split(s) {', '.join(empty)} received no items (too few content groups)")
    else:
        table = table.with_frame(table.frame.assign(split=SINGLE_SPLIT))
    task = snapshot.task if snapshot.task in ("quality", "aesthetics") else "quality"
    if task != snapshot.task:
        notes.append(f"the study's task is {snapshot.task!r}; the Q-Align question column uses the quality prompts")

    dataset = build_dataset(table, labels, snapshot.media_root, task, kind, seed)
    items = items_csv(table, labels)
    metadata = card_metadata(
        snapshot, table, kind=kind, license=license, license_link=license_link, pretty_name=pretty_name,
        parquet="parquet" in formats,
    )
    body = render_card(
        snapshot, table, items, duplicates, subject_model=subject_model, kind=kind, license=license,
        license_link=license_link, citation=_citation_text(citation), description=description,
        formats=formats, notes=notes, seed=seed, fractions=fractions,
    )
    out = Path(out)
    with atomic_directory(out) as tmp:
        if "parquet" in formats:
            export_parquet(dataset, tmp / "data")
        if "dataset" in formats:
            save_dataset(dataset, tmp / "hf_dataset")
        atomic_write_text(tmp / "items.csv", items.to_csv(index=False))
        if len(duplicates):
            atomic_write_text(tmp / "dropped_duplicates.csv", duplicates.dropped.to_csv(index=False))
        card = write_card(tmp / "README.md", metadata, body)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    result = DatasetExport(out, table, items, duplicates, files, card, notes=notes)
    if push_to_hub:
        result.hub_url = push_dataset(dataset, push_to_hub, metadata, body, push_token, private)  # type: ignore[arg-type]
    return result


def _media_kind(items: pd.DataFrame, paths: pd.Series) -> str:
    kinds = set(items.loc[items["item"].isin(set(paths)), "kind"])
    if len(kinds) > 1:
        raise InputError("the study mixes images and videos; a dataset holds one kind of media")
    return kinds.pop() if kinds else "image"


def _citation_text(citation: str | None) -> str | None:
    """Citation text, or the contents of the file it names (a ``.bib`` file, say)."""
    if not citation:
        return None
    path = Path(citation)
    if len(citation) < 4096 and "\n" not in citation and path.is_file():
        return path.read_text(encoding="utf-8").strip()
    return citation.strip()


def build_dataset(
    table: LabelTable, labels: pd.DataFrame, media_root: Path, task: str, kind: str, seed: int
) -> "datasets.DatasetDict":
    """:func:`toolkit.convert.hf.to_dataset_dict` plus the interval, vote-count and hash columns."""
    import datasets as hf

    from toolkit.convert.hf import to_dataset_dict

    dataset = to_dataset_dict(table, image_root=media_root, task=task, kind=kind, seed=seed)  # type: ignore[arg-type]
    by_path = labels.set_index("path")
    for name, part in table.by_split().items():
        rows = by_path.loc[part.frame["path"].astype(str)]
        counts = rows[["c5", "c4", "c3", "c2", "c1"]].to_numpy(dtype=np.int64)  # LEVELS order
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
    rows = labels.set_index("path").loc[frame["path"].astype(str)]
    out = pd.DataFrame({
        "path": frame["path"].astype(str).to_numpy(),
        "split": frame["split"].to_numpy(),
        "content_group": frame["group"].to_numpy(),
        "mos": rows["mos"].to_numpy(),
        "sd": rows["sd"].to_numpy(),
        "ci_low": rows["ci_low"].to_numpy(),
        "ci_high": rows["ci_high"].to_numpy(),
        "n": rows["n"].to_numpy(),
        "level": [LEVELS[5 - int(v)] for v in frame["level"]],
    })
    for k in range(5, 0, -1):
        out[f"votes_{LEVELS[5 - k]}"] = rows[f"c{k}"].to_numpy()
    out["sha256"] = rows["sha256"].to_numpy()
    return out


def push_dataset(
    dataset: "datasets.DatasetDict", repo: str, metadata: dict, body: str, token: str, private: bool = True
) -> str:
    """Upload with ``DatasetDict.push_to_hub``, then merge our card into the one it wrote there."""
    from huggingface_hub import DatasetCard

    try:
        dataset.push_to_hub(repo, token=token, private=private)
        card = DatasetCard.load(repo, repo_type="dataset", token=token)
    except Exception as exc:  # offline, bad token, no rights: one readable line
        raise InputError(f"pushing to the hub repository {repo!r} failed: {type(exc).__name__}: {exc}") from None
    hub_data = card.data.to_dict()
    merged = {**{k: v for k, v in metadata.items() if k != "configs"}, **{k: hub_data[k] for k in ("configs", "dataset_info") if k in hub_data}}
    from toolkit.convert.card import card_text

    DatasetCard(card_text(merged, body)).push_to_hub(repo, repo_type="dataset", token=token)
    return f"https://huggingface.co/datasets/{repo}"

