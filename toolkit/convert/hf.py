"""Hugging Face ``datasets`` export: one ``Dataset`` per split, saved to disk or as Parquet.

Columns: ``image`` (an ``Image`` feature; for videos ``video`` with the file path, or
``frames``, a list of ``Image``), ``path``, ``question``, ``answer``, ``mos``, ``sd``, ``n``,
``level`` (word), ``level_value`` (1..5), ``level_probs`` (five floats, excellent .. bad) and
``group``. Image bytes are embedded in both the saved dataset and the Parquet files, so the
export is self-contained.

``datasets`` is imported inside the functions: it takes most of a second to import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from toolkit.convert.labels import LabelTable
from toolkit.convert.media import absolute, media_refs
from toolkit.convert.prompts import draw_questions
from toolkit.errors import InputError
from toolkit.files import atomic_directory, atomic_path
from toolkit.qalign import InputKind, Task, answer_text

if TYPE_CHECKING:
    import datasets


def to_hf_dataset(
    table: LabelTable,
    *,
    image_root: str | os.PathLike[str] | None,
    task: Task = "quality",
    kind: InputKind = "image",
    seed: int = 0,
) -> datasets.Dataset:
    """A ``datasets.Dataset`` of ``table`` (one split); media files must exist under ``image_root``."""
    import datasets as hf

    root = Path(image_root) if image_root is not None else None
    frame = table.frame
    refs = media_refs(frame["path"].tolist(), kind, root)
    files = [absolute(r, root) for r in refs]
    _check_exist(files)
    words = table.level_words
    columns: dict[str, object] = {}
    features: dict[str, object] = {}
    if kind == "image":
        columns["image"], features["image"] = files, hf.Image()
    elif all(isinstance(r, list) for r in refs):
        columns["frames"], features["frames"] = files, hf.List(hf.Image())
    elif not any(isinstance(r, list) for r in refs):
        columns["video"], features["video"] = [str(r) for r in refs], hf.Value("string")
    else:
        raise InputError("a split mixes video files and folders of frames; convert them separately")
    columns.update(
        path=[r if isinstance(r, str) else os.path.dirname(r[0]) for r in refs],
        question=draw_questions(len(frame), task, kind, seed),
        answer=[answer_text(w, task, kind) for w in words],
        mos=frame["mos"].to_numpy(dtype=float),
        sd=frame["sd"].to_numpy(dtype=float),
        n=frame["n"].to_numpy(dtype=float),
        level=words,
        level_value=frame["level"].to_numpy(dtype=np.int64),
        level_probs=table.level_probs.tolist(),
        group=frame["group"].astype(str).tolist(),
    )
    features.update(
        path=hf.Value("string"),
        question=hf.Value("string"),
        answer=hf.Value("string"),
        mos=hf.Value("float64"),
        sd=hf.Value("float64"),
        n=hf.Value("float64"),
        level=hf.Value("string"),
        level_value=hf.Value("int64"),
        level_probs=hf.List(hf.Value("float64"), length=5),
        group=hf.Value("string"),
    )
    return hf.Dataset.from_dict(columns, features=hf.Features(features))


def to_dataset_dict(
    table: LabelTable,
    *,
    image_root: str | os.PathLike[str] | None,
    task: Task = "quality",
    kind: InputKind = "image",
    seed: int = 0,
) -> datasets.DatasetDict:
    """One ``Dataset`` per split of ``table``, keyed by split name."""
    import datasets as hf

    return hf.DatasetDict(
        {
            name: to_hf_dataset(part, image_root=image_root, task=task, kind=kind, seed=seed)
            for name, part in table.by_split().items()
        }
    )


def save_dataset(
    dataset: datasets.DatasetDict | datasets.Dataset,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Path:
    """``save_to_disk`` into a temporary folder, then move it to ``out`` (image bytes embedded).

    ``out`` must be new, empty, or (with ``overwrite``) an earlier toolkit output; ``inputs``
    (the media folder) must not lie inside it: see :func:`toolkit.files.claim_output_dir`."""
    with atomic_directory(out, overwrite=overwrite, written_by="save_dataset", inputs=inputs) as tmp:
        dataset.save_to_disk(str(tmp))
    return Path(out)


def export_parquet(
    dataset: datasets.DatasetDict | datasets.Dataset, out_dir: str | os.PathLike[str], batch_size: int = 256
) -> list[Path]:
    """Write ``<split>.parquet`` per split with the media bytes embedded, in batches (bounded memory).

    The files keep the ``datasets`` feature metadata, so ``load_dataset('parquet', ...)``
    gives back ``Image`` columns.
    """
    import datasets as hf
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import embed_table_storage

    parts = dataset if isinstance(dataset, hf.DatasetDict) else {"data": dataset}
    written = []
    for name, part in parts.items():
        target = Path(out_dir) / f"{name}.parquet"
        table = part.data.table
        schema = embed_table_storage(table.slice(0, 0)).schema.with_metadata(table.schema.metadata)
        with atomic_path(target, suffix=".parquet") as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for start in range(0, max(len(part), 1), batch_size):
                    chunk = pa.Table.from_batches(table.slice(start, batch_size).to_batches(), schema=table.schema)
                    if chunk.num_rows:
                        writer.write_table(embed_table_storage(chunk).replace_schema_metadata(schema.metadata))
        written.append(target)
    return written


def _check_exist(files: list) -> None:
    for ref in files:
        for f in ref if isinstance(ref, list) else [ref]:
            if not os.path.exists(f):
                raise InputError(f"media file not found: {f}")
