"""A study as every layer above the store reads it: its set-up, its items and its *valid* votes.

Raters the administrator screened out (``Rater.excluded``) stay in the database, so that the
decision can be undone, but their votes are not evidence about the items. Converters, the
dataset export, the analysis, the evaluation, active learning and the admin app all read a
study through :func:`read_snapshot` / :func:`load_snapshot`, so none of them can count those
votes by accident and all of them see the same items in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from toolkit.store.ratings import VOTE_COLUMNS, votes_frame
from toolkit.store.schema import Rater, Rating, Study
from toolkit.store.setup import level_labels, study_question
from toolkit.store.studies import study_items

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
    votes: pd.DataFrame  # ``VOTE_COLUMNS``; votes of excluded raters are not here
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


def read_snapshot(session: Session, study: Study) -> StudySnapshot:
    """Read ``study`` in ``session``: items, valid votes, excluded raters and the set-up."""
    records = study_items(session, study)
    items = pd.DataFrame(
        [
            (
                i.path,
                int(i.id),
                i.kind,
                i.role,
                i.content_group,
                i.sha256,
                i.expected_level,
                int(i.tolerance),
                i.missing_since is not None,
            )
            for i in records
        ],
        columns=list(ITEM_COLUMNS),
    )
    items["expected_level"] = items["expected_level"].astype("Int64")
    excluded = tuple(
        sorted(session.scalars(select(Rater.name).where(Rater.study_id == study.id, Rater.excluded.is_(True))))
    )
    registered = session.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == study.id)) or 0
    excluded_votes = (
        session.scalar(
            select(func.count())
            .select_from(Rating)
            .join(Rater, Rating.rater_id == Rater.id)
            .where(Rating.study_id == study.id, Rater.excluded.is_(True))
        )
        or 0
    )

    votes = votes_frame(session, study)
    if votes.empty:
        votes = pd.DataFrame({c: pd.Series(dtype="int64" if c == "vote" else object) for c in VOTE_COLUMNS})
    votes["item"] = votes["item"].astype(str)
    votes["rater"] = votes["rater"].astype(str)
    if excluded:
        votes = votes[~votes["rater"].isin(excluded)].reset_index(drop=True)

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


def load_snapshot(name: str, db_url: str | None = None) -> StudySnapshot:
    """:func:`read_snapshot` of the study called ``name`` in the database at ``db_url``."""
    from toolkit.store.engine import Store
    from toolkit.store.studies import get_study

    store = Store(db_url)
    try:
        with store.session() as session:
            return read_snapshot(session, get_study(session, name))
    finally:
        store.dispose()
