"""Training data: Q-Align conversation JSON or a saved Hugging Face dataset, as ``TrainingExample`` s.

Records are parsed and checked up front (a malformed record or a missing file fails before any
training starts, naming the record); images are decoded lazily, one batch at a time, so a large
data set never has to fit in memory.

Conversation JSON (the reference format)::

    {"id": "...", "image": "koniq/1.jpg" | "clips/a.mp4" | ["f/1.png", "f/2.png"],
     "conversations": [{"from": "human", "value": "...?\\n<|image|>"},
                       {"from": "gpt", "value": "The quality of the image is good."}],
     "gt_score": 77.38, "level_probs": [..5 floats, excellent first..]}

A dataset folder written with ``save_to_disk`` has an ``image`` (``Image`` feature), ``frames``
(list of ``Image``) or ``video`` (file path) column, ``question``/``answer`` or ``conversations``,
and optionally ``level_probs`` and ``mos``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError
from toolkit.levels import LevelScale
from toolkit.models.base import TrainingExample
from toolkit.qalign import LEVEL_WORD_PATTERN, LEVELS, InputKind, Task, answer_level, answer_task, expected_score

if TYPE_CHECKING:
    from PIL import Image

# answer_level and answer_task come from the contract; they are named here too because code that
# walks the records reads answers next to the data.
__all__ = ["TrainingData", "answer_level", "answer_task", "check_targets", "load_training_data", "score_answer"]

LEVEL_SCALE_SHARE = 0.9
"""A data set with at least this share of its gt_scores in [1, 5] is on the level scale; the
score loss refuses the rest rather than rescale every record by them (see :func:`check_targets`)."""


def score_answer(answer: str, score: float, decimals: int = 2) -> str:
    """The direct-score baseline's answer: the level word replaced by the score as text
    ("The quality of the image is good." -> "The quality of the image is 3.42.")."""
    text, n = LEVEL_WORD_PATTERN.subn(f"{score:.{decimals}f}", answer, count=1)
    if n == 0:
        raise InputError(f"answer {answer!r} names no level word to replace by a score")
    return text


@dataclass
class _Record:
    """One parsed record; ``media`` is resolved to absolute paths (or dataset row indices)."""

    id: str
    media: str | list[str] | None
    question: str
    answer: str
    kind: InputKind
    level_probs: list[float] | None
    gt_score: float | None
    score: float | None = None  # 1-5 target of the direct-score baseline


class TrainingData(Sequence[TrainingExample]):
    """A sequence of training examples whose frames are opened on access."""

    def __init__(
        self,
        records: list[_Record],
        source: str,
        max_frames: int | None = None,
        dataset: Any = None,
        media_column: str | None = None,
        root: Path | None = None,
    ) -> None:
        self.records = records
        self.source = source
        self.max_frames = max_frames
        self._dataset = dataset
        self._media_column = media_column
        self._root = root

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> TrainingExample:  # type: ignore[override]
        if isinstance(index, slice):
            raise TypeError("TrainingData does not support slicing; index one example at a time")
        rec = self.records[index]
        frames = self._frames(index, rec)
        meta: dict[str, Any] = {"id": rec.id, "source": self.source}
        if rec.gt_score is not None:
            meta["gt_score"] = rec.gt_score
        level = answer_level(rec.answer)
        if level is not None:
            meta["level"] = level
        return TrainingExample(
            frames=frames,
            question=rec.question,
            answer=rec.answer,
            kind=rec.kind,
            level_distribution=rec.level_probs,
            score=rec.score,
            meta=meta,
        )

    def targets(self) -> list[float | None]:
        """What an evaluation ranks against: ``gt_score`` where given, else the answer's level
        (or, for numeric answers, their score)."""
        out: list[float | None] = []
        for r in self.records:
            level = answer_level(r.answer)
            out.append(r.gt_score if r.gt_score is not None else level if level is not None else r.score)
        return out

    def tasks(self) -> list[Task]:
        """The task each record's answer rates (quality or aesthetics)."""
        return [answer_task(r.answer) for r in self.records]

    def score_targets(self) -> list[float]:
        """The 1-5 score each record stands for, for the direct-score baseline.

        In order of preference: the expectation of ``level_probs`` (the vote mean on the five
        levels); ``gt_score``, as is when every score of the data set lies in [1, 5] (a MOS of
        level votes), else mapped linearly from the data set's own min and max to [1, 5] (as the
        paper maps scores to levels); the answer's level.
        """
        gt = [r.gt_score for r in self.records if r.gt_score is not None]
        scale = None
        if gt and not (min(gt) >= 1 and max(gt) <= 5):
            scale = LevelScale.from_data(gt) if max(gt) > min(gt) else None
        out = []
        for r in self.records:
            if r.level_probs is not None:
                out.append(float(expected_score(r.level_probs)))
            elif r.gt_score is not None:
                out.append(
                    float(scale.rescale([r.gt_score])[0]) if scale is not None else min(max(r.gt_score, 1.0), 5.0)
                )
            elif (level := answer_level(r.answer)) is not None:
                out.append(float(level))
            else:
                raise InputError(
                    f"{self.source}, record {r.id!r}: no level_probs, gt_score or level word to take a score from"
                )
        return out

    def with_score_answers(self, decimals: int = 2) -> TrainingData:
        """The same data with every answer's level word replaced by its score (see
        :meth:`score_targets`): the training data of the direct-score baseline."""
        records = [
            replace(r, answer=score_answer(r.answer, s, decimals), score=s)
            for r, s in zip(self.records, self.score_targets())
        ]
        return TrainingData(records, self.source, self.max_frames, self._dataset, self._media_column, self._root)

    def _frames(self, index: int, rec: _Record) -> list[Image.Image]:
        from toolkit.media import open_image

        if self._dataset is not None:
            try:
                value = self._dataset[index][self._media_column]
            except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for undecodable bytes
                raise InputError(
                    f"{self.source}, row {index} (id {rec.id!r}): cannot decode its image: {exc}"
                ) from None
            return _dataset_frames(value, rec, self.max_frames, self._root)
        if isinstance(rec.media, list):
            return [open_image(p) for p in rec.media]
        assert rec.media is not None
        if rec.kind == "video":
            from toolkit.media import load_video_frames

            # With their times, as the scorer reads them: a model told when frames were taken
            # is told the same in training and in scoring.
            return load_video_frames(rec.media, max_frames=self.max_frames).timed()
        return [open_image(rec.media)]


