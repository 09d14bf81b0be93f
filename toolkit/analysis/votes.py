"""Validated votes in the coded long layout every subject model works on.

A study's votes arrive as a long table, one row per vote (item, rater, vote, optionally the
item's source content). :func:`prepare_votes` checks it once and turns it into integer codes, so
the models can aggregate with ``np.bincount`` instead of looping over items or raters. Partial
sampling (each rater sees a subset) needs no special case in this layout: a vote that was never
cast is simply not a row.

A rater who votes on the same item more than once contributes each vote as a separate
observation (sureal calls these repetitions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.errors import InputError
from toolkit.io import id_text
from toolkit.levels import LEVEL_VALUES

_MAX_NAMED = 5  # how many offending rows/ids an error message lists


@dataclass(frozen=True)
class Votes:
    """Votes coded as integers: ``item[k]``, ``rater[k]`` index ``items`` and ``raters``.

    ``content`` holds one code per item (indexing ``contents``); without a content column every
    item is its own content.
    """

    item: np.ndarray
    rater: np.ndarray
    vote: np.ndarray
    items: pd.Index
    raters: pd.Index
    content: np.ndarray
    contents: pd.Index

    @property
    def n_votes(self) -> int:
        return int(self.vote.size)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_raters(self) -> int:
        return len(self.raters)

    @property
    def n_contents(self) -> int:
        return len(self.contents)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.item, minlength=self.n_items)

    def rater_counts(self) -> np.ndarray:
        return np.bincount(self.rater, minlength=self.n_raters)

    def subset(self, keep: np.ndarray) -> Votes:
        """The votes where ``keep`` is true; items, raters and contents keep their codes."""
        keep = np.asarray(keep, dtype=bool)
        return Votes(
            self.item[keep], self.rater[keep], self.vote[keep], self.items, self.raters, self.content, self.contents
        )

    def with_values(self, values: np.ndarray) -> Votes:
        """The same votes with other values (for example bias-removed or z-scored ones)."""
        return Votes(
            self.item, self.rater, np.asarray(values, dtype=float), self.items, self.raters, self.content, self.contents
        )

    def to_frame(self) -> pd.DataFrame:
        """Back to a long table with the original ids (item, rater, vote, content)."""
        return pd.DataFrame(
            {
                "item": self.items[self.item],
                "rater": self.raters[self.rater],
                "vote": self.vote,
                "content": self.contents[self.content[self.item]],
            }
        )


def _rows(mask: np.ndarray, index: pd.Index) -> str:
    where = np.flatnonzero(mask)
    shown = ", ".join(str(index[i]) for i in where[:_MAX_NAMED])
    more = f" and {where.size - _MAX_NAMED} more" if where.size > _MAX_NAMED else ""
    return f"{shown}{more}"


def _names(values: Sequence[object]) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:_MAX_NAMED])
    return shown + (f" and {len(values) - _MAX_NAMED} more" if len(values) > _MAX_NAMED else "")


def _show(value: object) -> str:
    """``repr`` of a cell, numpy scalars shown as plain Python numbers."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def factorize_sorted(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(values, sort=True)``; a categorical column (a study's votes) through its codes
    and categories, no hash of every value: codes in category order, -1 for a missing value."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        codes, uniques = pd.factorize(values, sort=True)
        return codes, pd.Index(uniques)
    raw = values.cat.codes.to_numpy()
    n_categories = len(values.dtype.categories)
    present = np.zeros(n_categories + 1, dtype=bool)  # the last entry stands for a missing value
    present[raw] = True  # -1 marks the last entry
    used = np.flatnonzero(present[:n_categories])
    table = np.full(n_categories + 1, -1, dtype=np.intp)  # code -1 looks up the last entry: -1
    table[used] = np.arange(used.size)
    uniques = pd.CategoricalIndex(pd.Categorical.from_codes(used, dtype=values.dtype))
    return table[raw], uniques


