"""Active learning: which items should raters see next.

Votes are expensive; they are worth most on items where the model is unsure or where the model
and the raters disagree more than the raters' own spread explains. :func:`rank_items` ranks the
items that are unrated or below the vote target by

    priority = w_u * H / ln 5  +  w_d * d / (1 + d)

* ``H``: the entropy of the model's five-level distribution (0 = certain, ln 5 = uniform);
* ``d = |score - MOS| / h``: the gap between the model's 1-5 score and the item's current MOS,
  in units of the half-width ``h`` of the MOS's Student-t interval. The SD in that interval is
  pooled with a prior SD worth one vote (``prior_sd``), so an item with one vote, or with
  unanimous votes, still has a finite interval: a single vote disagreeing with the model says
  little, many votes disagreeing say a lot. Unrated items have ``d = 0``.

Both terms lie in [0, 1). Ties go to the item with fewer votes. :func:`push_priorities` stores
the ranking as item priorities in the study store, which the balanced assignment serves first
(then fewest valid votes, as usual), up to each item's vote target.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from toolkit.errors import InputError
from toolkit.io import text_ids
from toolkit.levels import entropy
from toolkit.qalign import PROB_COLUMNS, Task, check_task

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from toolkit.store.schema import Study

RANK_COLUMNS: tuple[str, ...] = (
    "rank",
    "item",
    "priority",
    "uncertainty",
    "disagreement",
    "score",
    "entropy",
    "mos",
    "ci_half_width",
    "n",
)
DEFAULT_PRIOR_SD = 0.8
"""Prior SD of one item's votes on the 1-5 scale (typical of ACR studies), worth one vote."""


@dataclass(frozen=True)
class RankingOptions:
    uncertainty_weight: float = 1.0
    disagreement_weight: float = 1.0
    prior_sd: float = DEFAULT_PRIOR_SD
    confidence: float = 0.95
    target_votes: int | None = None  # items with this many votes or more are not ranked
    include_complete: bool = False  # rank items at the target too

    def check(self) -> RankingOptions:
        if self.uncertainty_weight < 0 or self.disagreement_weight < 0:
            raise InputError("ranking weights must be non-negative")
        if self.uncertainty_weight == 0 and self.disagreement_weight == 0:
            raise InputError("at least one ranking weight must be positive")
        if not self.prior_sd > 0:
            raise InputError(f"the prior SD must be positive, got {self.prior_sd}")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence must be in (0, 1), got {self.confidence}")
        return self


def mos_half_width(
    n: np.ndarray, sd: np.ndarray, prior_sd: float = DEFAULT_PRIOR_SD, confidence: float = 0.95
) -> np.ndarray:
    """Half-width of the MOS's t interval, the SD pooled with ``prior_sd`` as one extra vote.

    ``sqrt(((n - 1) sd^2 + prior_sd^2) / n)`` is the pooled SD; NaN where ``n`` is 0.
    """
    n = np.asarray(n, dtype=float)
    sd = np.nan_to_num(np.asarray(sd, dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = np.sqrt((np.maximum(n - 1, 0) * sd**2 + prior_sd**2) / n)
        half = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1)) * pooled / np.sqrt(n)
    return np.where(n > 0, half, np.nan)


