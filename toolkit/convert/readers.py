"""Read rating tables from files (CSV, TSV, Parquet, JSON) into a :class:`LabelTable`.

Three layouts are recognised by their columns:

* ``mos``: one row per item with a path and a MOS (optionally SD, vote count, group, split);
* ``counts``: a vote histogram per item, ``c1`` (bad) .. ``c5`` (excellent), as counts or
  fractions, optionally ``c_total`` and a published MOS (the KonIQ-10k metadata layout);
* ``votes``: a long table, one row per vote: item, rater, vote (1..5).

Column names are matched case-insensitively against the aliases below unless given explicitly.
Errors name the file, the 1-based line of the record in the file (row, for Parquet) and the
offending value. Line numbers assume one record per physical line (no line breaks inside
quoted fields).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypedDict, overload

import numpy as np
import pandas as pd

from toolkit.convert.labels import (
    KONIQ_COUNT_COLUMNS,
    LINE_COLUMN,
    LabelTable,
    SoftLabelMode,
    TableKind,
    labels_from_counts,
    labels_from_mos,
    labels_from_votes,
)
from toolkit.errors import InputError
from toolkit.io import long_first_record
from toolkit.levels import MosRule

ALIASES: dict[str, tuple[str, ...]] = {
    "path": (
        "path",
        "image",
        "img_path",
        "image_name",
        "image_path",
        "img",
        "img_name",
        "filename",
        "file_name",
        "file",
        "name",
        "video",
        "video_name",
        "video_path",
        "item",
    ),
    "mos": ("mos", "gt_score", "score", "mos_score", "mean_opinion_score", "quality"),
    "sd": ("sd", "std", "mos_std", "std_dev", "stdev", "sd_mos"),
    "n": ("n", "c_total", "num_votes", "n_votes", "num_ratings", "votes", "count"),
    "group": ("group", "content_group", "content", "reference", "ref_img", "source_video"),
    "split": ("split", "set", "subset"),
    "item": ("item", "path", "image", "img_path", "image_name", "video", "video_name", "asset"),
    "rater": ("rater", "rater_id", "subject", "subject_id", "worker", "worker_id", "observer", "annotator", "user"),
    "vote": ("vote", "rating", "opinion", "score"),
    "total": ("c_total", "total", "n", "num_votes", "n_votes"),
}
"""Accepted column names per role, in order of preference."""


@dataclass
class ColumnMap:
    """Explicit column names; ``None`` means: find one of the aliases."""

    path: str | None = None
    mos: str | None = None
    sd: str | None = None
    n: str | None = None
    group: str | None = None
    split: str | None = None
    item: str | None = None
    rater: str | None = None
    vote: str | None = None
    total: str | None = None
    counts: tuple[str, str, str, str, str] | None = None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ColumnMap:
        mapping = dict(mapping or {})
        known = {f.name for f in fields(cls)}
        unknown = set(mapping) - known
        if unknown:
            raise InputError(f"unknown column role(s) {sorted(unknown)}; known roles are {sorted(known)}")
        return cls(**mapping)


# --------------------------------------------------------------------------- raw tables


def read_rating_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/JSON rating table for checking, with a ``_line`` column.

    Unlike :func:`toolkit.io.read_table` (pandas' own types, no line numbers), CSV cells stay
    strings, so each row can be checked and reported with the line it came from.

    Blank lines are skipped; ``_line`` is the 1-based line in the file (header = line 1) for
    text tables, the 1-based record for JSON, and absent for Parquet (rows are then numbered).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file not found: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for broken files
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    if suffix in (".json", ".jsonl"):
        return _read_json(path)
    sep = "\t" if suffix in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig"
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if match:
            expected, line, saw = match.groups()
            raise InputError(
                f"{path} line {line}: malformed row, expected {expected} fields and found {saw}"
                f" ({_line_text(path, int(line))!r})"
            ) from None
        raise InputError(f"{path}: malformed CSV ({exc})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from None
    long_row = long_first_record(path, len(frame.columns), sep, "utf-8-sig")
    if long_row is not None:
        line, found = long_row
        raise InputError(
            f"{path} line {line}: malformed row, expected {len(frame.columns)} fields and found {found}"
            f" ({_line_text(path, line)!r})"
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    frame[LINE_COLUMN] = np.arange(len(frame)) + 2
    blank = frame.drop(columns=LINE_COLUMN).replace("", np.nan).isna().all(axis=1)
    return frame.loc[~blank].reset_index(drop=True)


def _line_text(path: Path, line: int, limit: int = 120) -> str:
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        for i, text in enumerate(fh, start=1):
            if i == line:
                text = text.rstrip("\n")
                return text if len(text) <= limit else text[:limit] + "..."
    return ""


def _read_json(path: Path) -> pd.DataFrame:
    """Records from a JSON list (Q-Align conversation files included) or JSON lines."""
    try:
        if path.suffix.lower() == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                records = [json.loads(line) for line in fh if line.strip()]
        else:
            with open(path, encoding="utf-8") as fh:
                records = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from None
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise InputError(f"{path}: expected a list of objects")
    frame = pd.DataFrame.from_records(records)
    for column in ("image", "img_path", "video"):
        if column in frame.columns:
            # A video stored as frames is a list of paths; its folder stands for the item.
            frame[column] = frame[column].map(_frames_key)
    frame[LINE_COLUMN] = np.arange(len(frame)) + 1
    return frame


def _frames_key(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return posixpath.commonpath(value) if len(value) > 1 else value[0]
    return value


# --------------------------------------------------------------------------- columns


class LoadOptions(TypedDict, total=False):
    """The keyword arguments of :func:`load_labels`, for callers that pass them on."""

    kind: TableKind | None
    columns: ColumnMap | Mapping[str, Any] | None
    rule: MosRule
    low: float | None
    high: float | None
    dmos: bool
    soft: SoftLabelMode
    group_by: str | None
    source_name: str | None


class _LabelOptions(TypedDict):
    """The keyword arguments every ``labels_from_*`` reader shares."""

    rule: MosRule
    low: float | None
    high: float | None
    dmos: bool
    soft: SoftLabelMode
    source: str
    group: str | None
    split: str | None


@overload
def resolve_column(
    frame: pd.DataFrame, role: str, explicit: str | None, source: str, required: Literal[True] = True
) -> str: ...


@overload
def resolve_column(frame: pd.DataFrame, role: str, explicit: str | None, source: str, required: bool) -> str | None: ...


def resolve_column(
    frame: pd.DataFrame, role: str, explicit: str | None, source: str, required: bool = True
) -> str | None:
    """The column playing ``role``: the explicit name (must exist) or the first alias present."""
    columns = [c for c in frame.columns if c != LINE_COLUMN]
    if explicit is not None:
        if explicit in columns:
            return explicit
        lower = {c.lower(): c for c in columns}
        if explicit.lower() in lower:
            return lower[explicit.lower()]
        raise InputError(f"{source}: no column named {explicit!r} (for {role}); columns are {columns}")
    lower = {c.lower(): c for c in columns}
    for alias in ALIASES.get(role, (role,)):
        if alias in lower:
            return lower[alias]
    if required:
        raise InputError(
            f"{source}: missing column for {role}; looked for {', '.join(ALIASES.get(role, (role,)))};"
            f" columns are {columns}"
        )
    return None


def detect_kind(frame: pd.DataFrame, columns: ColumnMap | None = None) -> TableKind:
    """``votes`` if there is a rater and a vote column, ``counts`` if c1..c5, else ``mos``."""
    columns = columns or ColumnMap()
    names = {c.lower() for c in frame.columns}
    has_rater = (columns.rater or "").lower() in names or any(a in names for a in ALIASES["rater"])
    has_vote = (columns.vote or "").lower() in names or any(a in names for a in ALIASES["vote"])
    if has_rater and has_vote:
        return "votes"
    counts = columns.counts or KONIQ_COUNT_COLUMNS
    if all(c.lower() in names for c in counts):
        return "counts"
    return "mos"


# --------------------------------------------------------------------------- entry point


def load_labels(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    kind: TableKind | None = None,
    columns: ColumnMap | Mapping[str, Any] | None = None,
    rule: MosRule = "equal",
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
    soft: SoftLabelMode = "auto",
    group_by: str | None = None,
    source_name: str | None = None,
) -> LabelTable:
    """Read any supported table (a file or a DataFrame) into a :class:`LabelTable`.

    ``kind`` overrides the detection by columns. ``group_by`` names the content-group column
    (no group is split across train and test); by default a column called ``group``,
    ``content_group`` or ``content`` is used when present, else each item is its own group.
    A long vote DataFrame from a study database goes through here unchanged.
    """
    cols = columns if isinstance(columns, ColumnMap) else ColumnMap.from_mapping(columns)
    if group_by is not None:
        cols.group = group_by
    if isinstance(source, pd.DataFrame):
        frame, name = source, source_name or "<DataFrame>"
    else:
        frame, name = read_rating_table(source), source_name or str(source)
    if len(frame) == 0:
        raise InputError(f"{name}: no rows")
    kind = kind or detect_kind(frame, cols)
    group = resolve_column(frame, "group", cols.group, name, required=False)
    split = resolve_column(frame, "split", cols.split, name, required=False)
    common = _LabelOptions(rule=rule, low=low, high=high, dmos=dmos, soft=soft, source=name, group=group, split=split)

    if kind == "votes":
        item = resolve_column(frame, "item", cols.item or cols.path, name)
        rater = resolve_column(frame, "rater", cols.rater, name, required=False)
        vote = resolve_column(frame, "vote", cols.vote, name)
        return labels_from_votes(frame, item=item, rater=rater, vote=vote, **common)
    path = resolve_column(frame, "path", cols.path, name)
    if kind == "counts":
        counts = tuple(resolve_column(frame, c, c, name) for c in (cols.counts or KONIQ_COUNT_COLUMNS))
        total = resolve_column(frame, "total", cols.total, name, required=False)
        mos = resolve_column(frame, "mos", cols.mos, name, required=False)
        sd = resolve_column(frame, "sd", cols.sd, name, required=False) if mos else None
        return labels_from_counts(frame, path=path, counts=counts, total=total, mos=mos, sd=sd, **common)
    if kind == "mos":
        mos = resolve_column(frame, "mos", cols.mos, name)
        sd = resolve_column(frame, "sd", cols.sd, name, required=False)
        n = resolve_column(frame, "n", cols.n, name, required=False)
        return labels_from_mos(frame, path=path, mos=mos, sd=sd, n=n, **common)
    raise InputError(f"unknown table kind {kind!r}; use mos, counts or votes")
