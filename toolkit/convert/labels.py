"""The normalised label table every input format is turned into.

A :class:`LabelTable` holds one row per rated item with its MOS, spread, number of votes, the
Q-Align level, a five-level probability distribution (a soft label), the content group used for
splitting and the split name. The builders here work on in-memory DataFrames, so a table read
from a file, a DataFrame built by hand and the long vote table of a study database all take the
same path. File reading lives in :mod:`toolkit.convert.readers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from toolkit.errors import InputError
from toolkit.io import id_text
from toolkit.levels import LevelScale, MosRule, level_words, soft_label, vote_stats
from toolkit.qalign import COUNT_COLUMNS, PROB_COLUMNS

SoftLabelMode = Literal["auto", "histogram", "gaussian", "onehot"]
TableKind = Literal["mos", "counts", "votes"]

BASE_COLUMNS: tuple[str, ...] = ("path", "mos", "sd", "n", "level", "group", "split")

KONIQ_COUNT_COLUMNS: tuple[str, ...] = ("c1", "c2", "c3", "c4", "c5")
"""Default vote-count columns of a histogram table: KonIQ-10k's, bad first (an input format; the
toolkit's own ``toolkit.qalign.COUNT_COLUMNS`` run best first)."""

LINE_COLUMN = "_line"
"""Optional column with the 1-based line (or row) of each record in its source file, for messages."""

DEFAULT_SPLIT = "all"


@dataclass
class LabelTable:
    """Normalised labels, one row per item.

    ``frame`` columns: ``path`` (str, or a list of frame paths for a video stored as images),
    ``mos`` (on the source's own scale, e.g. 0-100 for KonIQ), ``sd`` (in the same units where
    the source gives it, NaN when unknown), ``n`` (votes per item, NaN when unknown), ``level``
    (int 1..5, 5 = excellent), ``p_excellent .. p_bad`` (the level distribution, see
    :attr:`level_probs`), ``group`` (content group; no group may span two splits), ``split``.
    Readers may add ``vote_mean`` (the plain mean of the 1-5 votes) and keep ``_line``.

    ``scale`` holds the bounds (and direction) the levels were assigned with, ``rule`` the
    MOS-to-level rule, ``soft`` where the level distribution came from.
    """

    frame: pd.DataFrame
    scale: LevelScale
    rule: MosRule = "equal"
    kind: TableKind = "mos"
    soft: str = "onehot"
    source: str = "<DataFrame>"
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def level_probs(self) -> np.ndarray:
        """Level distributions, shape (n, 5), ``LEVELS`` order; rows sum to 1."""
        return self.frame[list(PROB_COLUMNS)].to_numpy(dtype=float)

    @property
    def level_words(self) -> list[str]:
        """The level of each item as a word (``'excellent'`` .. ``'bad'``)."""
        return level_words(self.frame["level"].to_numpy())

    @property
    def split_names(self) -> list[str]:
        """Split names in order of first appearance."""
        return list(pd.unique(self.frame["split"]))

    def subset(self, mask: np.ndarray | pd.Series) -> LabelTable:
        """The rows where ``mask`` is true (a new table; the scale is kept)."""
        return replace(self, frame=self.frame.loc[np.asarray(mask, dtype=bool)].reset_index(drop=True))

    def by_split(self) -> dict[str, LabelTable]:
        """One table per split name."""
        return {name: self.subset(self.frame["split"].to_numpy() == name) for name in self.split_names}

    def with_frame(self, frame: pd.DataFrame) -> LabelTable:
        return replace(self, frame=frame.reset_index(drop=True))


# --------------------------------------------------------------------------- messages


def position_of(frame: pd.DataFrame, position: int, source: str) -> str:
    """'line 17' (text files), 'record 17' (JSON) or 'row 17' for the record at ``position`` (0-based)."""
    if LINE_COLUMN in frame.columns:
        line = frame[LINE_COLUMN].iloc[position]
        if pd.notna(line):
            unit = "line" if source.lower().endswith((".csv", ".tsv", ".tab", ".txt")) else "record"
            return f"{unit} {int(line)}"
    return f"row {position + 1}"