def load_training_data(
    path: str | os.PathLike[str],
    images: str | os.PathLike[str] | None = None,
    split: str = "train",
    max_frames: int | None = None,
) -> TrainingData:
    """Read a conversation JSON file or a ``save_to_disk`` dataset folder.

    ``images`` is the folder that relative media paths in a JSON file are resolved against
    (default: the JSON file's folder). ``split`` picks one split of a saved ``DatasetDict``.
    ``max_frames`` caps the frames decoded from a video file (uniform subsample).
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"training data {p} does not exist")
    if p.is_dir():
        return _load_dataset(p, split, max_frames, Path(images) if images is not None else None)
    return _load_json(p, Path(images) if images is not None else p.parent, max_frames)


def check_targets(data: TrainingData, loss: str) -> None:
    """Raise :class:`InputError`, naming the file and record, when a record lacks what ``loss``
    trains on.

    ``ce`` trains on the answer's level word; ``soft`` on ``level_probs`` or, failing them, the
    one-hot of the level word; ``score`` writes a 1-5 score (from ``level_probs``, ``gt_score`` or
    the level, :meth:`TrainingData.score_targets`) in place of the level word, so it needs the
    word too. A data set whose scores lie on the 1-5 level scale but for a few would have every
    score rescaled by those few under ``score``: they are refused as outside the data's scale (a
    score on another scale, or a typo).
    """
    levels = ", ".join(LEVELS)
    for r in data.records:
        level = answer_level(r.answer)
        if loss == "ce" and level is None:
            raise InputError(
                f"{data.source}, record {r.id!r}: the ce loss trains on the level word of the answer, and "
                f"{r.answer!r} has none ({levels}); fix the answer or train with --loss score"
            )
        if loss == "soft" and r.level_probs is None and level is None:
            raise InputError(
                f"{data.source}, record {r.id!r}: the soft-label loss needs level_probs or a level word "
                f"({levels}) in the answer, got {r.answer!r}"
            )
        if loss == "score" and level is None:
            raise InputError(
                f"{data.source}, record {r.id!r}: the score loss writes the score in place of the answer's level "
                f"word, and {r.answer!r} has none ({levels})"
            )
    if loss == "score":
        scored = [r for r in data.records if r.gt_score is not None]
        outside = [r for r in scored if not 1 <= r.gt_score <= 5]  # type: ignore[operator]
        if outside and len(scored) - len(outside) >= LEVEL_SCALE_SHARE * len(scored):
            first = outside[0]
            raise InputError(
                f"{data.source}, record {first.id!r}: gt_score {first.gt_score:g} is outside the 1-5 scale of "
                f"{len(scored) - len(outside)} of the {len(scored)} scores ({len(outside)} outside in all); "
                "the score loss would rescale every score by it: put every gt_score on one scale"
            )


# --------------------------------------------------------------------------- conversation JSON


def _load_json(path: Path, root: Path, max_frames: int | None) -> TrainingData:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read conversation file {path}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of records")
    records, missing = [], []
    for i, raw in enumerate(data):
        where = f"{path}, record {i}"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: a record must be an object, got {type(raw).__name__}")
        rid = str(raw.get("id", i))
        where = f"{path}, record {i} (id {rid!r})"
        question, answer = _turns(raw.get("conversations"), where)
        media_value = raw.get("image", raw.get("img_path", raw.get("video")))
        media, kind = _media(media_value, root, where)
        for f in media if isinstance(media, list) else [media]:
            if not os.path.exists(f):
                missing.append(f"{f} ({where})")
        records.append(
            _Record(
                rid,
                media,
                question,
                answer,
                kind,
                _probs(raw.get("level_probs"), where),
                _score(raw.get("gt_score"), where),
            )
        )
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(f"media file not found: {missing[0]}{more}; check --images (now {root})")
    return TrainingData(records, str(path), max_frames)


def _turns(conv: Any, where: str) -> tuple[str, str]:
    if not isinstance(conv, list) or not conv:
        raise InputError(f"{where}: 'conversations' must be a list of turns")
    human = next((t for t in conv if isinstance(t, dict) and t.get("from") == "human"), None)
    gpt = next((t for t in conv if isinstance(t, dict) and t.get("from") == "gpt"), None)
    if human is None or gpt is None:
        raise InputError(f"{where}: needs one turn from 'human' and one from 'gpt'")
    q, a = human.get("value"), gpt.get("value")
    if not isinstance(q, str) or not isinstance(a, str) or not a.strip():
        raise InputError(f"{where}: turn values must be non-empty strings")
    return q, a.strip()


def _media(value: Any, root: Path, where: str) -> tuple[str | list[str], InputKind]:
    if isinstance(value, str) and value:
        p = str(root / value)
        from toolkit.media import is_video_path

        return p, ("video" if is_video_path(p) else "image")
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return [str(root / v) for v in value], "video"
    raise InputError(f"{where}: 'image' must be a path or a non-empty list of frame paths, got {value!r}")


def _probs(value: Any, where: str) -> list[float] | None:
    if value is None:
        return None
    try:
        probs = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"{where}: level_probs must be five numbers, got {value!r}") from None
    if len(probs) != 5 or not all(math.isfinite(p) and p >= 0 for p in probs) or abs(sum(probs) - 1) > 1e-3:
        raise InputError(f"{where}: level_probs must be five non-negative numbers summing to 1, got {value!r}")
    return probs


def _score(value: Any, where: str) -> float | None:
    # Files in the wild store gt_score as a number or as a string.
    if value is None or value == "":
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: gt_score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise InputError(f"{where}: gt_score {value!r} is not a finite number")
    return score


# --------------------------------------------------------------------------- HF datasets


def _load_dataset(folder: Path, split: str, max_frames: int | None, root: Path | None) -> TrainingData:
    import datasets as hf

    try:
        ds = hf.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as exc:
        raise InputError(f"{folder} is not a dataset saved with save_to_disk: {exc}") from None
    if isinstance(ds, hf.DatasetDict):
        if split not in ds:
            raise InputError(f"{folder} has no split {split!r}; it has {', '.join(ds)}")
        ds = ds[split]
    if len(ds) == 0:
        raise InputError(f"{folder} (split {split!r}) has no rows")
    cols = set(ds.column_names)
    media_column = next((c for c in ("image", "frames", "video") if c in cols), None)
    if media_column is None:
        raise InputError(f"{folder}: needs an 'image', 'frames' or 'video' column; it has {sorted(cols)}")
    kind: InputKind = "image" if media_column == "image" else "video"
    text = ds.select_columns([c for c in ("question", "answer", "conversations", "id", "path") if c in cols])
    rows = text.to_dict()
    n = len(ds)
    if "question" in rows and "answer" in rows:
        qa = list(zip(rows["question"], rows["answer"]))
    elif "conversations" in rows:
        qa = [_turns(c, f"{folder}, row {i}") for i, c in enumerate(rows["conversations"])]
    else:
        raise InputError(f"{folder}: needs 'question' and 'answer' columns, or 'conversations'")
    ids = rows.get("id") or rows.get("path") or [str(i) for i in range(n)]
    probs = list(ds["level_probs"]) if "level_probs" in cols else [None] * n
    scores = list(ds["mos"]) if "mos" in cols else [None] * n
    records = []
    for i in range(n):
        q, a = qa[i]
        where = f"{folder}, row {i}"
        if not isinstance(a, str) or not a.strip():
            raise InputError(f"{where}: empty answer")
        records.append(
            _Record(str(ids[i]), None, q, a.strip(), kind, _probs(probs[i], where), _score(scores[i], where))
        )
    return TrainingData(records, str(folder), max_frames, dataset=ds, media_column=media_column, root=root)


def _dataset_frames(value: Any, rec: _Record, max_frames: int | None, root: Path | None) -> list[Image.Image]:
    from PIL import Image

    if isinstance(value, Image.Image):
        return [value.convert("RGB")]
    if isinstance(value, list) and value and all(isinstance(v, Image.Image) for v in value):
        return [v.convert("RGB") for v in value]
    if isinstance(value, str):  # a video file, relative to the media folder when not absolute
        from toolkit.media import load_video_frames

        path = Path(value) if root is None else root / value
        return load_video_frames(path, max_frames=max_frames).timed()
    raise InputError(f"row {rec.id!r}: cannot read its media ({type(value).__name__})")
