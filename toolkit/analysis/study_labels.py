"""The labels of a study: one table, whichever command asks for them.

``qalign convert --study``, ``qalign export-dataset``, ``qalign study export --aggregate``,
``qalign suggest`` and the admin app all take a study's per-item labels from
:func:`study_label_table` (test items) or :func:`item_aggregates` (every item), on a
:class:`~toolkit.store.StudySnapshot`, so they read the same valid votes (raters excluded by the
admin left out) and give every item the same MOS and the same level.

Scale policy
------------
A study's labels are on its ACR vote scale, [1, 5], whatever the subject model. The plain MOS
(``mos``) is a mean of 1-5 votes and lies there already. A subject model's score (``mle``,
``mle_co``, ``bt500``, ``p913``) is an estimate of the item's quality on the vote scale and can
land slightly outside it (an item every rater gave 5, seen through the raters' biases); such
scores are clipped into [1, 5] and the number clipped is reported in the notes. The ends of
every interval (a Student-t interval of a few votes too) are clipped into [1, 5] as well: no
label is less certain than "somewhere on the scale". Levels are then
``LevelScale(1, 5).to_levels(mos, "equal")``: five equal intervals of the vote scale, never the
range the data happens to span, so the same item gets the same level from every command and a
study with only good items has no *bad* ones.

Scores and intervals come from :func:`toolkit.analysis.clean_labels`, the code ``qalign analyze``
runs (the plain MOS from the same formulas on the per-item vote histograms, so a study of
millions of votes costs a pass over them, not a fit): the plain MOS has a Student-t 95 %
interval (the whole scale for an item with one vote); a subject model has its own interval and
sees each item's content group. ``n`` and the vote counts (``COUNT_COLUMNS``, excellent first)
always count the raw valid votes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from toolkit.analysis.mos import level_counts
from toolkit.analysis.names import SUBJECT_MODELS, ModelName, is_model_name
from toolkit.analysis.pipeline import clean_labels
from toolkit.errors import InputError
from toolkit.levels import LevelScale, MosRule, t_interval
from toolkit.qalign import COUNT_COLUMNS, LEVEL_VALUES
from toolkit.store.histograms import item_histograms
from toolkit.store.schema import Study
from toolkit.store.snapshot import StudySnapshot

ACR_SCALE = LevelScale(1.0, 5.0)
"""The vote scale every study label lives on (see the module docstring)."""

LEVEL_RULE: MosRule = "equal"

STAT_COLUMNS: tuple[str, ...] = ("mos", "sd", "ci_low", "ci_high", "n", "level", *COUNT_COLUMNS)
LABEL_COLUMNS: tuple[str, ...] = ("item", *STAT_COLUMNS, "content_group", "sha256", "kind")
"""Columns of :attr:`StudyLabels.table`."""

AGGREGATE_COLUMNS: tuple[str, ...] = ("item", "item_id", "kind", "role", "content_group", "sha256", *STAT_COLUMNS)
"""Columns of :func:`item_aggregates`."""


@dataclass
class StudyLabels:
    """Per-item labels of a study's test items (see :func:`study_label_table`)."""

    table: pd.DataFrame  # LABEL_COLUMNS, one row per test item with valid votes, in study order
    subject_model: ModelName
    unrated: tuple[str, ...] = ()  # test items without valid votes (not in ``table``)
    notes: list[str] = field(default_factory=list)
    scale: LevelScale = ACR_SCALE

    def __len__(self) -> int:
        return len(self.table)


def _vote_counts(votes: pd.DataFrame) -> pd.DataFrame:
    """``n`` and the vote counts per item, ``COUNT_COLUMNS`` order (excellent first), indexed by item.

    Counted with one ``np.bincount`` over item codes (the snapshot's votes are valid levels).
    """
    column = votes["item"]
    if isinstance(column.dtype, pd.CategoricalDtype):  # the store's: coded already, no factorizing
        codes, items = column.cat.codes.to_numpy(), np.asarray(column.cat.categories, dtype=object)
    else:
        codes, items = pd.factorize(column, sort=True)
    counts = level_counts(codes, votes["vote"].to_numpy(), len(items))
    voted = counts.sum(axis=1) > 0  # categories nobody voted on are no items of these votes
    counts = counts[voted]
    out = pd.DataFrame(
        counts, columns=list(COUNT_COLUMNS), index=pd.Index(np.asarray(items, dtype=object)[voted], name="item")
    )
    out.insert(0, "n", counts.sum(axis=1).astype(int))
    return out


