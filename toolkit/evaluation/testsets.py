"""Test sets for evaluating models: which files to score, their MOS, and what raters answered.

A test set is any rating table :func:`toolkit.convert.load_labels` reads: a Q-Align JSON test
file (``image``/``img_path`` and ``gt_score``, numbers or strings), a MOS table, a scoring
manifest with ``gt_score``, a vote histogram table (``c1..c5``) or a long vote table. Relative
paths are resolved against the media folder given, or else the test file's own folder (as
scoring manifests are).

Raw votes for the test items (a vote file, or a study in the store) add two things: the
split-half noise ceiling, and the observed level distribution of each item for calibration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.convert.readers import load_labels
from toolkit.errors import InputError
from toolkit.evaluation.inputs import match_paths
from toolkit.evaluation.metrics import MetricResult
from toolkit.io import text_ids
from toolkit.qalign import COUNT_COLUMNS

ONEHOT_SOURCE = "MOS level (one-hot)"
HISTOGRAM_SOURCE = "vote histogram"


@dataclass
class TestSet:
    """One test set: ``items`` as written in the file, ``files`` as given to the scorer."""

    name: str
    source: str
    items: list[str]
    files: list[str]
    mos: np.ndarray
    levels: np.ndarray  # 1..5 per item, by the table's MOS-to-level rule
    histogram: np.ndarray | None  # (n, 5) observed vote shares, LEVELS order; None without votes
    video: bool = False
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


def load_test_set(
    path: str | os.PathLike[str],
    *,
    images: str | os.PathLike[str] | None = None,
    name: str | None = None,
    video: bool = False,
    columns: Mapping[str, Any] | None = None,
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
) -> TestSet:
    """Read a test set; see the module docstring for the accepted layouts."""
    source = Path(path)
    table = load_labels(source, columns=columns, low=low, high=high, dmos=dmos)
    frame = table.frame
    root = Path(images) if images is not None else source.parent
    items = [str(p) for p in frame["path"]]
    # Normalised as the scorer writes folder inputs back (no "./", no trailing separator).
    files = [str(Path(p)) if os.path.isabs(p) else str(root / p) for p in items]
    histogram = table.level_probs if table.soft == "histogram" else None
    return TestSet(
        name=name or source.stem,
        source=str(source),
        items=items,
        files=files,
        mos=frame["mos"].to_numpy(dtype=float),
        levels=frame["level"].to_numpy(dtype=int),
        histogram=histogram,
        video=video,
    )


@dataclass
class TestVotes:
    """Raw votes matched to a test set's items."""

    ceiling: MetricResult | None  # split-half SRCC, Spearman-Brown corrected
    ceiling_plcc: MetricResult | None
    histogram: np.ndarray  # (items, 5) vote shares, LEVELS order; NaN rows for items without votes
    n_votes: int
    n_raters: int
    n_items: int  # test items with at least one vote
    notes: list[str] = field(default_factory=list)


def _column(frame: pd.DataFrame, wanted: str, aliases: Sequence[str], source: str) -> str:
    lower = {str(c).lower(): c for c in frame.columns}
    for name in (wanted, *aliases):
        if name.lower() in lower:
            return lower[name.lower()]
    raise InputError(f"{source}: no {wanted!r} column; columns are {list(frame.columns)}")


def match_votes(
    votes: pd.DataFrame,
    items: Sequence[str],
    *,
    n_splits: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
    source: str = "votes",
) -> TestVotes:
    """Votes (long table: item, rater, vote) on the given items; the noise ceiling over them.

    Vote items are matched to test items by path (exactly, then normalised, then by unique
    file name). Rows with a ``role`` other than ``test`` (the store's gold and training items)
    are left out.
    """
    from toolkit.analysis import prepare_votes, split_half_agreement
    from toolkit.levels import vote_stats

    item_col = _column(votes, "item", ("path", "image", "img_path"), source)
    rater_col = _column(votes, "rater", ("rater_id", "subject", "worker_id"), source)
    vote_col = _column(votes, "vote", ("rating", "level"), source)
    frame = votes
    if "role" in frame.columns:
        frame = frame[frame["role"].astype(str) == "test"]
    # Ids as text, as every table reader makes them: item "001" is not item "1".
    keys = text_ids(frame[item_col], f"column {item_col!r}", source)
    raters = text_ids(frame[rater_col], f"column {rater_col!r}", source)
    unique = pd.Series(pd.unique(keys))
    found = match_paths(unique, pd.Series(list(items), dtype=object))
    to_item = pd.Series(found.to_numpy(), index=unique.to_numpy())
    matched = keys.map(to_item)
    keep = matched.notna().to_numpy()
    notes: list[str] = []
    n_items = len(items)
    histogram = np.full((n_items, 5), np.nan)
    if not keep.any():
        notes.append(
            f"{source}: no vote matches a test item (e.g. {unique.iloc[0]!r} vs {items[0]!r})"
            if len(unique) and n_items
            else f"{source}: no votes"
        )
        return TestVotes(None, None, histogram, 0, 0, 0, notes)
    table = pd.DataFrame(
        {
            "item": matched.to_numpy()[keep],
            "rater": raters.to_numpy()[keep],
            "vote": frame[vote_col].to_numpy()[keep],
        }
    ).reset_index(drop=True)
    stats = vote_stats(table.assign(vote=pd.to_numeric(table["vote"], errors="coerce")), item="item", vote="vote")
    counts = stats[list(COUNT_COLUMNS)].to_numpy(dtype=float)
    position = pd.Series(np.arange(n_items), index=list(items))
    rows = position.loc[stats.index].to_numpy()
    histogram[rows] = counts / counts.sum(axis=1, keepdims=True)
    unmatched = int(len(unique) - found.notna().sum())
    if unmatched:
        notes.append(f"{source}: votes on {unmatched} item(s) outside the test set left out")
    ceiling = ceiling_plcc = None
    try:
        coded = prepare_votes(table, source=source)
        agreement = split_half_agreement(coded, n_splits=n_splits, confidence=confidence, seed=seed)
        method = f"split-half over {agreement.n_items} items, Spearman-Brown, {agreement.n_splits} splits"
        ceiling = MetricResult(
            "split_half_srcc", agreement.srcc, agreement.srcc_ci[0], agreement.srcc_ci[1], method=method
        )
        ceiling_plcc = MetricResult(
            "split_half_plcc", agreement.plcc, agreement.plcc_ci[0], agreement.plcc_ci[1], method=method
        )
    except InputError as exc:
        notes.append(f"noise ceiling not computed: {exc}")
    return TestVotes(
        ceiling, ceiling_plcc, histogram, int(len(table)), int(table["rater"].nunique()), int(len(stats)), notes
    )
