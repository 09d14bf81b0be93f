"""One line per study for ``qalign study list``: counts only, made in SQL.

The votes are the sum of the items' stored counters (``items.n_votes``, kept by the database):
reading the items costs the same at any number of votes. Kept apart from the progress figures
(which need pandas) so that listing the studies of a large store costs a few aggregate queries
and little start-up time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from toolkit.store.schema import Item, Rater, Rating, Study


@dataclass(frozen=True)
class StudyOverview:
    """A study's headline counts; ``valid_votes`` leaves out the votes of excluded raters."""

    study: str
    task: str
    items: int
    raters: int
    votes: int
    valid_votes: int
    target_votes: int


def studies_overview(session: Session) -> list[StudyOverview]:
    """Every study in creation order with its item, rater, vote and valid-vote counts."""

    def counts(statement: Select[int, int]) -> dict[int, int]:
        return {study_id: count for study_id, count in session.execute(statement)}

    items = counts(select(Item.study_id, func.count()).group_by(Item.study_id))
    raters = counts(select(Rater.study_id, func.count()).group_by(Rater.study_id))
    votes = counts(select(Item.study_id, func.coalesce(func.sum(Item.n_votes), 0)).group_by(Item.study_id))
    # Votes of excluded raters, found through the (rater, item) index: excluded raters are few, so
    # this reads a small part of the table where joining every vote to its rater reads all of it.
    excluded = counts(
        select(Rating.study_id, func.count())
        .where(Rating.rater_id.in_(select(Rater.id).where(Rater.excluded.is_(True))))
        .group_by(Rating.study_id)
    )
    return [
        StudyOverview(
            s.name,
            s.task,
            items.get(s.id, 0),
            raters.get(s.id, 0),
            votes.get(s.id, 0),
            votes.get(s.id, 0) - excluded.get(s.id, 0),
            s.target_votes,
        )
        for s in session.scalars(select(Study).order_by(Study.id))
    ]