def score_columns(scores: pd.DataFrame, source: str = "scores") -> pd.DataFrame:
    """``item, score, entropy`` from a score table (``qalign score`` output or similar).

    The item column is ``item`` or ``path``; the entropy is taken from an ``entropy`` column or
    computed from ``p_excellent .. p_bad``. Rows with an error or without a score are dropped.
    """
    item_col = next((c for c in ("item", "path") if c in scores.columns), None)
    if item_col is None or "score" not in scores.columns:
        raise InputError(
            f"{source}: a score table needs an item (or path) column and a score column; found {list(scores.columns)}"
        )
    frame = scores
    if "error" in frame.columns:
        frame = frame[(frame["error"].astype("string").fillna("").str.strip() == "").to_numpy()]
    score = pd.to_numeric(frame["score"], errors="coerce").to_numpy(dtype=float)
    if "entropy" in frame.columns:
        ent = pd.to_numeric(frame["entropy"], errors="coerce").to_numpy(dtype=float)
    elif all(c in frame.columns for c in PROB_COLUMNS):
        ent = entropy(frame[list(PROB_COLUMNS)].to_numpy(dtype=float))
    else:
        raise InputError(f"{source}: no entropy column and no level probabilities ({', '.join(PROB_COLUMNS)})")
    items = text_ids(frame[item_col], f"column {item_col!r}", source)
    out = pd.DataFrame({"item": items.to_numpy(), "score": score, "entropy": ent})
    out = out[np.isfinite(out["score"]) & np.isfinite(out["entropy"])]
    dup = out["item"].duplicated()
    if dup.any():
        raise InputError(f"{source}: item {out['item'][dup].iloc[0]!r} is scored more than once")
    return out.reset_index(drop=True)


def rank_items(
    scores: pd.DataFrame,
    ratings: pd.DataFrame | None = None,
    options: RankingOptions | None = None,
) -> pd.DataFrame:
    """Rank items for rating (see the module docstring).

    ``scores``: ``item, score, entropy`` (see :func:`score_columns`). ``ratings``: per item
    ``item, n, mos, sd`` from the valid votes so far; items missing there are unrated. Returns
    ``RANK_COLUMNS``, best first, ``rank`` starting at 1.
    """
    opt = (options or RankingOptions()).check()
    frame = scores[["item", "score", "entropy"]].copy()
    if ratings is not None and len(ratings):
        missing = [c for c in ("item", "n", "mos", "sd") if c not in ratings.columns]
        if missing:
            raise InputError(f"ratings need columns item, n, mos, sd; missing {', '.join(missing)}")
        per_item = ratings[["item", "n", "mos", "sd"]].drop_duplicates("item").set_index("item")
        frame = frame.join(per_item, on="item")
    else:
        frame["n"], frame["mos"], frame["sd"] = 0, np.nan, np.nan
    frame["n"] = pd.to_numeric(frame["n"], errors="coerce").fillna(0).astype(int)
    if opt.target_votes is not None and not opt.include_complete:
        frame = frame[frame["n"] < opt.target_votes]
    half = mos_half_width(frame["n"].to_numpy(), frame["sd"].to_numpy(), opt.prior_sd, opt.confidence)
    gap = np.abs(frame["score"].to_numpy(dtype=float) - frame["mos"].to_numpy(dtype=float))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(frame["n"].to_numpy() > 0, gap / half, 0.0)
    uncertainty = frame["entropy"].to_numpy(dtype=float) / np.log(5)
    priority = opt.uncertainty_weight * uncertainty + opt.disagreement_weight * d / (1 + d)
    out = frame.assign(priority=priority, uncertainty=uncertainty, disagreement=d, ci_half_width=half)
    out = out.sort_values(["priority", "n", "item"], ascending=[False, True, True], kind="stable")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out[list(RANK_COLUMNS)].reset_index(drop=True)


# --------------------------------------------------------------------------- the study store


def push_priorities(session: Session, study: Study, items: Sequence[str]) -> int:
    """Store ``items`` (best first) as the study's priority queue: the first gets the highest
    priority. Every other item of the study goes back to priority 0, so a new push replaces the
    last one. Returns how many items got a priority."""
    from sqlalchemy import bindparam, update

    from toolkit.store.schema import Item

    items = list(dict.fromkeys(items))
    known = set(session.scalars(_item_paths(study)))
    unknown = [i for i in items if i not in known]
    if unknown:
        raise InputError(f"{len(unknown)} item(s) are not in study {study.name!r}, e.g. {unknown[0]!r}")
    session.execute(update(Item).where(Item.study_id == study.id).values(priority=0))
    if items:
        stmt = (
            update(Item)
            .where(Item.study_id == study.id, Item.path == bindparam("item_path"))
            .values(priority=bindparam("new_priority"))
        )
        # executemany through the Core connection: the ORM's bulk UPDATE wants primary keys.
        session.connection().execute(
            stmt, [{"item_path": p, "new_priority": len(items) - k} for k, p in enumerate(items)]
        )
    session.flush()
    return len(items)