def _scores(votes: pd.DataFrame, model: ModelName) -> pd.DataFrame:
    """``mos, sd, ci_low, ci_high`` per item from ``clean_labels`` (the analysis' own definitions)."""
    columns = [c for c in ("item", "rater", "vote", "content_group") if c in votes.columns]
    # Screening does not change the scores (flagged raters are only dropped on request); skip it.
    cleaned = clean_labels(votes[columns].reset_index(drop=True), model=model, screening=None)
    cleaned = cleaned.set_index("item").rename(columns={"score": "mos"})
    return cleaned[["mos", "sd", "ci_low", "ci_high"]].astype(float)


def _mos_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """``mos, sd, ci_low, ci_high`` of the plain MOS from the vote histograms (``COUNT_COLUMNS``):
    the numbers :func:`toolkit.analysis.mos.mean_scores` computes vote by vote (mean, sample SD
    from the deviations, Student-t interval, the whole scale for a single vote), at a cost per
    item instead of per vote."""
    c = counts[list(COUNT_COLUMNS)].to_numpy(dtype=float)
    values = np.asarray(LEVEL_VALUES, dtype=float)
    n = c.sum(axis=1)
    mos = c @ values / n  # sums of whole votes: exact, as the per-vote sum
    deviation = values[None, :] - mos[:, None]
    m2 = (c * deviation * deviation).sum(axis=1) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        var = m2 * n / (n - 1)
    sd = np.where(n > 1, np.sqrt(np.maximum(var, 0.0)), 0.0)
    low, high = t_interval(mos, sd, n)
    single = n < 2
    low, high = np.where(single, ACR_SCALE.low, low), np.where(single, ACR_SCALE.high, high)
    return pd.DataFrame({"mos": mos, "sd": sd, "ci_low": low, "ci_high": high}, index=counts.index)


def _statistics(votes: pd.DataFrame, model: ModelName) -> tuple[pd.DataFrame, int]:
    """Scores on the vote scale, levels and counts per voted item; and how many scores were clipped.

    The plain MOS comes from the vote histograms (no per-vote fit); a subject model from
    ``clean_labels``."""
    counts = _vote_counts(votes)
    scores = _mos_from_counts(counts) if model == "mos" else _scores(votes, model)
    return _labelled(scores, counts)


