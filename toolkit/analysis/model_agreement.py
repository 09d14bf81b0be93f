"""Model-in-the-loop rater QA: each rater's votes against a model's scores and against their peers.

A rater whose votes disagree with the other raters may be careless, or may see something the
others miss; one who disagrees with the others *and* with an automatic scorer (``qalign score``)
is much more likely careless. Per rater, over the items they voted on that have a model score
and at least one other rater's vote (``common_items``):

* ``srcc_model``: Spearman correlation of the rater's votes with the model's scores;
* ``srcc_peers``: Spearman correlation of the rater's votes with the leave-one-out MOS (the
  mean vote of the *other* raters on each item);
* ``disagrees_with_both``: both correlations below their thresholds, on at least
  ``min_items`` common items.

A rater who voted more than once on an item counts with their mean vote there. A correlation
is NaN on fewer than 3 common items or when the rater's votes (or the other side) do not vary
(a rater with one answer for everything is the screening's straightlining check).

Score files are matched to the study's item ids by :func:`match_model_scores`: the exact path,
then the path with separators and ``./`` normalised, then the file name, then the file name
without its extension, the last two only where they are unique on both sides.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from toolkit.analysis.grouped import group_moments
from toolkit.analysis.votes import Votes
from toolkit.errors import InputError

if TYPE_CHECKING:
    from toolkit.evaluation.inputs import ScoreSet

AGREEMENT_COLUMNS: tuple[str, ...] = ("common_items", "srcc_model", "srcc_peers", "disagrees_with_both")
"""Columns :func:`rater_model_agreement` returns (and ``qalign analyze --scores`` adds to ``raters.csv``)."""

MATCH_RULE = "exact path, normalised path, unique file name, unique file name without extension"


@dataclass(frozen=True)
class ModelAgreementConfig:
    """Thresholds of the QA flag; a rater is flagged only when *both* correlations are below theirs."""

    min_srcc_model: float = 0.4
    min_srcc_peers: float = 0.4
    min_items: int = 20  # common items a rater needs before being judged
    min_matched: int = 10  # study items that must match a scored path, or the score file is refused


@dataclass(frozen=True)
class MatchedScores:
    """Model scores keyed by the study's item ids (only the items that matched)."""

    scores: pd.Series
    n_scored: int  # rows of the score file with a score
    n_items: int  # study items
    notes: tuple[str, ...] = ()

    @property
    def n_matched(self) -> int:
        return len(self.scores)


@dataclass
class ModelAgreement:
    """The per-rater table and the study-level figures for the report."""

    table: pd.DataFrame  # index rater; AGREEMENT_COLUMNS
    n_matched: int
    n_items: int
    srcc_mos: float  # model scores vs the MOS of all votes, over the matched items
    config: ModelAgreementConfig
    source: str = "scores"
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> pd.DataFrame:
        return self.table[self.table["disagrees_with_both"]]


def _stem_match(keys: pd.Series, items: pd.Series, found: pd.Series) -> pd.Series:
    """Fill the keys still unmatched by the file name without extension, unique on both sides."""

    def stem(path: object) -> str:
        return posixpath.splitext(posixpath.basename(posixpath.normpath(str(path).replace("\\", "/"))))[0]

    key_stems = keys.map(stem)
    if key_stems.duplicated().any():
        return found
    by_stem = pd.Series(items.to_numpy(), index=items.map(stem).to_numpy())
    by_stem = by_stem[~by_stem.index.duplicated(keep=False)]
    return found.fillna(key_stems.map(by_stem))


