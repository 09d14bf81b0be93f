"""The operational figures a study runner watches while votes come in: per-item progress towards
the vote target, the study's headline numbers, and per-rater quality figures.

Deeper screening (BT.500, P.913, subject models) and the item labels live in ``toolkit.analysis``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from toolkit.store.schema import Assignment, Item, Rater, Rating, Study

FAST_RESPONSE_MS = 1000.0
"""Votes faster than this are counted as suspiciously fast (P.808 minimum viewing time)."""


def _study_votes(session: Session, study: Study) -> pd.DataFrame:
    """Every vote of the study with its rater's ``excluded`` flag, in the order they were given."""
    rows = session.execute(
        select(
            Rating.item_id,
            Rating.rater_id,
            Rating.level,
            Rating.response_ms,
            Rating.session_id,
            Rating.answered_at,
            Rating.id,
            Rater.excluded,
        )
        .join(Rater, Rating.rater_id == Rater.id)
        .where(Rating.study_id == study.id)
        .order_by(Rating.id)
    ).all()
    return pd.DataFrame(
        rows,
        columns=["item_id", "rater_id", "vote", "response_ms", "session_id", "answered_at", "rating_id", "excluded"],
    )


def item_progress(session: Session, study: Study) -> pd.DataFrame:
    """One row per item: role, kind, valid votes (screened-out raters not counted), all votes,
    the target, raters looking at it now, and whether its file is missing."""
    items = pd.DataFrame(
        session.execute(
            select(Item.id, Item.path, Item.role, Item.kind, Item.expected_level, Item.missing_since)
            .where(Item.study_id == study.id)
            .order_by(Item.id)
        ).all(),
        columns=["item_id", "item", "role", "kind", "expected_level", "missing_since"],
    )
    votes = _study_votes(session, study)
    all_n = votes.groupby("item_id").size()
    # The valid-vote rule of the snapshot and the assignment queue: excluded raters' votes do not count.
    valid_n = votes[~votes["excluded"].astype(bool)].groupby("item_id").size()
    pending = pd.Series(
        dict(
            session.execute(
                select(Assignment.item_id, func.count())
                .join(Item, Assignment.item_id == Item.id)
                .where(Item.study_id == study.id)
                .group_by(Assignment.item_id)
            ).all()
        ),
        dtype="int64",
    )
    items["valid_votes"] = items["item_id"].map(valid_n).fillna(0).astype(int)
    items["votes"] = items["item_id"].map(all_n).fillna(0).astype(int)
    items["target"] = np.where(items["role"] == "test", study.target_votes, 0)
    items["on_screen"] = items["item_id"].map(pending).fillna(0).astype(int)
    items["missing"] = items["missing_since"].notna()
    return items.drop(columns=["missing_since"])


def study_summary(session: Session, study: Study) -> dict[str, float | int]:
    """Headline numbers: items, raters, votes, and the share of the vote target reached."""
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


def _longest_run(votes: pd.Series) -> int:
    values = votes.to_numpy()
    if values.size == 0:
        return 0
    change = np.flatnonzero(np.diff(values) != 0)
    edges = np.concatenate(([-1], change, [values.size - 1]))
    return int(np.diff(edges).max())


def rater_stats(session: Session, study: Study, min_session_votes: int = 5) -> pd.DataFrame:
    """Per rater: access, votes, sittings, gold accuracy, response times and straightlining.

    Every vote of a rater counts here, excluded or not: these figures are what the administrator
    judges a rater by, including whether to take an exclusion back.

    ``gold_accuracy`` is the share of gold answers within the item's tolerance; ``fast_share`` the
    share of votes given faster than ``FAST_RESPONSE_MS``; ``longest_run`` the longest series of
    identical consecutive votes; ``min_session_sd`` the smallest vote SD over the rater's sittings
    with at least ``min_session_votes`` votes (0 = a sitting answered with a single level).
    """
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
    votes = _study_votes(session, study)
    items = pd.DataFrame(
        session.execute(
            select(Item.id, Item.role, Item.expected_level, Item.tolerance).where(Item.study_id == study.id)
        ).all(),
        columns=["item_id", "role", "expected_level", "tolerance"],
    )
    votes = votes.merge(items, on="item_id", how="left")
    per = raters.set_index("rater_id")
    grouped = votes.groupby("rater_id")
    per["votes"] = grouped.size().reindex(per.index).fillna(0).astype(int)
    per["sessions"] = grouped["session_id"].nunique().reindex(per.index).fillna(0).astype(int)

    gold = votes[votes["role"] == "gold"].copy()
    gold["hit"] = (gold["vote"] - gold["expected_level"]).abs() <= gold["tolerance"]
    per["gold_votes"] = gold.groupby("rater_id").size().reindex(per.index).fillna(0).astype(int)
    per["gold_accuracy"] = gold.groupby("rater_id")["hit"].mean().reindex(per.index)

    timed = votes.dropna(subset=["response_ms"])
    per["median_response_s"] = (timed.groupby("rater_id")["response_ms"].median() / 1000.0).reindex(per.index)
    per["fast_share"] = (timed["response_ms"] < FAST_RESPONSE_MS).groupby(timed["rater_id"]).mean().reindex(per.index)

    rated = votes[votes["role"] != "training"]
    per["vote_sd"] = rated.groupby("rater_id")["vote"].std(ddof=0).reindex(per.index)
    per["longest_run"] = rated.groupby("rater_id")["vote"].apply(_longest_run).reindex(per.index).fillna(0).astype(int)
    by_sitting = rated.dropna(subset=["session_id"]).groupby(["rater_id", "session_id"])["vote"].agg(["size", "std"])
    full = by_sitting[by_sitting["size"] >= min_session_votes]
    per["min_session_sd"] = full.groupby(level="rater_id")["std"].min().reindex(per.index)
    per["last_vote_at"] = grouped["answered_at"].max().reindex(per.index)
    return per.reset_index().drop(columns=["rater_id"])
