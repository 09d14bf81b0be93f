"""Turning what a user passes (files, folders, CSV/JSON manifests, shards of samples) into inputs.

Manifests follow the files found in the wild: a column ``image``, ``img_path`` or ``path``, and
optionally ``gt_score`` as a number or a numeric string. Relative paths in a manifest resolve
against the manifest's own folder. A Q-Align style JSON record whose ``image`` is a list of frame
paths is one video made of those frames.

Problems that concern one input (a missing file, a video passed without ``video=True``) do not
stop anything: the input carries the reason and ends up as an error row. Problems with a manifest
as a whole (no path column, a ``gt_score`` that is not a number) raise :class:`InputError`.

Shards (WebDataset ``.tar`` files, ``.parquet`` and ``.arrow`` files, ``datasets`` folders written
by ``save_to_disk``) are not listed here: :func:`plan_inputs` keeps each as a
:class:`~toolkit.scoring.sources.ShardSource` that is read as a stream when it is scored. A quoted
pattern (``'shards/*.tar'``) is expanded here, in natural order, so a list of thousands of shards
need not pass through the shell.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from toolkit.errors import InputError
from toolkit.io import id_text
from toolkit.media import is_image_path, is_video_path, natural_key
from toolkit.models.base import InputKind

if TYPE_CHECKING:
    from toolkit.scoring.sources import ShardSource

log = logging.getLogger(__name__)

PATH_COLUMNS: tuple[str, ...] = ("image", "img_path", "path")
"""Manifest columns that can hold the input path, in order of preference."""

MANIFEST_SUFFIXES: frozenset[str] = frozenset({".csv", ".json", ".jsonl"})


@dataclass(frozen=True)
class ScoreInput:
    """One thing to score and the key its output row is written under."""

    path: str  # the output key: the path as given, joined to the manifest folder when relative
    kind: InputKind
    frames: tuple[str, ...] | None = None  # explicit frame files (a list in a JSON manifest)
    gt_score: float | None = None
    error: str | None = None  # known to be unusable before decoding
    data: bytes | None = field(default=None, repr=False)  # encoded image of a shard sample (no file)


def collect_inputs(inputs: Sequence[str | os.PathLike[str]], video: bool = False) -> list[ScoreInput]:
    """Expand files, folders and manifests into inputs, in the order given, duplicates dropped.

    Folders are walked recursively in natural order. Without ``video`` every image file found is
    an input; with ``video`` every video file is one, and so is every folder that directly holds
    image files (a folder of frames). Shards are refused: :func:`plan_inputs` streams them.
    """
    plan = plan_inputs(inputs, video)
    if plan.shards:
        raise InputError(f"{plan.shards[0].path}: a shard of samples; score it with plan_inputs (streamed)")
    return plan.files


@dataclass
class InputPlan:
    """The inputs of a run in the order given: file inputs and whole shards."""

    entries: list[ScoreInput | ShardSource]

    @property
    def files(self) -> list[ScoreInput]:
        return [e for e in self.entries if isinstance(e, ScoreInput)]

    @property
    def shards(self) -> list[ShardSource]:
        return [e for e in self.entries if not isinstance(e, ScoreInput)]

    def share(self, rank: int, world: int) -> InputPlan:
        """What process ``rank`` of ``world`` scores: a contiguous block of the files (as a run
        of files has always been split) and a contiguous block of whole shards."""
        from toolkit.scoring.results import shard

        mine = {id(e) for e in shard(self.files, rank, world)} | {id(e) for e in shard(self.shards, rank, world)}
        return InputPlan([e for e in self.entries if id(e) in mine])

    def keys(self) -> list[str]:
        """Every output key in order; lists the samples of each shard (headers and ids only)."""
        return [k for e in self.entries for k in ([e.path] if isinstance(e, ScoreInput) else e.keys())]


def plan_inputs(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    video: bool = False,
    image_column: str = "image",
    id_column: str | None = None,
) -> InputPlan:
    """Expand files, folders, manifests and patterns into file inputs (deduplicated, as
    :func:`collect_inputs` lists them) and shards (each once), in the order given.

    ``image_column`` and ``id_column`` name the columns of Parquet and Arrow shards (see
    :mod:`toolkit.scoring.sources`). The first table shard is checked at once, so a wrong column
    name stops the run here rather than in every shard.
    """
    from toolkit.scoring.sources import ShardSource, dataset_files, shard_format

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise InputError("no inputs given: pass image/video files, folders, CSV/JSON manifests or shards")
    entries: list[ScoreInput | ShardSource] = []
    for raw in _expand_patterns(inputs):
        p = Path(raw)
        arrow = dataset_files(p) if p.is_dir() else None
        fmt = shard_format(p) if p.is_file() else None
        if arrow is not None or fmt is not None:
            if video:
                raise InputError(f"{raw}: a shard of images; --video takes video files and folders of frames")
            files = [(str(f), "arrow") for f in arrow] if arrow is not None else [(str(raw), fmt)]
            entries.extend(ShardSource(f, kind, image_column, id_column) for f, kind in files)  # type: ignore[arg-type]
        elif p.is_dir():
            items = _expand_folder(p, video)
            if not items:
                what = "video files or frame folders" if video else "image files"
                log.warning("%s: folder holds no %s", p, what)
            entries.extend(items)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            entries.extend(read_manifest(p, video))
        else:
            entries.append(_single_input(str(raw), video))
    plan = InputPlan(_dedupe(entries))
    first_table = next((s for s in plan.shards if s.format != "tar"), None)
    if first_table is not None:
        first_table.check()
    return plan


def _expand_patterns(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Inputs with each pattern that names no file replaced by its matches, in natural order."""
    out: list[str] = []
    for raw in inputs:
        text = str(raw)
        matches = glob.glob(text, recursive=True) if any(c in text for c in "*?[") else []
        if matches and not Path(text).exists():
            out.extend(sorted(matches, key=natural_key))
        else:
            out.append(text)  # a file, or a pattern matching nothing: a "file not found" row as ever
    return out