def _labelled(scores: pd.DataFrame, counts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``STAT_COLUMNS`` from per-item scores and vote counts (clipped onto the scale, levelled);
    and how many scores were clipped."""
    stats = scores.join(counts, how="inner")
    outside = ((stats["mos"] < ACR_SCALE.low) | (stats["mos"] > ACR_SCALE.high)).to_numpy()
    for column in ("mos", "ci_low", "ci_high"):
        stats[column] = stats[column].clip(ACR_SCALE.low, ACR_SCALE.high)
    stats["level"] = ACR_SCALE.to_levels(stats["mos"].to_numpy(), LEVEL_RULE) if len(stats) else []
    return stats[list(STAT_COLUMNS)], int(outside.sum())


def _check_model(subject_model: str) -> ModelName:
    if not is_model_name(subject_model):
        raise InputError(f"unknown subject model {subject_model!r}; use one of {', '.join(SUBJECT_MODELS)}")
    return subject_model


def _excluded_note(raters: int, votes: int) -> list[str]:
    """The note on the raters the admin excluded (none when there are none)."""
    if not raters:
        return []
    return [f"{raters} rater(s) excluded by the admin; their {votes} vote(s) are not counted"]


def study_label_table(snapshot: StudySnapshot, subject_model: str = "mos") -> StudyLabels:
    """Labels of the study's test items from its valid votes (see the module docstring).

    One row per test item with at least one valid vote, in study item order (so that of two
    identical files the one added first comes first): ``LABEL_COLUMNS``. Gold and training items
    are left out: they were chosen to teach and check the raters. A study without valid votes on
    its test items gives an empty table.
    """
    model = _check_model(subject_model)
    test = snapshot.test_items
    on_test = (snapshot.votes["role"] == "test").to_numpy()
    votes = snapshot.votes if on_test.all() else snapshot.votes[on_test]  # no copy when every vote is on a test item
    notes = _excluded_note(snapshot.raters_excluded, snapshot.excluded_votes)
    if votes.empty:
        table = pd.DataFrame({c: pd.Series(dtype=object) for c in LABEL_COLUMNS})
        return StudyLabels(table, model, tuple(test["item"]), notes)
    stats, clipped = _statistics(votes, model)
    rated = test[test["item"].isin(stats.index)]
    table = rated[["item"]].join(stats, on="item")
    for column in ("content_group", "sha256", "kind"):
        table[column] = rated[column].astype(str).to_numpy()
    if clipped:
        notes.append(f"{clipped} {subject_model} score(s) outside the vote scale [1, 5] were clipped onto it")
    unrated = tuple(test.loc[~test["item"].isin(stats.index), "item"])
    return StudyLabels(table[list(LABEL_COLUMNS)].reset_index(drop=True), model, unrated, notes)


def study_mos_labels(session: Session, study: Study) -> StudyLabels:
    """``study_label_table(read_snapshot(session, study), "mos")``, the same table to the last bit,
    from the items' stored vote histograms (:func:`toolkit.store.histograms.item_histograms`)
    instead of the votes: a read of the items, under a second at AVA size."""
    histograms = item_histograms(session, study)
    test = histograms.items[histograms.items["role"] == "test"]
    counts = test.set_index("item")[list(COUNT_COLUMNS)]
    n = counts.sum(axis=1)
    notes = _excluded_note(histograms.excluded_raters, histograms.excluded_votes)
    voted = (n > 0).to_numpy()
    unrated = tuple(test.loc[~voted, "item"])
    if not voted.any():
        table = pd.DataFrame({c: pd.Series(dtype=object) for c in LABEL_COLUMNS})
        return StudyLabels(table, "mos", unrated, notes)
    counts = counts[voted]
    counts.insert(0, "n", n[voted].astype(int))
    stats, _ = _labelled(_mos_from_counts(counts), counts)  # a mean of 1-5 votes is never clipped
    rated = test[voted]
    # ``stats`` has the rated items' rows in their order: put side by side, no join on the names.
    table = {
        "item": pd.Series(rated["item"].to_numpy(), dtype=object),
        **{c: stats[c].to_numpy() for c in STAT_COLUMNS},
    }
    for column in ("content_group", "sha256", "kind"):
        table[column] = rated[column].astype(str).to_numpy()
    return StudyLabels(pd.DataFrame(table, columns=list(LABEL_COLUMNS)), "mos", unrated, notes)


def item_aggregates(snapshot: StudySnapshot) -> pd.DataFrame:
    """Every item of the study (gold and training items too), with the plain-MOS columns of
    :func:`study_label_table` from its valid votes: ``AGGREGATE_COLUMNS``.

    Items without valid votes are kept with ``n = 0`` and empty statistics, so nothing
    disappears from an export silently. A test item's row equals its row of
    ``study_label_table(snapshot, "mos")``.
    """
    items = snapshot.items[["item", "item_id", "kind", "role", "content_group", "sha256"]].copy()
    if snapshot.votes.empty:
        stats = pd.DataFrame(columns=list(STAT_COLUMNS))
    else:
        # Without the role column every item is scored: a plain mean is per item, so a test
        # item's numbers do not depend on the others.
        stats, _ = _statistics(snapshot.votes.drop(columns=["role"]), "mos")
    out = items.join(stats, on="item")
    counts = ["n", *COUNT_COLUMNS]
    out[counts] = out[counts].fillna(0).astype(int)
    out["level"] = out["level"].astype("Int64")
    for column in ("mos", "sd", "ci_low", "ci_high"):
        out[column] = out[column].astype(float)
    return out[list(AGGREGATE_COLUMNS)].reset_index(drop=True)
