"""Reading score files and ground truth, and lining them up item by item.

A score file is the CSV written by ``qalign score`` (``path``, ``score``, the level
probabilities, ``entropy``, ``error`` and, when its input manifest had one, ``gt_score``); any
table with a path column and a score column works. Ground truth is any table
:func:`toolkit.convert.load_labels` reads: MOS per item, vote counts, raw votes, or a Q-Align
JSON file (``image``/``img_path`` and ``gt_score``, numbers or strings).

Paths are matched exactly first, then after normalising separators and ``./``, then by file
name when file names are unique on both sides (score files often hold absolute paths, ground
truth relative ones).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from toolkit.convert.labels import numeric_column, text_column
from toolkit.convert.readers import LoadOptions, load_labels, read_rating_table, resolve_column
from toolkit.errors import InputError
from toolkit.io import csv_unescape_value
from toolkit.scoring.provenance import record_path

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass
class ScoreSet:
    """One named set of predictions: ``frame`` has ``path``, ``score`` and maybe ``gt_score``."""

    name: str
    frame: pd.DataFrame
    source: str
    skipped: int = 0  # rows with an error or no score


@dataclass
class AlignedScores:
    """Predictions of every set and the MOS on the items they all share, in one order."""

    items: list[str]
    mos: np.ndarray
    predictions: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)


def read_scores(
    path: str | os.PathLike[str], name: str | None = None, score_col: str | None = None, path_col: str | None = None
) -> ScoreSet:
    """A score file; rows with a non-empty ``error`` or no score are skipped (and counted)."""
    source = str(path)
    frame = read_rating_table(path)
    pcol = resolve_column(frame, "path", path_col, source)
    scol = score_col or ("score" if "score" in frame.columns else None)
    if scol is None:
        raise InputError(f"{source}: no 'score' column; name the column to use")
    if scol not in frame.columns:
        raise InputError(f"{source}: no column named {scol!r}; columns are {list(frame.columns)}")
    keep = np.ones(len(frame), dtype=bool)
    if "error" in frame.columns:
        keep &= frame["error"].fillna("").astype(str).str.strip().to_numpy() == ""
    frame = frame.loc[keep].reset_index(drop=True)
    scores = numeric_column(frame, scol, source, required=False)
    has = np.isfinite(scores)
    paths = text_column(frame, pcol, source)
    if record_path(path).is_file():
        # Written by `qalign score`, which writes text formula-safe (a leading quote before =, +,
        # -, @ ...): undo it so the paths match the ground truth's. Other files are taken as they are.
        paths = paths.map(csv_unescape_value)
    paths = paths.to_numpy()
    out = pd.DataFrame({"path": paths[has], "score": scores[has]})
    gt = next((c for c in frame.columns if c.lower() == "gt_score"), None)
    if gt is not None:
        out["gt_score"] = numeric_column(frame, gt, source, required=False)[has]
    skipped = int((~keep).sum() + (~has).sum())
    dup = out["path"].duplicated()
    if dup.any():
        raise InputError(f"{source}: item {out['path'][dup].iloc[0]!r} is scored more than once")
    return ScoreSet(name or Path(path).stem, out, source, skipped)


def read_ground_truth(path: str | os.PathLike[str], **kwargs: Unpack[LoadOptions]) -> pd.DataFrame:
    """``path`` and ``mos`` per item from any table :func:`load_labels` reads."""
    table = load_labels(path, **kwargs)
    frame = table.frame
    return pd.DataFrame({"path": frame["path"].map(str).to_numpy(), "mos": frame["mos"].to_numpy(dtype=float)})


def _normalise(paths: pd.Series) -> pd.Series:
    return paths.map(lambda p: posixpath.normpath(str(p).replace("\\", "/")))


def match_paths(keys: pd.Series, truth: pd.Series) -> pd.Series:
    """For each of ``keys``, the matching entry of ``truth`` (or NaN).

    Exact match first, then after normalising separators and ``./``, then by file name where
    file names are unique on both sides.
    """
    exact = pd.Series(truth.to_numpy(), index=truth.to_numpy())
    found = keys.map(exact)
    if found.notna().all():
        return found
    norm_truth = _normalise(truth)
    by_norm = pd.Series(truth.to_numpy(), index=norm_truth.to_numpy())
    by_norm = by_norm[~by_norm.index.duplicated(keep=False)]
    found = found.fillna(_normalise(keys).map(by_norm))
    if found.notna().all():
        return found
    base_truth = norm_truth.map(posixpath.basename)
    by_base = pd.Series(truth.to_numpy(), index=base_truth.to_numpy())
    by_base = by_base[~by_base.index.duplicated(keep=False)]
    base_keys = _normalise(keys).map(posixpath.basename)
    if base_keys.duplicated().any():
        return found
    return found.fillna(base_keys.map(by_base))


def align(sets: list[ScoreSet], truth: pd.DataFrame | None = None) -> AlignedScores:
    """Predictions and MOS on the items present in every set and in the ground truth.

    Without ``truth``, the ``gt_score`` columns of the score files are the ground truth (they
    must agree where two files score the same item).
    """
    if not sets:
        raise InputError("no score files given")
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise InputError(f"prediction sets need distinct names, got {names}")
    notes: list[str] = []
    if truth is None:
        parts = [s.frame[["path", "gt_score"]] for s in sets if "gt_score" in s.frame.columns]
        if not parts:
            raise InputError("no ground truth: give a MOS table, or score files with a gt_score column")
        gt = pd.concat(parts).dropna(subset=["gt_score"])
        spread = gt.groupby("path")["gt_score"].agg(lambda v: float(np.ptp(v)))
        if (spread > 1e-9).any():
            raise InputError(f"the score files disagree on gt_score of {spread[spread > 1e-9].index[0]!r}")
        truth = gt.groupby("path", sort=False)["gt_score"].first().rename("mos").reset_index()
    truth = truth.reset_index(drop=True)
    mos_of = pd.Series(truth["mos"].to_numpy(dtype=float), index=truth["path"].to_numpy())
    common: set[str] | None = None
    matched: dict[str, pd.Series] = {}
    for s in sets:
        key = match_paths(s.frame["path"], truth["path"])
        scores = pd.Series(s.frame["score"].to_numpy(dtype=float), index=s.frame["path"].to_numpy())
        ok = key.notna().to_numpy()
        series = pd.Series(scores.to_numpy()[ok], index=key.to_numpy()[ok])
        if series.index.duplicated().any():
            raise InputError(
                f"{s.source}: two scored items match the same ground-truth item"
                f" {series.index[series.index.duplicated()][0]!r}"
            )
        matched[s.name] = series
        missing = int((~ok).sum())
        if missing:
            notes.append(f"{s.name}: {missing} scored item(s) have no ground truth")
        if s.skipped:
            notes.append(f"{s.name}: {s.skipped} row(s) skipped (error or no score)")
        common = set(series.index) if common is None else common & set(series.index)
    order = [p for p in truth["path"] if p in (common or set())]
    if len(order) < 3:
        raise InputError(
            f"only {len(order)} item(s) are in every score file and the ground truth; check that the paths match"
            f" (e.g. {sets[0].frame['path'].iloc[0]!r} vs {truth['path'].iloc[0]!r})"
        )
    for s in sets:
        extra = len(matched[s.name]) - len(order)
        if extra:
            notes.append(f"{s.name}: {extra} item(s) not scored in every set are left out")
    unrated = len(truth) - len(order)
    if unrated:
        notes.append(f"{unrated} ground-truth item(s) without a score in every set are left out")
    return AlignedScores(
        items=order,
        mos=mos_of.loc[order].to_numpy(dtype=float),
        predictions={name: series.loc[order].to_numpy(dtype=float) for name, series in matched.items()},
        notes=notes,
    )


def load_evaluation_inputs(
    score_files: list[str | os.PathLike[str]],
    ground_truth: str | os.PathLike[str] | None = None,
    names: list[str] | None = None,
    score_col: str | None = None,
    gt_options: Mapping[str, object] | None = None,
) -> AlignedScores:
    """Read score files (named by ``names`` or their file stems) and align them with the ground truth."""
    if names is not None and len(names) != len(score_files):
        raise InputError(f"{len(names)} name(s) for {len(score_files)} score file(s)")
    sets = [read_scores(f, names[i] if names else None, score_col) for i, f in enumerate(score_files)]
    # gt_options are load_labels' keyword arguments by contract; a plain mapping cannot say which
    # keys it holds, and load_labels rejects any other keyword as before.
    options = cast("LoadOptions", dict(gt_options or {}))
    truth = read_ground_truth(ground_truth, **options) if ground_truth is not None else None
    return align(sets, truth)