def match_model_scores(
    paths: Sequence[str] | pd.Series,
    scores: Sequence[float] | np.ndarray | pd.Series,
    items: Sequence[object] | pd.Index,
    min_matched: int = 10,
    source: str = "scores",
) -> MatchedScores:
    """Model scores (one per path) keyed by the study items they match (rule: :data:`MATCH_RULE`).

    Raises :class:`~toolkit.errors.InputError` in one line when fewer than ``min_matched``
    study items match (naming how many did, and an example of each side), or when two scored
    paths match the same item.
    """
    from toolkit.evaluation.inputs import match_paths

    keys = pd.Series([str(p) for p in paths], dtype=object)
    values = np.asarray(scores, dtype=float)
    if len(keys) != len(values):
        raise InputError(f"{source}: {len(keys)} path(s) but {len(values)} score(s)")
    catalogue = pd.Series([str(i) for i in items], dtype=object)
    found = match_paths(keys, catalogue) if len(keys) else pd.Series(dtype=object)
    if found.isna().any():
        found = _stem_match(keys, catalogue, found)
    hit = found.notna().to_numpy() & np.isfinite(values)
    matched = pd.Series(values[hit], index=pd.Index(found.to_numpy()[hit], name="item"), name="score")
    if matched.index.duplicated().any():
        twice = matched.index[matched.index.duplicated()][0]
        raise InputError(f"{source}: two scored paths match the same study item {twice!r}")
    if len(matched) < min_matched:
        example = f" (e.g. {keys.iloc[0]!r} vs item {catalogue.iloc[0]!r})" if len(keys) and len(catalogue) else ""
        raise InputError(
            f"{source}: only {len(matched)} of {len(catalogue)} study item(s) matched a scored path, "
            f"at least {min_matched} needed; paths match item ids by {MATCH_RULE}{example}"
        )
    notes: list[str] = []
    if len(matched) < len(catalogue):
        notes.append(f"{source}: {len(catalogue) - len(matched)} study item(s) have no model score")
    unmatched = int((~found.notna()).sum())
    if unmatched:
        notes.append(f"{source}: {unmatched} scored path(s) match no study item")
    return MatchedScores(matched, int(np.isfinite(values).sum()), len(catalogue), tuple(notes))