def check_vote_table(
    frame: pd.DataFrame, item_col: str = "item", rater_col: str = "rater", vote_col: str = "vote", source: str = "votes"
) -> np.ndarray:
    """Check ids and votes of a long table; return the votes as floats.

    Errors name the rows (by the frame's index), and for a bad vote its item and rater.
    """
    for col, what in ((item_col, "item"), (rater_col, "rater")):
        # A blank string is as missing as NaN: it would otherwise become an item or rater "".
        # The rule runs once per distinct id (a study of millions of votes names far fewer).
        column = frame[col]
        if isinstance(column.dtype, pd.CategoricalDtype):
            # A categorical is factorized already (a study's votes are): its codes, -1 for NaN.
            codes, uniques = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, uniques = pd.factorize(column, use_na_sentinel=True)
        blank = np.array([id_text(v) is None for v in uniques] + [True], dtype=bool)
        absent = blank[codes]
        if absent.any():
            raise InputError(f"{source}: {what} id missing in row(s) {_rows(absent, frame.index)}")
    values = frame[vote_col]
    raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(raw, LEVEL_VALUES)  # NaN and non-numeric text fail this too
    # pandas reads a column of True/False cells as booleans, which would count as votes 1 and 0;
    # only a boolean or mixed (object) column can hold one.
    if pd.api.types.is_bool_dtype(values):
        bad[:] = True
    elif values.dtype == object:
        bad |= values.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: vote {_show(frame[vote_col].iloc[first])} in row {frame.index[first]} "
            f"(item {_show(frame[item_col].iloc[first])}, rater {_show(frame[rater_col].iloc[first])}) is not an "
            f"integer level 1-5; {int(bad.sum())} invalid vote(s) in all, rows {_rows(bad, frame.index)}"
        )
    return raw


def prepare_votes(
    frame: pd.DataFrame,
    item_col: str = "item",
    rater_col: str = "rater",
    vote_col: str = "vote",
    content_col: str | None = None,
    items: Sequence[object] | None = None,
    source: str = "votes",
) -> Votes:
    """Check a long vote table and code it.

    Raises :class:`~toolkit.errors.InputError` naming the rows (by the frame's index) for a
    missing column, an empty table, a missing item or rater id, a vote that is not an integer
    level 1-5 (NaN included), an item with two different contents; and, when ``items`` (the
    study's item list) is given, naming votes on unknown items and items without any vote.

    Items keep the order of ``items`` when given, else their order of first appearance; raters
    and contents are sorted.
    """
    needed = [c for c in (item_col, rater_col, vote_col, content_col) if c is not None]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; found {', '.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise InputError(f"{source}: no votes")

    raw = check_vote_table(frame, item_col, rater_col, vote_col, source)

    if items is not None:
        catalogue = pd.Index(pd.unique(pd.Series(list(items), dtype=object)))
        item_code = catalogue.get_indexer(frame[item_col])
        unknown = item_code < 0
        if unknown.any():
            names = pd.unique(frame[item_col].to_numpy()[unknown])
            raise InputError(f"{source}: votes on {names.size} unknown item(s): {_names(names)}")
        item_index = catalogue
    else:
        item_code, item_index = pd.factorize(frame[item_col])
        item_index = pd.Index(item_index)
    counts = np.bincount(item_code, minlength=len(item_index))
    if (counts == 0).any():
        raise InputError(
            f"{source}: {int((counts == 0).sum())} item(s) without votes: {_names(item_index[counts == 0])}"
        )

    rater_code, rater_index = factorize_sorted(frame[rater_col])

    if content_col is not None:
        absent = frame[content_col].isna().to_numpy()
        if absent.any():
            raise InputError(f"{source}: content missing in row(s) {_rows(absent, frame.index)}")
        vote_content, content_index = factorize_sorted(frame[content_col])
        per_item = np.full(len(item_index), -1)
        per_item[item_code] = vote_content
        clash = per_item[item_code] != vote_content
        if clash.any():
            names = pd.unique(item_index[item_code[clash]])
            raise InputError(f"{source}: item(s) listed under two different contents: {_names(names)}")
        item_content = per_item
    else:
        # Without a content column each item is its own content (the finest grouping).
        item_content = np.arange(len(item_index))
        content_index = item_index

    return Votes(
        item=np.asarray(item_code, dtype=np.int64),
        rater=np.asarray(rater_code, dtype=np.int64),
        vote=raw,
        items=pd.Index(item_index),
        raters=pd.Index(rater_index),
        content=np.asarray(item_content, dtype=np.int64),
        contents=pd.Index(content_index),
    )
