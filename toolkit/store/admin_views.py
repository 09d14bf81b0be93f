"""Figures the admin page shows about many studies at once, made in SQL (a few aggregate queries
for the whole store, whatever the number of studies), and the version stamp that tells the page
when a study's cached labels and fits are stale.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from toolkit.store.overview import studies_overview
from toolkit.store.schema import Item, Rater, RaterFlag, Rating, RatingSession, Study, utcnow

ACTIVITY_WINDOW = timedelta(hours=1)
"""How far back "votes in the last hour" and "raters active" look."""


@dataclass(frozen=True)
class StudyBoardRow:
    """One study on the admin's overview.

    ``complete_items`` counts test items with at least ``target_votes`` valid votes;
    ``target_fraction`` is the share of all wanted valid votes given (each item counted up to its
    target), the figure the Progress tab shows. ``votes_last_hour`` and ``raters_active`` count
    the votes given in the app (excluded raters' too: they are still working; imported votes are
    no activity) within :data:`ACTIVITY_WINDOW`. ``last_vote_at`` is the time of the newest vote.
    ``flagged_raters`` counts the raters the study's exclusion rules flagged at their last run
    (:mod:`toolkit.store.exclusion`), whether or not an override keeps them.
    """

    study: str
    task: str
    test_items: int
    complete_items: int
    target_votes: int
    target_fraction: float
    votes: int
    valid_votes: int
    votes_last_hour: int
    raters: int
    raters_active: int
    flagged_raters: int
    last_vote_at: datetime | None


def _per_study(session: Session, statement: Select[int, int]) -> dict[int, int]:
    return {study_id: int(count or 0) for study_id, count in session.execute(statement)}


def study_board(
    session: Session, now: datetime | None = None, names: Collection[str] | None = None
) -> list[StudyBoardRow]:
    """Every study (or those in ``names``) in creation order with its progress and recent activity.

    Read from the items' vote counters, the excluded raters' votes, the sittings active in the
    last hour and each study's newest vote: never a pass over every vote, so the overview opens
    in well under a second with tens of millions of them.
    """
    since = (now or utcnow()) - ACTIVITY_WINDOW
    test_items = _per_study(
        session, select(Item.study_id, func.count()).where(Item.role == "test").group_by(Item.study_id)
    )
    # Valid votes per test item (excluded raters left out, as the assignment queue counts them):
    # the item's counter less its excluded raters' votes (excluded raters are few).
    excluded = (
        select(Rating.item_id.label("item_id"), func.count().label("n"))
        .where(Rating.rater_id.in_(select(Rater.id).where(Rater.excluded.is_(True))))
        .group_by(Rating.item_id)
        .subquery()
    )
    valid = Item.n_votes - func.coalesce(excluded.c.n, 0)
    reached = case((valid >= Study.target_votes, Study.target_votes), else_=valid)
    progress = {
        study_id: (int(complete or 0), int(given or 0))
        for study_id, complete, given in session.execute(
            select(Item.study_id, func.sum(case((valid >= Study.target_votes, 1), else_=0)), func.sum(reached))
            .outerjoin(excluded, excluded.c.item_id == Item.id)
            .join(Study, Study.id == Item.study_id)
            .where(Item.role == "test")
            .group_by(Item.study_id)
        )
    }
    # Activity: votes given in the app within the window, found through the sittings seen in it.
    # Imported votes are not activity (they carry the time of the import, not of a rater's click).
    recent = {
        study_id: (int(n), int(raters))
        for study_id, n, raters in session.execute(
            select(Rating.study_id, func.count(), func.count(Rating.rater_id.distinct()))
            .where(
                # The sittings first, then their votes through the (partial) session index.
                Rating.session_id.is_not(None),
                Rating.session_id.in_(select(RatingSession.id).where(RatingSession.last_seen_at >= since)),
                Rating.answered_at >= since,
            )
            .group_by(Rating.study_id)
        )
    }
    flagged = _per_study(
        session,
        select(Rater.study_id, func.count(RaterFlag.rater_id.distinct()))
        .join(RaterFlag, RaterFlag.rater_id == Rater.id)
        .group_by(Rater.study_id),
    )
    # The newest vote of each study: one step down an index per study (a study's maximum time
    # over all its votes would read every one of them).
    last = {
        study_id: session.scalar(
            select(Rating.answered_at).where(Rating.study_id == study_id).order_by(Rating.id.desc()).limit(1)
        )
        for study_id in session.scalars(select(Study.id))
    }
    ids = {name: study_id for name, study_id in session.execute(select(Study.name, Study.id))}
    rows = []
    for overview in studies_overview(session):
        if names is not None and overview.study not in names:
            continue
        study_id = ids[overview.study]
        n_test = test_items.get(study_id, 0)
        complete, given = progress.get(study_id, (0, 0))
        wanted = n_test * overview.target_votes
        n_recent, active = recent.get(study_id, (0, 0))
        rows.append(
            StudyBoardRow(
                study=overview.study,
                task=overview.task,
                test_items=n_test,
                complete_items=complete,
                target_votes=overview.target_votes,
                target_fraction=given / wanted if wanted else 1.0,
                votes=overview.votes,
                valid_votes=overview.valid_votes,
                votes_last_hour=n_recent,
                raters=overview.raters,
                raters_active=active,
                flagged_raters=flagged.get(study_id, 0),
                last_vote_at=last.get(study_id),
            )
        )
    return rows


@dataclass(frozen=True)
class StudyVersion:
    """What a study's labels, fits and rater figures depend on: equal stamps, equal figures.

    A new vote raises ``last_vote_id``; an undone vote lowers ``votes``; new items change the
    item pair; excluding, re-admitting, revoking or overriding a rater changes ``rater_state``; a
    rule run that flags or clears raters changes ``flags``.
    """

    votes: int
    last_vote_id: int
    items: int
    last_item_id: int
    rater_state: tuple[tuple[int, bool, bool, str | None], ...]  # (rater id, excluded, revoked, override), by id
    flags: tuple[int, int]  # how many rule flags the study's raters hold, and the newest flag's id


def study_version(session: Session, study: Study) -> StudyVersion:
    """The current :class:`StudyVersion` of ``study`` (five small indexed queries, none over the votes:
    the count is the items' stored counters, the newest vote one step down an index)."""
    items, last_item, votes = session.execute(
        select(func.count(), func.max(Item.id), func.coalesce(func.sum(Item.n_votes), 0)).where(
            Item.study_id == study.id
        )
    ).one()
    last_vote = session.scalar(select(Rating.id).where(Rating.study_id == study.id).order_by(Rating.id.desc()).limit(1))
    raters = session.execute(
        select(Rater.id, Rater.excluded, Rater.revoked, Rater.exclusion_override)
        .where(Rater.study_id == study.id)
        .order_by(Rater.id)
    )
    n_flags, last_flag = session.execute(
        select(func.count(), func.max(RaterFlag.id))
        .join(Rater, RaterFlag.rater_id == Rater.id)
        .where(Rater.study_id == study.id)
    ).one()
    return StudyVersion(
        votes=int(votes),
        last_vote_id=int(last_vote or 0),
        items=int(items),
        last_item_id=int(last_item or 0),
        rater_state=tuple((int(i), bool(e), bool(r), o) for i, e, r, o in raters),
        flags=(int(n_flags), int(last_flag or 0)),
    )