def _group_pearson(group: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    n, mx, sxx, _ = group_moments(group, x, n_groups)
    _, my, syy, _ = group_moments(group, y, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        sxy = np.bincount(group, weights=(x - mx[group]) * (y - my[group]), minlength=n_groups) / n
        r = sxy / np.sqrt(sxx * syy)
    # Exactly constant ranks give sxx == 0 (no float noise: ranks of equal votes are equal).
    return np.where((n >= 3) & (sxx > 0) & (syy > 0), np.clip(r, -1.0, 1.0), np.nan)


def rater_model_agreement(votes: Votes, scores: pd.Series, config: ModelAgreementConfig | None = None) -> pd.DataFrame:
    """Per rater: ``common_items``, ``srcc_model``, ``srcc_peers``, ``disagrees_with_both``.

    ``votes``: the study's votes (every rater). ``scores``: model scores indexed by item id
    (items of ``votes.items``; others are ignored, missing ones are left out of the
    correlations), as :func:`match_model_scores` returns them. One row per rater of
    ``votes.raters``, index ``rater``. See the module docstring for the definitions.
    """
    cfg = config or ModelAgreementConfig()
    n_items, n_raters = votes.n_items, votes.n_raters
    model = scores.reindex(votes.items).to_numpy(dtype=float)
    # One cell per (rater, item): the rater's mean vote there.
    cell, cell_code = np.unique(votes.rater * n_items + votes.item, return_inverse=True)
    c_rater, c_item = cell // n_items, cell % n_items
    c_n = np.bincount(cell_code).astype(float)
    c_sum = np.bincount(cell_code, weights=votes.vote)
    i_n = np.bincount(votes.item, minlength=n_items).astype(float)
    i_sum = np.bincount(votes.item, weights=votes.vote, minlength=n_items)
    others = i_n[c_item] - c_n
    with np.errstate(invalid="ignore", divide="ignore"):
        peers = np.where(others > 0, (i_sum[c_item] - c_sum) / others, np.nan)
    own = c_sum / c_n
    theirs = model[c_item]
    use = np.isfinite(peers) & np.isfinite(theirs)
    frame = pd.DataFrame({"rater": c_rater[use], "own": own[use], "model": theirs[use], "peers": peers[use]})
    ranks = frame.groupby("rater")[["own", "model", "peers"]].rank(method="average").to_numpy(dtype=float)
    group = frame["rater"].to_numpy()
    common = np.bincount(group, minlength=n_raters)
    srcc_model = _group_pearson(group, ranks[:, 0], ranks[:, 1], n_raters)
    srcc_peers = _group_pearson(group, ranks[:, 0], ranks[:, 2], n_raters)
    with np.errstate(invalid="ignore"):
        flagged = (common >= cfg.min_items) & (srcc_model < cfg.min_srcc_model) & (srcc_peers < cfg.min_srcc_peers)
    return pd.DataFrame(
        {
            "common_items": common.astype(int),
            "srcc_model": srcc_model,
            "srcc_peers": srcc_peers,
            "disagrees_with_both": flagged,
        },
        index=votes.raters.rename("rater"),
    )


def model_agreement(
    votes: Votes, matched: MatchedScores, config: ModelAgreementConfig | None = None, source: str = "scores"
) -> ModelAgreement:
    """:func:`rater_model_agreement` plus the model's SRCC with the MOS of all votes on the matched items."""
    cfg = config or ModelAgreementConfig()
    table = rater_model_agreement(votes, matched.scores, cfg)
    mos = pd.Series(np.bincount(votes.item, weights=votes.vote) / votes.item_counts(), index=votes.items)
    common = matched.scores.index.intersection(votes.items)
    srcc_mos = float("nan")
    if len(common) >= 3:
        srcc_mos = float(stats.spearmanr(matched.scores.loc[common], mos.loc[common]).statistic)
    return ModelAgreement(table, len(common), votes.n_items, srcc_mos, cfg, source, list(matched.notes))


def agreement_from_scores(
    score_set: ScoreSet, votes: Votes, config: ModelAgreementConfig | None = None
) -> ModelAgreement:
    """A score file already read (:func:`toolkit.evaluation.inputs.read_scores`) matched to the
    study's items (:func:`match_model_scores`), then :func:`model_agreement`."""
    cfg = config or ModelAgreementConfig()
    frame = score_set.frame
    matched = match_model_scores(frame["path"], frame["score"], votes.items, cfg.min_matched, source=score_set.source)
    result = model_agreement(votes, matched, cfg, source=score_set.source)
    if score_set.skipped:
        result.notes.append(f"{score_set.source}: {score_set.skipped} row(s) skipped (error or no score)")
    return result


def read_model_agreement(
    score_file: str | os.PathLike[str],
    votes: Votes,
    config: ModelAgreementConfig | None = None,
    score_col: str | None = None,
) -> ModelAgreement:
    """A ``qalign score`` output (``path``, ``score``; rows with an error skipped) matched to the
    study's items, then :func:`model_agreement`."""
    from toolkit.evaluation.inputs import read_scores

    return agreement_from_scores(read_scores(score_file, score_col=score_col), votes, config)


def with_model_agreement(raters: pd.DataFrame, agreement: ModelAgreement) -> pd.DataFrame:
    """``raters`` (a table with a ``rater`` column, e.g. ``raters.csv``) with :data:`AGREEMENT_COLUMNS`
    appended; its own columns stay first and unchanged. A rater without votes on the study items
    gets 0 common items, NaN correlations and no flag."""
    qa = agreement.table.reindex(raters["rater"])
    return raters.assign(
        common_items=qa["common_items"].fillna(0).astype(int).to_numpy(),
        srcc_model=qa["srcc_model"].to_numpy(dtype=float),
        srcc_peers=qa["srcc_peers"].to_numpy(dtype=float),
        disagrees_with_both=qa["disagrees_with_both"].fillna(False).astype(bool).to_numpy(),
    )