def where(frame: pd.DataFrame, position: int, source: str) -> str:
    """'koniq.csv line 17' for the record at ``position`` (0-based) of ``frame``."""
    return f"{source} {position_of(frame, position, source)}"


def shown(value: object) -> str:
    """A cell value as written in messages: text quoted, numbers plain (no numpy reprs)."""
    if isinstance(value, np.generic):
        value = value.item()
    return f"{value:g}" if isinstance(value, float) else repr(value)


def numeric_column(frame: pd.DataFrame, column: str, source: str, required: bool = True) -> np.ndarray:
    """A column as floats; raise naming the first non-numeric or (if required) missing value."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, copy=True)
    text = raw.astype("string").str.strip()
    present = raw.notna().to_numpy() & (text.fillna("") != "").to_numpy()
    bad = present & ~np.isfinite(values)
    # A Parquet or JSON column of true/false is not a number (pandas would make it 1 and 0).
    bad |= raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where(frame, i, source)}: column '{column}' has non-numeric value {shown(raw.iloc[i])}")
    if required and (~present).any():
        i = int(np.flatnonzero(~present)[0])
        raise InputError(f"{where(frame, i, source)}: column '{column}' is empty")
    values[~present] = np.nan
    return values


def text_column(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A required column of non-empty strings (lists, for frame-list videos, pass through)."""
    raw = frame[column]
    odd = raw.map(lambda v: isinstance(v, (list, tuple)) and not (v and all(isinstance(p, str) for p in v)))
    if odd.any():
        i = int(np.flatnonzero(odd.to_numpy(dtype=bool))[0])
        raise InputError(
            f"{where(frame, i, source)}: column '{column}' holds {shown(raw.iloc[i])}, not a path or a list of paths"
        )
    # Ids are text the same way every reader makes them (toolkit.io.id_text): a Parquet or JSON
    # number 1 is "1", never "1.0", so it matches the CSV cell "1" and not "001".
    values = raw.map(lambda v: list(v) if isinstance(v, (list, tuple)) else id_text(v))
    empty = values.isna().to_numpy()
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(f"{where(frame, i, source)}: column '{column}' is empty")
    return values


def _check_unique_paths(frame: pd.DataFrame, source: str) -> None:
    keys = frame["path"].map(lambda v: "\x00".join(v) if isinstance(v, list) else v)
    dup = keys.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = keys.iloc[rows[0]]
        same = rows[(keys.iloc[rows] == first).to_numpy()]
        raise InputError(
            f"{source}: item {frame['path'].iloc[same[0]]!r} appears more than once"
            f" ({position_of(frame, int(same[0]), source)} and {position_of(frame, int(same[1]), source)});"
            f" {len(rows)} rows share a path in all. Merge repeated ratings into one row, or pass"
            " the raw votes as a long vote table"
        )


# --------------------------------------------------------------------------- scale and levels


def make_scale(
    mos: np.ndarray,
    frame: pd.DataFrame,
    source: str,
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
) -> LevelScale:
    """Bounds from the data (paper default) or explicit; values outside explicit bounds are errors."""
    if low is None and high is None and len(mos) and float(np.min(mos)) == float(np.max(mos)):
        raise InputError(
            f"{source}: every item has MOS {shown(float(mos[0]))}, so the data give no range to assign levels"
            " on; give the bounds of the scale (--low and --high)"
        )
    scale = LevelScale(
        float(np.min(mos)) if low is None else float(low),
        float(np.max(mos)) if high is None else float(high),
        higher_is_better=not dmos,
    )
    outside = (mos < scale.low) | (mos > scale.high)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(
            f"{where(frame, i, source)}: MOS {shown(mos[i])} is outside the declared bounds"
            f" [{scale.low:g}, {scale.high:g}] ({int(outside.sum())} value(s) outside in all)"
        )
    return scale


