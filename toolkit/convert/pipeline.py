"""Rating table -> (deduplicated, split) Q-Align JSON, HF dataset or Parquet: the ``qalign convert`` job."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from toolkit.convert.conversation import DEFAULT_INDENT, conversation_records, write_conversations
from toolkit.convert.labels import LabelTable, SoftLabelMode, TableKind
from toolkit.convert.readers import ColumnMap, load_labels
from toolkit.convert.splits import (
    DuplicateReport,
    drop_duplicates,
    known_hashes,
    parse_fractions,
    split_notes,
    split_table,
)
from toolkit.errors import InputError
from toolkit.files import atomic_directory, atomic_write_text, claim_output_dir
from toolkit.io import csv_text
from toolkit.levels import MosRule
from toolkit.qalign import LEVELS, InputKind, Task

OutputFormat = Literal["json", "dataset", "parquet"]

SUMMARY_FILE = "convert_summary.json"
DUPLICATES_FILE = "dropped_duplicates.csv"


@dataclass
class ConvertResult:
    """What :func:`convert` wrote and what it did to the data on the way."""

    table: LabelTable
    outputs: list[Path]
    duplicates: DuplicateReport | None
    notes: list[str] = field(default_factory=list)

    @property
    def level_counts(self) -> pd.DataFrame:
        """Items per split (rows) and level (columns, excellent .. bad)."""
        frame = self.table.frame
        words = pd.Categorical(self.table.level_words, categories=list(LEVELS))
        return pd.crosstab(frame["split"].to_numpy(), words, dropna=False).rename_axis(index="split", columns="level")

    def summary(self) -> dict[str, Any]:
        table = self.table
        return {
            "source": table.source,
            "table_kind": table.kind,
            "items": len(table),
            "rule": table.rule,
            "scale": {
                "low": table.scale.low,
                "high": table.scale.high,
                "higher_is_better": table.scale.higher_is_better,
            },
            "soft_labels": table.soft,
            "splits": {str(k): {str(w): int(v) for w, v in row.items()} for k, row in self.level_counts.iterrows()},
            "groups": int(table.frame["group"].nunique()),
            "duplicates_dropped": None if self.duplicates is None else len(self.duplicates),
            "outputs": [str(p) for p in self.outputs],
            "notes": list(self.notes),
        }


def convert(
    source: str | os.PathLike[str] | pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    fmt: OutputFormat = "json",
    images: str | os.PathLike[str] | None = None,
    task: Task = "quality",
    video: bool = False,
    rule: MosRule = "equal",
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
    split: str | Mapping[str, float] | None = None,
    seed: int = 0,
    group_by: str | None = None,
    kind: TableKind | None = None,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    soft: SoftLabelMode = "auto",
    prefix: str = "",
    soft_labels_in_json: bool = False,
    indent: int | None = DEFAULT_INDENT,
    dedupe: bool | None = None,
    overwrite: bool = False,
) -> ConvertResult:
    """Read ``source`` (a file or a DataFrame) and write training data to ``out``.

    ``fmt='json'``: Q-Align conversation files, ``out/<split>.json`` (or ``out`` itself when it
    ends in ``.json`` and there is one split). ``'dataset'``: a ``DatasetDict`` saved to the
    folder ``out``. ``'parquet'``: ``out/<split>.parquet``.

    Byte-identical media are dropped before splitting when their hashes are known (a ``sha256``
    column) or the files can be read: always for ``dataset``/``parquet``, for ``json`` when
    ``images`` is given (``dedupe`` forces either way).
    ``split`` is e.g. ``'train=0.8,test=0.2'``; without it a split column of the input is kept.
    A folder ``out`` is replaced as a whole: it must be new, empty, or (with ``overwrite``) an
    earlier toolkit output, and must not hold ``images`` (:func:`toolkit.files.claim_output_dir`).
    """
    table = load_labels(
        source, kind=kind, columns=columns, rule=rule, low=low, high=high, dmos=dmos, soft=soft, group_by=group_by
    )
    return write_training_data(
        table,
        out,
        fmt=fmt,
        images=images,
        task=task,
        video=video,
        split=split,
        seed=seed,
        prefix=prefix,
        soft_labels_in_json=soft_labels_in_json,
        indent=indent,
        dedupe=dedupe,
        overwrite=overwrite,
    )


def write_training_data(
    table: LabelTable,
    out: str | os.PathLike[str],
    *,
    fmt: OutputFormat = "json",
    images: str | os.PathLike[str] | None = None,
    task: Task = "quality",
    video: bool = False,
    split: str | Mapping[str, float] | None = None,
    seed: int = 0,
    prefix: str = "",
    soft_labels_in_json: bool = False,
    indent: int | None = DEFAULT_INDENT,
    dedupe: bool | None = None,
    overwrite: bool = False,
) -> ConvertResult:
    """The second half of :func:`convert`, for a :class:`LabelTable` built in memory."""
    if fmt not in ("json", "dataset", "parquet"):
        raise InputError(f"unknown output format {fmt!r}; use json, dataset or parquet")
    media: InputKind = "video" if video else "image"
    out = Path(out)
    single_file = fmt == "json" and out.suffix.lower() == ".json"
    if not single_file:  # refuse a folder that may not be replaced before any work
        claim_output_dir(out, overwrite=overwrite, inputs=(images,))
    _records = _conversation_writer(task, media, seed, images, prefix, soft_labels_in_json)
    notes: list[str] = []
    duplicates: DuplicateReport | None = None
    if dedupe is None:
        dedupe = fmt != "json" or images is not None or known_hashes(table)
    if dedupe:
        table, duplicates = drop_duplicates(table, images, media)
        if len(duplicates):
            notes.append(f"dropped {len(duplicates)} byte-identical duplicate(s) before splitting")
    else:
        notes.append("duplicates not checked: no media folder given and no sha256 column")
    if split:
        fractions = parse_fractions(split) if isinstance(split, str) else dict(split)
        table = split_table(table, fractions, seed)
        notes.extend(split_notes(table))
        empty = [name for name in fractions if name not in set(table.frame["split"])]
        if empty:
            notes.append(f"split(s) {', '.join(empty)} received no items (too few content groups)")

    parts = table.by_split()
    if single_file:
        if len(parts) > 1:
            raise InputError(f"{out} is one file but the data has {len(parts)} splits; give a folder")
        outputs = [write_conversations(_records(part), out, indent) for part in parts.values()]
        return ConvertResult(table, outputs, duplicates, notes)

    # A folder output is built aside and swapped in whole, and only over a folder the toolkit wrote.
    with atomic_directory(out, overwrite=overwrite, written_by="qalign convert", inputs=(images,)) as tmp:
        if fmt == "json":
            names = [
                write_conversations(_records(part), tmp / f"{name}.json", indent).name for name, part in parts.items()
            ]
        else:
            from toolkit.convert.hf import export_parquet, to_dataset_dict

            dataset = to_dataset_dict(table, image_root=images, task=task, kind=media, seed=seed)
            if fmt == "dataset":
                dataset.save_to_disk(str(tmp))
                names = []
            else:
                names = [path.name for path in export_parquet(dataset, tmp)]
        result = ConvertResult(table, [out / name for name in names] or [out], duplicates, notes)
        # A folder output carries its own record of how it was made.
        if duplicates is not None and len(duplicates):
            atomic_write_text(tmp / DUPLICATES_FILE, csv_text(duplicates.dropped))
            result.outputs.append(out / DUPLICATES_FILE)
        result.outputs.append(out / SUMMARY_FILE)
        atomic_write_text(tmp / SUMMARY_FILE, json.dumps(result.summary(), indent=2) + "\n")
    return result


def _conversation_writer(
    task: Task, media: InputKind, seed: int, images: str | os.PathLike[str] | None, prefix: str, soft: bool
) -> Callable[[LabelTable], list[dict[str, Any]]]:
    def records(part: LabelTable) -> list[dict[str, Any]]:
        return conversation_records(
            part, task=task, kind=media, seed=seed, image_root=images, prefix=prefix, soft_labels=soft
        )

    return records
