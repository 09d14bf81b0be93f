"""Q-Align conversation JSON, as read by the reference training code.

Each record is, with exactly these keys in this order::

    {"id": "10004473376.jpg->77.38",
     "image": "koniq/10004473376.jpg",
     "conversations": [
       {"from": "human", "value": "How would you rate the quality of this image?\\n<|image|>"},
       {"from": "gpt", "value": "The quality of the image is good."}],
     "gt_score": 77.38}

``image`` is a path relative to the image folder, a video file, or a list of frame paths. An
optional ``level_probs`` (five floats, excellent .. bad) carries a soft label; the reference
loader ignores keys it does not know.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from toolkit.convert.labels import LabelTable
from toolkit.convert.media import item_key, media_refs, relative_path, with_prefix
from toolkit.convert.prompts import draw_questions, human_turn
from toolkit.files import atomic_write_text
from toolkit.qalign import InputKind, Task, answer_text

DEFAULT_INDENT = 4
"""Indentation of the reference training files."""


def conversation_records(
    table: LabelTable,
    *,
    task: Task = "quality",
    kind: InputKind = "image",
    seed: int = 0,
    image_root: str | os.PathLike[str] | None = None,
    prefix: str = "",
    soft_labels: bool = False,
    questions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One Q-Align record per row of ``table``, questions drawn with ``seed``.

    ``prefix`` is a folder put in front of every media path (e.g. ``'koniq'``); the ``id`` keeps
    the item path without it, followed by ``->`` and the score, as in the reference files.
    ``gt_score`` is the MOS on the source's own scale. ``questions`` replaces the paraphrase
    pool (e.g. a single fixed question).
    """
    frame = table.frame
    root = Path(image_root) if image_root is not None else None
    refs = media_refs(frame["path"].tolist(), kind, root)
    drawn = draw_questions(len(frame), task, kind, seed, questions)
    words = table.level_words
    scores = frame["mos"].astype(float).tolist()
    probs = table.level_probs.tolist() if soft_labels else None
    records: list[dict[str, Any]] = []
    for i, (value, ref, question, word, score) in enumerate(zip(frame["path"], refs, drawn, words, scores)):
        record: dict[str, Any] = {
            "id": f"{item_key(ref) if isinstance(value, list) else relative_path(str(value), root)}->{score!r}",
            "image": with_prefix(ref, prefix),
            "conversations": [
                {"from": "human", "value": human_turn(question)},
                {"from": "gpt", "value": answer_text(word, task, kind)},
            ],
            "gt_score": score,
        }
        if probs is not None:
            record["level_probs"] = probs[i]
        records.append(record)
    return records


def dumps_conversations(records: Sequence[dict[str, Any]], indent: int | None = DEFAULT_INDENT) -> str:
    """The JSON text of a list of records (``json.dumps`` defaults otherwise: stable output)."""
    return json.dumps(list(records), indent=indent)


def write_conversations(
    records: Sequence[dict[str, Any]], path: str | os.PathLike[str], indent: int | None = DEFAULT_INDENT
) -> Path:
    """Write records to ``path`` atomically."""
    return atomic_write_text(path, dumps_conversations(records, indent))