def level_distribution(
    levels: np.ndarray,
    mos: np.ndarray,
    sd: np.ndarray,
    scale: LevelScale,
    histogram: np.ndarray | None,
    mode: SoftLabelMode,
) -> tuple[np.ndarray, str]:
    """The (n, 5) level distribution and a word saying which kind it is.

    ``histogram`` (fractions in ``LEVELS`` order) exists only for vote data. ``gaussian`` is the
    DeQA-Score label: MOS and SD are mapped to the 1-5 scale with the same linear map as the
    levels (SD is taken to be in the MOS's units), then :func:`toolkit.levels.soft_label`; rows
    without an SD get the one-hot level.
    """
    onehot = np.zeros((len(levels), 5))
    onehot[np.arange(len(levels)), 5 - levels] = 1.0
    if mode == "auto":
        mode = "histogram" if histogram is not None else ("gaussian" if np.isfinite(sd).any() else "onehot")
    if mode == "onehot":
        return onehot, "onehot"
    if mode == "histogram":
        if histogram is None:
            raise InputError("histogram soft labels need vote counts or raw votes; this input has only MOS values")
        return histogram, "histogram"
    if mode == "gaussian":
        has_sd = np.isfinite(sd)
        if not has_sd.any():
            raise InputError("gaussian soft labels need an SD column; none was found")
        out = onehot.copy()
        mos15 = scale.rescale(mos[has_sd])
        sd15 = sd[has_sd] * 4.0 / (scale.high - scale.low)
        out[has_sd] = soft_label(mos15, sd15)
        return out, "gaussian"
    raise InputError(f"unknown soft-label mode {mode!r}; use auto, histogram, gaussian or onehot")


def _finish(
    frame: pd.DataFrame,
    mos: np.ndarray,
    sd: np.ndarray,
    n: np.ndarray,
    histogram: np.ndarray | None,
    *,
    kind: TableKind,
    source: str,
    rule: MosRule,
    low: float | None,
    high: float | None,
    dmos: bool,
    soft: SoftLabelMode,
    group: np.ndarray | None,
    split: np.ndarray | None,
    extra: dict[str, np.ndarray] | None = None,
) -> LabelTable:
    if rule not in ("equal", "floor"):
        raise InputError(f"unknown MOS-to-level rule {rule!r}; use 'equal' or 'floor'")
    if len(frame) == 0:
        raise InputError(f"{source}: no rows")
    scale = make_scale(mos, frame, source, low, high, dmos)
    levels = scale.to_levels(mos, rule)
    probs, soft_kind = level_distribution(levels, mos, sd, scale, histogram, soft)
    # An item without a content group is its own group; an item without a split is in the default one.
    path_keys = frame["path"].map(lambda v: "|".join(v) if isinstance(v, list) else str(v)).to_numpy(dtype=object)
    groups = path_keys if group is None else np.where(np.asarray(group, dtype=object) == "", path_keys, group)
    splits = np.full(len(frame), DEFAULT_SPLIT, dtype=object)
    if split is not None:
        splits = np.where(np.asarray(split, dtype=object) == "", DEFAULT_SPLIT, split)
    out = pd.DataFrame(
        {
            "path": frame["path"].to_numpy(),
            "mos": mos,
            "sd": sd,
            "n": n,
            "level": levels.astype(int),
            "group": groups.astype(object),
            "split": splits.astype(object),
        }
    )
    for j, name in enumerate(PROB_COLUMNS):
        out[name] = probs[:, j]
    for name, values in (extra or {}).items():
        out[name] = values
    if LINE_COLUMN in frame.columns:
        out[LINE_COLUMN] = frame[LINE_COLUMN].to_numpy()
    _check_unique_paths(out, source)
    return LabelTable(out, scale, rule, kind, soft_kind, source)


HASH_COLUMN = "sha256"
"""A per-item content hash carried through when the input has one (the study store records it)."""