def _item_paths(study: Study):  # noqa: ANN202 - a select
    from sqlalchemy import select

    from toolkit.store.schema import Item

    return select(Item.path).where(Item.study_id == study.id)


@dataclass
class StudyState:
    """The test items of a study that raters can be served, with their valid-vote statistics."""

    items: pd.DataFrame  # item, n, mos, sd (n = valid votes; mos, sd NaN when unrated)
    media_root: Path
    target_votes: int


def study_state(study: str, db_url: str | None = None) -> StudyState:
    """Test items present on disk (as far as the store knows) and their valid votes so far:
    ``n`` and the MOS and SD of the study's label table (raters excluded by the admin left out)."""
    from toolkit.analysis.study_labels import study_label_table
    from toolkit.store import load_snapshot

    snapshot = load_snapshot(study, db_url)
    labels = study_label_table(snapshot).table.set_index("item")[["n", "mos", "sd"]]
    test = snapshot.test_items
    frame = pd.DataFrame({"item": test.loc[~test["missing"], "item"].astype(str).to_numpy()})
    frame = frame.join(labels, on="item")
    frame["n"] = frame["n"].fillna(0).astype(int)
    frame[["mos", "sd"]] = frame[["mos", "sd"]].astype(float)
    return StudyState(frame, snapshot.media_root, int(snapshot.target_votes))


@dataclass
class Suggestion:
    """What :func:`suggest` ranked, wrote and pushed."""

    ranking: pd.DataFrame
    out: Path | None = None
    pushed: int = 0
    notes: list[str] = field(default_factory=list)


def _match_scores(items: Sequence[str], scores: pd.DataFrame, media_root: Path | None) -> tuple[pd.DataFrame, int]:
    """Score rows keyed by the study's item paths (score files often hold absolute paths)."""
    from toolkit.evaluation.inputs import match_paths

    keys = scores["item"]
    if media_root is not None:
        # Paths under the media root become relative first: that is how the store names items.
        root = str(media_root).rstrip("/\\") + os.sep
        keys = keys.map(lambda p: p[len(root) :] if p.startswith(root) else p)
    found = match_paths(keys.reset_index(drop=True), pd.Series(list(items), dtype=object))
    matched = scores.reset_index(drop=True).assign(item=found.to_numpy())
    return matched[found.notna().to_numpy()], int(found.isna().sum())