def _single_input(path: str, video: bool, gt_score: float | None = None) -> ScoreInput:
    kind: InputKind = "video" if video else "image"
    p = Path(path)
    error = None
    if not p.exists():
        error = f"{path}: file not found"
    elif video:
        if p.is_file() and is_image_path(p):
            error = f"{path}: an image file, not a video (pass a video file or a folder of frames)"
    elif p.is_dir():
        error = f"{path}: a folder, not an image file"
    elif is_video_path(p):
        error = f"{path}: a video file; score videos with video=True (--video)"
    return ScoreInput(path, kind, None, gt_score, error)


def _walk_sorted(folder: Path) -> Iterable[tuple[Path, list[str]]]:
    """``os.walk`` in natural order, hidden entries skipped; yields (folder, file names)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        yield Path(root), sorted((f for f in files if not f.startswith(".")), key=natural_key)


def _expand_folder(folder: Path, video: bool) -> list[ScoreInput]:
    items: list[ScoreInput] = []
    for root, files in _walk_sorted(folder):
        if video:
            if any(is_image_path(f) for f in files):
                items.append(ScoreInput(str(root), "video"))
            items.extend(ScoreInput(str(root / f), "video") for f in files if is_video_path(f))
        else:
            items.extend(ScoreInput(str(root / f), "image") for f in files if is_image_path(f))
    return items


# --------------------------------------------------------------------------- manifests


def read_manifest(path: str | Path, video: bool = False) -> list[ScoreInput]:
    """Inputs listed in a CSV, JSON (list of records) or JSON Lines manifest."""
    path = Path(path)
    table = _read_table(path)
    column = next((c for c in PATH_COLUMNS if c in table.columns), None)
    if column is None:
        raise InputError(
            f"{path}: no path column; expected one of {', '.join(PATH_COLUMNS)},"
            f" found {', '.join(map(str, table.columns)) or 'none'}"
        )
    gt = _parse_gt(path, table["gt_score"]) if "gt_score" in table.columns else None
    base = path.parent
    items: list[ScoreInput] = []
    for row, value in enumerate(table[column].tolist()):
        score = None if gt is None or pd.isna(gt[row]) else float(gt[row])
        if isinstance(value, (list, tuple)):
            frames = tuple(_resolve(base, v, path, row, column) for v in value)
            if not frames:
                raise InputError(f"{path}: row {row}: empty frame list in column {column!r}")
            missing = next((f for f in frames if not Path(f).is_file()), None)
            error = f"{missing}: file not found" if missing else None
            if not video:
                error = f"row {row} of {path} lists frames (a video); score videos with video=True (--video)"
            items.append(ScoreInput(";".join(frames), "video", frames, score, error))
        else:
            items.append(_single_input(_resolve(base, value, path, row, column), video, score))
    return items


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Strings everywhere: paths such as "NA" or "001.png" must survive as written.
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix == ".jsonl":
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            records = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read manifest ({exc})") from None
    if isinstance(records, dict):
        # A column-oriented object ({"image": [...], "gt_score": [...]}) is accepted too.
        records = pd.DataFrame(records).to_dict("records") if _is_columns(records) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path}: a JSON manifest must be a list of objects (one per input)")
    return pd.DataFrame.from_records(records)


def _is_columns(obj: dict[str, Any]) -> bool:
    lengths = {len(v) for v in obj.values() if isinstance(v, list)}
    return len(lengths) == 1 and all(isinstance(v, list) for v in obj.values())


def _parse_gt(path: Path, column: pd.Series) -> pd.Series:
    """``gt_score`` as floats; numbers and numeric strings both count, blanks are missing."""
    text = column.astype("string").str.strip()
    blank = column.isna() | (text == "")
    values = pd.to_numeric(text.where(~blank), errors="coerce")
    bad = values.isna() & ~blank
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(f"{path}: row {row}: gt_score {column.iloc[row]!r} is not a number")
    return values.astype(float).reset_index(drop=True)


def _resolve(base: Path, value: Any, manifest: Path, row: int, column: str) -> str:
    text = id_text(value)  # stripped as every table reader strips ids; JSON numbers as decimal text
    if text is None:
        raise InputError(f"{manifest}: row {row}: empty {column!r}")
    p = Path(text)
    return str(p if p.is_absolute() else base / p)


def _dedupe(items: list[Any]) -> list[Any]:
    """Each path once (a file, or a shard given twice), the first occurrence kept."""
    seen: set[str] = set()
    out = []
    for item in items:
        if item.path in seen:
            continue
        seen.add(item.path)
        out.append(item)
    if len(out) < len(items):
        log.warning("%d duplicate input(s) dropped; each path is scored once", len(items) - len(out))
    return out
