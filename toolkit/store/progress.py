"""The operational figures a study runner watches while votes come in: per-item progress towards
the vote target, the study's headline numbers, and per-rater quality figures.

Deeper screening (BT.500, P.913, subject models) and the item labels live in ``toolkit.analysis``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from toolkit.errors import StoreError
from toolkit.store.schema import Assignment, Item, Rater, Rating, RatingSession, Study
from toolkit.store.snapshot import UnknownVoteIds, vote_positions
from toolkit.store.vote_arrays import placeholder, read_vote_arrays, read_vote_times, read_votes_with_times

if TYPE_CHECKING:
    from typing_extensions import Unpack

FAST_RESPONSE_MS = 1000.0
"""Votes faster than this are counted as suspiciously fast (P.808 minimum viewing time)."""


def _counts(session: Session, statement: Select[Unpack[tuple[Any, ...]]]) -> pd.Series:
    """``key -> count`` rows of a grouped query as an int64 Series."""
    rows = session.execute(statement).all()
    keys, counts = (list(column) for column in zip(*rows)) if rows else ([], [])
    return pd.Series(counts, index=keys, dtype="int64")


def _excluded_raters(study: Study) -> Select[int]:
    return select(Rater.id).where(Rater.study_id == study.id, Rater.excluded.is_(True))


def item_progress(session: Session, study: Study) -> pd.DataFrame:
    """One row per item: role, kind, valid votes (screened-out raters not counted), all votes,
    the target, raters looking at it now, and whether its file is missing.

    The votes per item are the items' stored counters (``items.n_votes``, kept by the database);
    the excluded raters' votes are counted through the rater index (excluded raters are few).
    The items are read as plain rows (no ORM or type processing: 250,000 items in well under a second).
    """
    connection = session.connection()
    mark = placeholder(connection)
    # Straight from the driver: SQLAlchemy's row objects would cost three times the query.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(
            "SELECT id, path, role, kind, expected_level, missing_since IS NOT NULL, n_votes "
            f"FROM items WHERE study_id = {mark} ORDER BY id",
            (study.id,),
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    names = ["item_id", "item", "role", "kind", "expected_level", "missing", "votes"]
    items = pd.DataFrame.from_records(rows, columns=names)
    # The valid-vote rule of the snapshot and the assignment queue: excluded raters' votes do not count.
    excluded_n = _counts(
        session,
        select(Rating.item_id, func.count())
        .where(Rating.rater_id.in_(_excluded_raters(study)))
        .group_by(Rating.item_id),
    )
    pending = _counts(
        session,
        select(Assignment.item_id, func.count())
        .join(Item, Assignment.item_id == Item.id)
        .where(Item.study_id == study.id)
        .group_by(Assignment.item_id),
    )
    votes = items.pop("votes").astype("int64")
    missing = items.pop("missing").astype(bool)
    items["expected_level"] = items["expected_level"].astype("Int64")
    items["valid_votes"] = votes - items["item_id"].map(excluded_n).fillna(0).astype("int64")
    items["votes"] = votes
    items["target"] = np.where(items["role"] == "test", study.target_votes, 0)
    items["on_screen"] = items["item_id"].map(pending).fillna(0).astype("int64")
    items["missing"] = missing
    return items


def study_summary(session: Session, study: Study, progress: pd.DataFrame | None = None) -> dict[str, float | int]:
    """Headline numbers: items, raters, votes, and the share of the vote target reached.

    ``progress`` is the study's :func:`item_progress`, when the caller has it already.
    """
    if progress is None:
        progress = item_progress(session, study)
    test = progress[progress["role"] == "test"]
    wanted = int(test["target"].sum())
    reached = int(np.minimum(test["valid_votes"], test["target"]).sum())
    raters = session.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == study.id)) or 0
    return {
        "items": len(progress),
        "test_items": len(test),
        "missing_items": int(progress["missing"].sum()),
        "raters": int(raters),
        "votes": int(progress["votes"].sum()),
        "complete_items": int((test["valid_votes"] >= test["target"]).sum()),
        "target_fraction": reached / wanted if wanted else 1.0,
    }


def _longest_runs(rater: np.ndarray, vote: np.ndarray, n_raters: int) -> np.ndarray:
    """Per rater, the longest series of identical consecutive votes (votes in the order given)."""
    longest = np.zeros(n_raters, dtype=np.int64)
    if rater.size == 0:
        return longest
    # Each rater's votes stay in the order they were given (a stable sort; on 16-bit keys numpy's
    # is a radix sort, a fifth of the time at tens of millions of votes).
    keys = rater.astype(np.uint16) if n_raters <= 2**16 else rater
    order = np.argsort(keys, kind="stable")
    del keys
    r, v = rater[order], vote[order]
    del order
    starts = np.flatnonzero(np.r_[True, (r[1:] != r[:-1]) | (v[1:] != v[:-1])])
    lengths = np.diff(np.r_[starts, r.size])
    run_rater = r[starts]
    # The runs are grouped by rater: the longest of each group in one pass.
    first = np.flatnonzero(np.r_[True, run_rater[1:] != run_rater[:-1]])
    longest[run_rater[first]] = np.maximum.reduceat(lengths, first)
    return longest


def rater_stats(session: Session, study: Study, min_session_votes: int = 5) -> pd.DataFrame:
    """Per rater: access, votes, sittings, gold accuracy, response times and straightlining.

    Every vote of a rater counts here, excluded or not: these figures are what the administrator
    judges a rater by, including whether to take an exclusion back.

    ``gold_accuracy`` is the share of gold answers within the item's tolerance; ``fast_share`` the
    share of votes given faster than ``FAST_RESPONSE_MS``; ``longest_run`` the longest series of
    identical consecutive votes; ``min_session_sd`` the smallest vote SD over the rater's sittings
    with at least ``min_session_votes`` votes (0 = a sitting answered with a single level).

    The votes are read as integer arrays (:mod:`toolkit.store.vote_arrays`), never as a frame of
    rows, with their times in the same pass where the back-end allows; the sittings, which only
    votes given in the app have, are read on their own.
    """
    connection = session.connection()
    # The votes first: raters and items read after them include every one a vote names (a large
    # SQLite study's votes come from a connection of their own, which may see newer votes).
    both = read_votes_with_times(connection, study.id)
    if both is None:
        votes, times = read_vote_arrays(connection, study.id), read_vote_times(connection, study.id)
        if len(times.answered_us) != len(votes):
            raise StoreError(f"votes of study {study.name!r} changed while they were read; try again")
    else:
        votes, times = both
    del both
    # Only these two time columns are used: the display times go now (8 bytes a vote).
    answered_us, response_ms = times.answered_us, times.response_ms
    del times
    raters = pd.DataFrame(
        session.execute(
            select(
                Rater.id,
                Rater.name,
                Rater.revoked,
                Rater.excluded,
                Rater.self_registered,
                Rater.trained_at,
                Rater.created_at,
            )
            .where(Rater.study_id == study.id)
            .order_by(Rater.id)
        ).all(),
        columns=["rater_id", "rater", "revoked", "excluded", "self_registered", "trained_at", "created_at"],
    )
    items = pd.DataFrame(
        session.execute(
            select(Item.id, Item.role, Item.expected_level, Item.tolerance)
            .where(Item.study_id == study.id)
            .order_by(Item.id)
        ).all(),
        columns=["item_id", "role", "expected_level", "tolerance"],
    )
    n_raters = len(raters)
    # Raters and items by position (both frames are in id order).
    rater = _positions(raters["rater_id"].to_numpy(), votes.rater_id, "rater", study)
    item = _positions(items["item_id"].to_numpy(), votes.item_id, "item", study)
    level = votes.level  # int8: levels 1-5
    del votes
    per = raters.set_index("rater_id")

    def per_rater(values: np.ndarray | pd.Series) -> np.ndarray:
        return np.asarray(values)

    count = np.bincount(rater, minlength=n_raters)
    per["votes"] = count
    # Sittings with a vote, counted from the sittings (through the votes' session index): a study
    # whose votes were imported has none, and its millions of votes are not read again.
    sittings = _counts(
        session,
        select(RatingSession.rater_id, func.count())
        .join(Rater, Rater.id == RatingSession.rater_id)
        .where(Rater.study_id == study.id, exists().where(Rating.session_id == RatingSession.id))
        .group_by(RatingSession.rater_id),
    )
    per["sessions"] = sittings.reindex(per.index).fillna(0).astype(int)

    role = items["role"].to_numpy(dtype=object)
    gold = (role == "gold")[item]
    expected = pd.to_numeric(items["expected_level"], errors="coerce").to_numpy(dtype=float)[item[gold]]
    tolerance = pd.to_numeric(items["tolerance"], errors="coerce").to_numpy(dtype=float)[item[gold]]
    hit = np.abs(level[gold] - expected) <= tolerance
    gold_n = np.bincount(rater[gold], minlength=n_raters)
    per["gold_votes"] = gold_n
    with np.errstate(invalid="ignore", divide="ignore"):
        per["gold_accuracy"] = np.where(gold_n > 0, np.bincount(rater[gold], hit, minlength=n_raters) / gold_n, np.nan)

    timed = ~np.isnan(response_ms)
    response = pd.Series(response_ms[timed]).groupby(rater[timed])
    per["median_response_s"] = per_rater((response.median() / 1000.0).reindex(range(n_raters)))
    fast = pd.Series(response_ms[timed] < FAST_RESPONSE_MS).groupby(rater[timed]).mean()
    per["fast_share"] = per_rater(fast.reindex(range(n_raters)))

    rated = (role != "training")[item]
    del item
    # Training votes left out; no copy when there are none (a study of imported votes).
    by, rated_level = (rater, level) if rated.all() else (rater[rated], level[rated])
    del rated
    # SD (ddof=0) from per-rater sums: levels 1-5 are exact in them, no grouping of the votes.
    rated_n = np.bincount(by, minlength=n_raters).astype(float)
    rated_sum = np.bincount(by, rated_level, minlength=n_raters)
    rated_sq = np.bincount(by, rated_level * rated_level, minlength=n_raters)  # at most 25: int8 holds it
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = rated_sum / rated_n
        per["vote_sd"] = np.sqrt(np.maximum(rated_sq / rated_n - mean * mean, 0.0))
    per["longest_run"] = _longest_runs(by, rated_level, n_raters)
    del by, rated_level
    per["min_session_sd"] = _min_session_sd(session, study, min_session_votes).reindex(per.index)
    zoned = connection.dialect.name == "postgresql"
    last = np.full(n_raters, np.nan)
    np.fmax.at(last, rater, answered_us)  # NaN (no time) gives way to any time
    moments = pd.to_datetime(pd.Series(last).round(), unit="us", utc=zoned)
    per["last_vote_at"] = per_rater(moments.astype("datetime64[us, UTC]" if zoned else "datetime64[us]"))
    return per.reset_index().drop(columns=["rater_id"])


def _positions(ids: np.ndarray, wanted: np.ndarray, what: str, study: Study) -> np.ndarray:
    """:func:`~toolkit.store.snapshot.vote_positions`; a vote whose rater or item is not among
    ``ids`` (deleted meanwhile) fails clearly, never lands on a neighbour's row."""
    try:
        return vote_positions(ids, wanted, what)
    except UnknownVoteIds:
        raise StoreError(f"a vote of study {study.name!r} names a {what} that is gone; try again") from None


def _min_session_sd(session: Session, study: Study, min_session_votes: int) -> pd.Series:
    """Per rater id: the smallest vote SD over sittings of at least ``min_session_votes`` votes
    (training items left out). Only votes given in the app have a sitting."""
    # The votes of the study's sittings, found through the session index (not by reading every vote).
    sittings = (
        select(RatingSession.id).join(Rater, Rater.id == RatingSession.rater_id).where(Rater.study_id == study.id)
    )
    rows = session.execute(
        select(Rating.rater_id, Rating.session_id, Rating.level)
        .join(Item, Rating.item_id == Item.id)
        .where(Rating.session_id.in_(sittings), Item.role != "training")
    ).all()
    frame = pd.DataFrame(rows, columns=["rater_id", "session_id", "vote"])
    by_sitting = frame.groupby(["rater_id", "session_id"])["vote"].agg(["size", "std"])
    full = by_sitting[by_sitting["size"] >= min_session_votes]
    return full.groupby(level="rater_id")["std"].min()