def suggest(
    study: str | None = None,
    *,
    db_url: str | None = None,
    scores: pd.DataFrame | str | os.PathLike[str] | None = None,
    votes: pd.DataFrame | str | os.PathLike[str] | None = None,
    model: str | None = None,
    adapter: str | None = None,
    task: str = "quality",
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 8,
    options: RankingOptions | None = None,
    top: int | None = None,
    out: str | os.PathLike[str] | None = None,
    push: bool = False,
    progress: bool = True,
) -> Suggestion:
    """Rank items for rating, write the ranking (``out``, CSV/Parquet/JSON) and optionally push it.

    With ``study`` the candidates are the study's test items, rated so far by its valid votes,
    and the study's vote target applies; ``scores`` (a score table) or ``model`` (scores the
    candidates now) gives the model side. Without a study, the items of ``scores`` are ranked,
    with ``votes`` (item, rater, vote) as the ratings so far. ``push`` (study only) puts the
    ``top`` items (all ranked ones by default) at the front of the study's assignment queue.
    """
    from toolkit.io import read_table, write_table

    opt = options or RankingOptions()
    if top is not None and top < 1:
        raise InputError(f"top must be a positive number of items, got {top}")
    if (scores is None) == (model is None):
        raise InputError("give a score table or a model to score the items with (one of them)")
    if push and study is None:
        raise InputError("pushing needs a study")
    notes: list[str] = []
    # Item ids as written ("001" is not "1"), a blank one an error naming its line.
    score_table = read_table(scores, required=("item", "path")) if isinstance(scores, (str, os.PathLike)) else scores

    if study is not None:
        if votes is not None:
            raise InputError("with a study the ratings come from the study's votes; drop the vote table")
        state = study_state(study, db_url)
        if state.items.empty:
            raise InputError(f"study {study!r} has no test items that can be served")
        opt = RankingOptions(**{**opt.__dict__, "target_votes": opt.target_votes or state.target_votes})
        ratings = state.items[state.items["n"] > 0]
        candidates = state.items["item"].tolist()
        if model is not None:  # exactly one of scores and model is given (checked above)
            score_table = _score_with_model(
                [str(state.media_root / i) for i in candidates],
                candidates,
                model,
                adapter,
                check_task(task),
                device,
                dtype,
                batch_size,
                progress,
            )
        table = score_columns(score_table)
        table, unmatched = _match_scores(candidates, table, state.media_root)
        if unmatched:
            notes.append(f"{unmatched} scored item(s) are not servable test items of the study and were ignored")
        unscored = len(candidates) - len(table)
        if unscored:
            notes.append(f"{unscored} test item(s) have no score and were not ranked")
    else:
        if score_table is None:
            raise InputError("without a study, give a score table")
        table = score_columns(score_table)
        ratings = None
        if votes is not None:
            vote_table = read_table(votes, required=("item",)) if isinstance(votes, (str, os.PathLike)) else votes
            ratings, unmatched = _ratings_for(table["item"], vote_table)
            if unmatched:
                notes.append(f"votes on {unmatched} item(s) without a score were ignored")
    ranking = rank_items(table, ratings, opt)
    if top is not None:
        ranking = ranking.head(top)
    result = Suggestion(ranking, notes=notes)
    if out is not None:
        result.out = write_table(ranking, out)
    if push and study is not None:  # a push without a study was refused above
        from toolkit.store import Store, get_study

        store = Store(db_url)
        try:
            with store.session() as session:
                result.pushed = push_priorities(session, get_study(session, study), ranking["item"].tolist())
        finally:
            store.dispose()
    return result


def _ratings_for(items: pd.Series, votes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``item, n, mos, sd`` from a long vote table, keyed by the matching entries of ``items``."""
    from toolkit.evaluation.inputs import match_paths
    from toolkit.levels import vote_stats

    missing = [c for c in ("item", "vote") if c not in votes.columns]
    if missing:
        raise InputError(f"the vote table needs columns item and vote (missing {', '.join(missing)})")
    items_text = text_ids(votes["item"], "column 'item'", "the vote table")
    stats_by_item = vote_stats(votes.assign(item=items_text), item="item", vote="vote").reset_index()
    found = match_paths(stats_by_item["item"], items.reset_index(drop=True))
    keep = found.notna().to_numpy()
    ratings = stats_by_item.loc[keep, ["n", "mos", "sd"]].assign(item=found[keep].to_numpy())
    return ratings[["item", "n", "mos", "sd"]], int((~keep).sum())


def _score_with_model(
    files: list[str],
    items: list[str],
    model: str,
    adapter: str | None,
    task: Task,
    device: str,
    dtype: str,
    batch_size: int,
    progress: bool,
) -> pd.DataFrame:
    from toolkit.scoring import Scorer

    scorer = Scorer.from_pretrained(model, adapter, dtype, device, batch_size=batch_size, progress=progress)
    frame = scorer.score(files, task=task, progress=progress)
    by_file = dict(zip(files, items))
    return frame.assign(path=frame["path"].map(by_file))