def _hash_extra(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    if HASH_COLUMN not in frame.columns:
        return {}
    return {HASH_COLUMN: frame[HASH_COLUMN].astype("string").str.strip().fillna("").to_numpy(dtype=object)}


def _optional_text(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None:
        return None
    return frame[column].map(lambda v: id_text(v) or "").to_numpy(dtype=object)


# --------------------------------------------------------------------------- builders


def labels_from_mos(
    frame: pd.DataFrame,
    *,
    path: str = "path",
    mos: str = "mos",
    sd: str | None = None,
    n: str | None = None,
    group: str | None = None,
    split: str | None = None,
    rule: MosRule = "equal",
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
    soft: SoftLabelMode = "auto",
    source: str = "<DataFrame>",
) -> LabelTable:
    """Labels from a table of MOS values (one row per item; optional SD and vote count)."""
    frame = frame.reset_index(drop=True).copy()
    frame["path"] = text_column(frame, path, source)
    mos_v = numeric_column(frame, mos, source)
    sd_v = numeric_column(frame, sd, source, required=False) if sd else np.full(len(frame), np.nan)
    n_v = numeric_column(frame, n, source, required=False) if n else np.full(len(frame), np.nan)
    return _finish(
        frame,
        mos_v,
        sd_v,
        n_v,
        None,
        kind="mos",
        source=source,
        rule=rule,
        low=low,
        high=high,
        dmos=dmos,
        soft=soft,
        group=_optional_text(frame, group),
        split=_optional_text(frame, split),
        extra=_hash_extra(frame),
    )


def labels_from_counts(
    frame: pd.DataFrame,
    *,
    path: str = "path",
    counts: Sequence[str] = KONIQ_COUNT_COLUMNS,
    total: str | None = None,
    mos: str | None = None,
    sd: str | None = None,
    group: str | None = None,
    split: str | None = None,
    rule: MosRule = "equal",
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
    soft: SoftLabelMode = "auto",
    source: str = "<DataFrame>",
) -> LabelTable:
    """Labels from a vote histogram per item (KonIQ style: ``c1`` = bad .. ``c5`` = excellent).

    The histogram may hold counts or fractions; fractions are turned into counts with the
    ``total`` column when there is one. ``vote_mean`` is always the mean of the 1-5 votes. When a
    published ``mos`` column exists it is used as the MOS (so ``gt_score`` matches the data set's
    own numbers) with ``sd`` as given; otherwise MOS and SD are those of the votes.
    """
    frame = frame.reset_index(drop=True).copy()
    frame["path"] = text_column(frame, path, source)
    if len(counts) != 5:
        raise InputError(f"a vote histogram needs five columns (bad .. excellent), got {list(counts)}")
    hist = np.column_stack([numeric_column(frame, c, source) for c in counts])
    negative = (hist < 0).any(axis=1)
    if negative.any():
        i = int(np.flatnonzero(negative)[0])
        raise InputError(f"{where(frame, i, source)}: negative vote count in {list(counts)}: {hist[i].tolist()}")
    sums = hist.sum(axis=1)
    empty = sums <= 0
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(f"{where(frame, i, source)}: the item has no votes ({list(counts)} are all 0)")
    total_v = numeric_column(frame, total, source, required=False) if total else np.full(len(frame), np.nan)
    fractions = bool(np.allclose(sums, 1.0, atol=1e-3)) and not np.allclose(hist, np.round(hist))
    if fractions:
        frac = hist / sums[:, None]
        n_v = total_v
    else:
        frac = hist / sums[:, None]
        n_v = sums if not total else np.where(np.isfinite(total_v), total_v, sums)
        if total:
            off = np.isfinite(total_v) & (np.abs(total_v - sums) > 0.5)
            if off.any():
                i = int(np.flatnonzero(off)[0])
                raise InputError(
                    f"{where(frame, i, source)}: vote counts sum to {sums[i]:g} but '{total}' says {total_v[i]:g}"
                )
    values = np.arange(1, 6, dtype=float)
    vote_mean = frac @ values
    var_pop = np.clip(frac @ values**2 - vote_mean**2, 0, None)
    # Sample SD (ddof=1) where the number of votes is known, as for raw votes; population SD otherwise.
    vote_sd = np.where(np.isfinite(n_v) & (n_v >= 2), np.sqrt(var_pop * n_v / np.maximum(n_v - 1, 1)), np.sqrt(var_pop))
    if mos:
        mos_v = numeric_column(frame, mos, source)
        sd_v = numeric_column(frame, sd, source, required=False) if sd else np.full(len(frame), np.nan)
    else:
        mos_v, sd_v = vote_mean, vote_sd
    return _finish(
        frame,
        mos_v,
        sd_v,
        n_v,
        frac[:, ::-1],
        kind="counts",
        source=source,
        rule=rule,
        low=low,
        high=high,
        dmos=dmos,
        soft=soft,
        group=_optional_text(frame, group),
        split=_optional_text(frame, split),
        extra={"vote_mean": vote_mean, **_hash_extra(frame)},
    )


def labels_from_votes(
    votes: pd.DataFrame,
    *,
    item: str = "item",
    rater: str | None = "rater",
    vote: str = "vote",
    group: str | None = None,
    split: str | None = None,
    rule: MosRule = "equal",
    low: float | None = None,
    high: float | None = None,
    dmos: bool = False,
    soft: SoftLabelMode = "auto",
    source: str = "<DataFrame>",
) -> LabelTable:
    """Labels from a long vote table, one row per (item, rater, vote) with votes 1..5.

    MOS is the plain mean of the votes; subject-model scores (MLE, screening) belong to the
    analysis layer and can be passed in afterwards as a MOS table. ``group`` and ``split``, when
    given, must be constant within an item.
    """
    votes = votes.reset_index(drop=True).copy()
    votes["path"] = text_column(votes, item, source)
    listed = votes["path"].map(lambda v: isinstance(v, list)).to_numpy(dtype=bool)
    if listed.any():
        i = int(np.flatnonzero(listed)[0])
        raise InputError(f"{where(votes, i, source)}: column '{item}' holds a list; a vote names one item")
    values = numeric_column(votes, vote, source)
    invalid = ~np.isin(values, (1, 2, 3, 4, 5))
    if invalid.any():
        i = int(np.flatnonzero(invalid)[0])
        raise InputError(f"{where(votes, i, source)}: vote {shown(votes[vote].iloc[i])} is not an integer level 1-5")
    if rater and rater in votes.columns:
        votes[rater] = text_column(votes, rater, source)
        dup = votes.duplicated(subset=["path", rater], keep="first").to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise InputError(
                f"{where(votes, i, source)}: rater {shown(votes[rater].iloc[i])}"
                f" rated {shown(votes['path'].iloc[i])} twice"
            )
    long = pd.DataFrame({"path": votes["path"].to_numpy(), "vote": values.astype(int)})
    stats = vote_stats(long, item="path", vote="vote")
    # vote_stats sorts by item; keep the order of first appearance instead.
    order = pd.unique(votes["path"])
    stats = stats.loc[order]
    first_line = votes.groupby("path", sort=False)[LINE_COLUMN].first() if LINE_COLUMN in votes.columns else None
    per_item = pd.DataFrame({"path": stats.index.to_numpy()})
    if first_line is not None:
        per_item[LINE_COLUMN] = first_line.loc[order].to_numpy()
    attrs: dict[str, np.ndarray | None] = {}
    if HASH_COLUMN in votes.columns:
        per_item[HASH_COLUMN] = votes.groupby("path", sort=False)[HASH_COLUMN].first().loc[order].to_numpy()
    for role, column in (("group", group), ("split", split)):
        if column is None:
            attrs[role] = None
            continue
        text = votes[column].map(lambda v: id_text(v) or "")
        n_distinct = text.groupby(votes["path"], sort=False).nunique()
        mixed = n_distinct[n_distinct > 1]
        if len(mixed):
            raise InputError(
                f"{source}: item {mixed.index[0]!r} has more than one value in column '{column}'"
                f" ({', '.join(sorted(text[votes['path'] == mixed.index[0]].unique()))})"
            )
        attrs[role] = text.groupby(votes["path"], sort=False).first().loc[order].to_numpy(dtype=object)
    counts = stats[list(COUNT_COLUMNS)].to_numpy(dtype=float)
    frac = counts / counts.sum(axis=1, keepdims=True)  # LEVELS order
    mos_v = stats["mos"].to_numpy(dtype=float)
    return _finish(
        per_item,
        mos_v,
        stats["sd"].to_numpy(dtype=float),
        stats["n"].to_numpy(dtype=float),
        frac,
        kind="votes",
        source=source,
        rule=rule,
        low=low,
        high=high,
        dmos=dmos,
        soft=soft,
        group=attrs["group"],
        split=attrs["split"],
        extra={"vote_mean": mos_v, **_hash_extra(per_item)},
    )
