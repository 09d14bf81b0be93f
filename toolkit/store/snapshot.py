"""A study as every layer above the store reads it: its set-up, its items and its *valid* votes.

Raters the administrator screened out (``Rater.excluded``) stay in the database, so that the
decision can be undone, but their votes are not evidence about the items. Converters, the
dataset export, the analysis, the evaluation, active learning and the admin app all read a
study through :func:`read_snapshot` / :func:`load_snapshot`, so none of them can count those
votes by accident and all of them see the same items in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from toolkit.errors import StoreError
from toolkit.store.ratings import VOTE_COLUMNS
from toolkit.store.schema import Item, Rater, Rating, Study
from toolkit.store.setup import level_labels, study_question
from toolkit.store.vote_arrays import VoteArrays, VoteTimes, read_vote_arrays, read_vote_times, read_votes_with_times

ITEM_COLUMNS: tuple[str, ...] = (
    "item",
    "item_id",
    "kind",
    "role",
    "content_group",
    "sha256",
    "expected_level",
    "tolerance",
    "missing",
)
"""Columns of :attr:`StudySnapshot.items`; ``missing`` is true while the file is flagged as absent."""


@dataclass(frozen=True, eq=False)
class StudySnapshot:
    """One consistent read of a study (one session): set-up, items in study order, valid votes."""

    name: str
    task: str
    question: str  # as raters read it, ``{input}`` filled with the study's media kind
    level_labels: tuple[str, ...]  # the five button labels, best first
    media_root: Path
    target_votes: int
    items_per_session: int
    gold_every: int
    created_at: str  # YYYY-MM-DD
    items: pd.DataFrame  # ``ITEM_COLUMNS``, one row per item, in the order the items were added
    votes: pd.DataFrame  # ``VOTE_COLUMNS`` (those read); votes of excluded raters are not here
    excluded_raters: tuple[str, ...]  # names of the raters screened out, sorted
    excluded_votes: int  # how many stored votes those raters gave (not in ``votes``)
    raters_registered: int

    @property
    def raters_excluded(self) -> int:
        return len(self.excluded_raters)

    @property
    def test_items(self) -> pd.DataFrame:
        """The items whose labels the study is run for (gold and training items serve the raters)."""
        return self.items[self.items["role"] == "test"].reset_index(drop=True)


def _day(moment: datetime | date | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment is not None else ""


def items_frame(session: Session, study: Study) -> pd.DataFrame:
    """``ITEM_COLUMNS`` in study order, read column-wise (no ORM object per item)."""
    rows = session.execute(
        select(
            Item.path,
            Item.id,
            Item.kind,
            Item.role,
            Item.content_group,
            Item.sha256,
            Item.expected_level,
            Item.tolerance,
            Item.missing_since.is_not(None),
        )
        .where(Item.study_id == study.id)
        .order_by(Item.id)
    ).all()
    columns: list[tuple[Any, ...]] = list(zip(*rows)) if rows else [() for _ in ITEM_COLUMNS]
    items = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in zip(ITEM_COLUMNS, columns)})
    items["item_id"] = items["item_id"].astype("int64")
    items["tolerance"] = items["tolerance"].astype("int64")
    items["missing"] = items["missing"].astype(bool)
    items["expected_level"] = pd.array([None if v is None else int(v) for v in items["expected_level"]], dtype="Int64")
    return items


def _moments(micros: np.ndarray, zoned: bool) -> pd.Series:
    """Microseconds since 1970 as times: UTC-aware from PostgreSQL, naive UTC from SQLite (as stored)."""
    # The microsecond counts are the datetime64[us] values themselves: a view, not a parse.
    missing = np.isnan(micros)
    stamps = np.empty(micros.shape, dtype=np.int64)
    with np.errstate(invalid="ignore"):  # NaN has no integer: those are set to NaT below
        np.rint(micros, out=stamps, casting="unsafe")  # rounded straight into the integers, no float copy
    stamps[missing] = np.iinfo(np.int64).min  # NaT
    times = pd.Series(stamps.view("datetime64[us]"), copy=False)
    return times.dt.tz_localize("UTC") if zoned else times


TIME_COLUMNS: tuple[str, ...] = ("shown_at", "answered_at", "response_ms")
"""The vote columns read with the votes' times (:func:`read_votes_with_times`, or a second pass
over the votes where that cannot be used: :func:`read_vote_times`)."""

LABEL_VOTE_COLUMNS: tuple[str, ...] = ("item", "rater", "vote", "content_group", "role")
"""The vote columns labels, training data and dataset cards are made from (no times)."""


def _check_columns(columns: Sequence[str]) -> list[str]:
    unknown = [c for c in columns if c not in VOTE_COLUMNS]
    if unknown:
        raise StoreError(f"unknown vote column(s) {', '.join(map(repr, unknown))}; use {', '.join(VOTE_COLUMNS)}")
    return [c for c in VOTE_COLUMNS if c in columns]  # the frame keeps VOTE_COLUMNS' order


class UnknownVoteIds(StoreError):
    """A vote names an item or rater id that is not among those read (they changed in between)."""


def vote_positions(ids: np.ndarray, wanted: np.ndarray, what: str = "item") -> np.ndarray:
    """The position in ``ids`` (distinct) of each of ``wanted``, as int32/int64; UnknownVoteIds when
    one of ``wanted`` is not among ``ids`` (a vote read after its item or rater was: never a wrong
    position)."""
    code_type = np.int32 if ids.size < 2**31 else np.int64
    if wanted.size == 0:
        return np.empty(0, dtype=code_type)
    if ids.size and int(ids.max()) - int(ids.min()) <= 4 * ids.size + 2**20:
        # A study's ids are a dense range: a table from id to position (-1: no such id), one look-up a vote.
        low, high = int(ids.min()), int(ids.max())
        least, most = int(wanted.min()), int(wanted.max())
        if least < low or most > high:
            raise _unknown(what, least if least < low else most)
        table = np.full(high - low + 1, -1, dtype=code_type)
        table[ids - low] = np.arange(ids.size, dtype=code_type)
        positions = table[wanted - low]
        if int(positions.min()) < 0:
            raise _unknown(what, int(wanted[np.argmin(positions)]))
        return positions
    order = None if (ids[1:] > ids[:-1]).all() else np.argsort(ids)  # in id order: positions by one search
    sorted_ids = ids if order is None else ids[order]
    found = np.searchsorted(sorted_ids, wanted).clip(0, max(ids.size - 1, 0))
    if ids.size == 0 or not np.array_equal(sorted_ids[found], wanted):
        missing = wanted if ids.size == 0 else wanted[sorted_ids[found] != wanted]
        raise _unknown(what, int(missing[0]))
    return (found if order is None else order[found]).astype(code_type)


def _unknown(what: str, vote_id: int) -> UnknownVoteIds:
    return UnknownVoteIds(f"a vote names {what} id {vote_id}, which is not among the study's {what}s read")


def votes_from_arrays(
    items: pd.DataFrame,
    raters: pd.Series,
    votes: VoteArrays,
    times: VoteTimes | None,
    zoned: bool,
    columns: Sequence[str] = VOTE_COLUMNS,
    compact: bool = False,
) -> pd.DataFrame:
    """``VOTE_COLUMNS`` (or those of them in ``columns``) from coded votes: the item and rater
    columns (and the item's own columns) are categoricals over the study's items and raters, so
    a vote costs a few bytes, not a string. ``times`` may be None when no time column is asked for.
    ``compact``: vote and tolerance as int8 and expected_level as Int8 (the levels and tolerances
    fit), 21 bytes a vote less, and a time column no vote has a value in left out (8 bytes a vote
    each; imported votes have no display or response time), as is then an answer time all votes
    share, for a reader that only compares the levels, takes an absent time column for an empty one
    and votes without answer times in their stored order (the screening does)."""
    wanted = _check_columns(columns)
    position = vote_positions(items["item_id"].to_numpy(), votes.item_id)

    def per_item(column: str) -> pd.Categorical:
        codes, uniques = pd.factorize(items[column].astype(str))
        # Codes in the smallest integer type first: the per-vote temporary is that size, not int64.
        small = codes.astype(np.int8 if len(uniques) < 2**7 else np.int16 if len(uniques) < 2**15 else np.int32)
        return pd.Categorical.from_codes(small[position], categories=pd.Index(uniques, dtype=object))

    def item() -> pd.Categorical:
        return pd.Categorical.from_codes(position, categories=pd.Index(items["item"].astype(str), dtype=object))

    def rater() -> pd.Categorical:
        rater_position = vote_positions(raters.index.to_numpy(), votes.rater_id, "rater")
        return pd.Categorical.from_codes(rater_position, categories=pd.Index(raters.astype(str), dtype=object))

    def time(column: str) -> pd.Series | np.ndarray:
        if times is None:
            raise StoreError(f"vote column {column!r} asked for without the vote times")
        if column == "response_ms":  # a frame column of its own (the read may share one read-only value)
            return times.response_ms if times.response_ms.flags.writeable else times.response_ms.copy()
        return _moments(times.shown_us if column == "shown_at" else times.answered_us, zoned)

    level_type = "Int8" if compact else "Int64"  # levels are 1-5
    small = items.empty or int(items["tolerance"].abs().max()) < 2**7
    tolerance_type = np.int8 if compact and small else np.int64
    makers: dict[str, Callable[[], Any]] = {
        "item": item,
        "rater": rater,
        "vote": lambda: votes.level.astype(np.int8 if compact else np.int64),
        "kind": lambda: per_item("kind"),
        "content_group": lambda: per_item("content_group"),
        "role": lambda: per_item("role"),
        "expected_level": lambda: items["expected_level"].astype(level_type).array.take(position),
        "tolerance": lambda: items["tolerance"].to_numpy().astype(tolerance_type)[position],
        "sha256": lambda: per_item("sha256"),
        "shown_at": lambda: time("shown_at"),
        "answered_at": lambda: time("answered_at"),
        "response_ms": lambda: time("response_ms"),
    }
    if compact and times is not None:
        stored = {"shown_at": times.shown_us, "answered_at": times.answered_us, "response_ms": times.response_ms}
        wanted = [c for c in wanted if c not in stored or not np.isnan(stored[c]).all()]
        # With no display or response time, an answer time all votes share (one import) neither
        # orders the votes (they stay in rating order) nor times them: 8 bytes a vote left out too.
        untimed = "shown_at" not in wanted and "response_ms" not in wanted
        answered = times.answered_us
        if untimed and "answered_at" in wanted and answered.size and bool((answered == answered[0]).all()):
            wanted.remove("answered_at")
    return pd.DataFrame({column: makers[column]() for column in wanted}, copy=False)  # the arrays made here


def _raters(session: Session, study: Study) -> pd.Series:
    """The study's rater names by rater id."""
    rows = session.execute(select(Rater.id, Rater.name).where(Rater.study_id == study.id)).all()
    return pd.Series(dict(rows), dtype=object)


def read_snapshot(
    session: Session, study: Study, columns: Sequence[str] = VOTE_COLUMNS, compact: bool = False
) -> StudySnapshot:
    """Read ``study`` in ``session``: items, valid votes, excluded raters and the set-up.

    ``columns``: the vote columns to build (``VOTE_COLUMNS`` by default, in that order). A
    caller that needs fewer says so: the time columns cost a look at every vote's times (a second
    pass over the votes but on SQLite and psycopg's PostgreSQL) and up to 24 bytes a vote, the
    item's own columns a few bytes each (``LABEL_VOTE_COLUMNS`` is what labels and training data
    need). ``compact``: see
    :func:`votes_from_arrays`.
    """
    wanted = _check_columns(columns)
    with_times = any(c in TIME_COLUMNS for c in wanted)
    items, raters = items_frame(session, study), _raters(session, study)
    excluded = tuple(
        sorted(session.scalars(select(Rater.name).where(Rater.study_id == study.id, Rater.excluded.is_(True))))
    )
    registered = len(raters)
    excluded_votes = (
        session.scalar(
            select(func.count())
            .select_from(Rating)
            .where(Rating.rater_id.in_(select(Rater.id).where(Rater.study_id == study.id, Rater.excluded.is_(True))))
        )
        or 0
    )
    # Valid votes only: the excluded raters' votes are left out in the query.
    connection = session.connection()
    valid = (
        "rater_id NOT IN (SELECT id FROM raters WHERE excluded = "
        + ("true" if connection.dialect.name == "postgresql" else "1")
        + ")"
        if excluded
        else ""
    )
    times: VoteTimes | None = None
    both = read_votes_with_times(connection, study.id, valid) if with_times else None
    if both is not None:  # one pass over the votes
        coded, times = both
    else:
        coded = read_vote_arrays(connection, study.id, valid)
        times = read_vote_times(connection, study.id, valid) if with_times else None
    del both
    for _ in range(3):  # a vote stored between the two reads (no snapshot isolation): read again
        if times is None or len(times.answered_us) == len(coded):
            break
        coded = read_vote_arrays(connection, study.id, valid)
        times = read_vote_times(connection, study.id, valid)
    else:
        raise StoreError(f"votes of study {study.name!r} kept changing while it was read; try again")
    # The votes may have been read after the items and raters (SQLite's large studies are read on a
    # connection of their own; PostgreSQL's statements each see the latest commits): a vote of an
    # item or rater added in between is found here, and those are read again.
    for _ in range(3):
        try:
            zoned = connection.dialect.name == "postgresql"
            votes = votes_from_arrays(items, raters, coded, times, zoned, wanted, compact)
            break
        except UnknownVoteIds:
            items, raters = items_frame(session, study), _raters(session, study)
            registered = len(raters)
    else:
        raise StoreError(f"items or raters of study {study.name!r} kept changing while it was read; try again")
    del coded, times

    kinds = set(items.loc[items["role"] == "test", "kind"])
    return StudySnapshot(
        name=study.name,
        task=study.task,
        question=study_question(study, "video" if kinds == {"video"} else "image"),
        level_labels=tuple(level_labels(study)),
        media_root=Path(study.media_root),
        target_votes=int(study.target_votes),
        items_per_session=int(study.items_per_session),
        gold_every=int(study.gold_every),
        created_at=_day(study.created_at),
        items=items,
        votes=votes,
        excluded_raters=excluded,
        excluded_votes=int(excluded_votes),
        raters_registered=int(registered),
    )


def load_snapshot(
    name: str, db_url: str | None = None, columns: Sequence[str] = VOTE_COLUMNS, compact: bool = False
) -> StudySnapshot:
    """:func:`read_snapshot` of the study called ``name`` in the database at ``db_url``."""
    from toolkit.store.engine import Store
    from toolkit.store.studies import get_study

    store = Store(db_url)
    try:
        with store.session() as session:
            return read_snapshot(session, get_study(session, name), columns, compact)
    finally:
        store.dispose()
