"""Mean opinion scores: per-item statistics and the plain MOS "model".

Confidence intervals default to Student's t (``ci="t"``), right for the 15-30 votes of a lab
study. ``ci="normal"`` gives sureal's interval, score +- 1.95996 standard errors.

An item with a single vote says nothing about spread: it gets ``sd = 0`` (as in
:func:`toolkit.levels.histogram_stats`), the largest standard error a 1-5 vote can have (2, half
the scale) and the whole scale as its interval, so it never looks more certain than it is.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from toolkit.analysis.grouped import group_mean, group_moments, group_sd
from toolkit.analysis.result import SubjectModelResult, item_frame, rater_frame
from toolkit.analysis.votes import Votes
from toolkit.errors import InputError
from toolkit.levels import histogram_stats, t_interval
from toolkit.qalign import COUNT_COLUMNS

CiMethod = Literal["t", "normal"]

Z95 = 1.95996
"""The normal 97.5 % quantile as sureal writes it (its ``quality_scores_ci95``)."""

SCALE_LOW, SCALE_HIGH = 1.0, 5.0
SINGLE_VOTE_STD = (SCALE_HIGH - SCALE_LOW) / 2
"""The largest standard deviation a variable on [1, 5] can have; used as the standard error of a
score resting on one vote."""


def item_statistics(votes: Votes, confidence: float = 0.95) -> pd.DataFrame:
    """Per item: ``n, mos, sd, ci_low, ci_high`` and ``COUNT_COLUMNS`` (t-based CI, vote histogram excellent first).

    The numbers of :func:`toolkit.levels.vote_stats`, in the item order of ``votes`` (items
    without votes have empty rows); the histogram is counted with one ``np.bincount``.
    """
    counts = level_counts(votes.item, votes.vote, votes.n_items)
    rated = np.flatnonzero(counts.sum(axis=1) > 0)
    stats = histogram_stats(counts[rated], confidence)
    for k, column in enumerate(COUNT_COLUMNS):
        stats[column] = counts[rated, k]
    stats["n"] = stats["n"].astype(int)
    stats.index = pd.Index(rated)
    stats = stats[["n", "mos", "sd", "ci_low", "ci_high", *COUNT_COLUMNS]].reindex(np.arange(votes.n_items))
    stats.index = votes.items.rename("item")
    return stats


def level_counts(item: np.ndarray, vote: np.ndarray, n_items: int) -> np.ndarray:
    """Votes per item and level, shape (n_items, 5), in ``LEVEL_VALUES`` order (excellent first).

    ``vote`` holds levels 1-5 (checked by the caller)."""
    column = 5 - np.asarray(vote).astype(np.int64)  # 5 -> 0 (excellent) .. 1 -> 4 (bad)
    flat = np.bincount(np.asarray(item, dtype=np.int64) * 5 + column, minlength=n_items * 5)
    return flat.reshape(n_items, 5)


def mean_scores(votes: Votes, ci: CiMethod = "t") -> pd.DataFrame:
    """Score = mean of ``votes.vote`` per item, with ``std`` (standard error), ``sd``, CI and ``n``."""
    n_items = votes.n_items
    n = np.bincount(votes.item, minlength=n_items)
    if (n == 0).any():
        raise InputError(
            f"{int((n == 0).sum())} item(s) have no votes left: {', '.join(map(repr, votes.items[n == 0][:5]))}"
        )
    score = group_mean(votes.item, votes.vote, n_items)
    sd = group_sd(votes.item, votes.vote, n_items, ddof=1)
    single = n < 2
    std = np.where(single, SINGLE_VOTE_STD, sd / np.sqrt(n))
    if ci == "t":
        low, high = t_interval(score, sd, n)
    elif ci == "normal":
        low, high = score - Z95 * std, score + Z95 * std
    else:
        raise InputError(f"unknown confidence interval method {ci!r}; use 't' or 'normal'")
    low = np.where(single, SCALE_LOW, low)
    high = np.where(single, SCALE_HIGH, high)
    return item_frame(votes, score, std, sd, low, high, n)


def descriptive_rater_stats(votes: Votes, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias (mean of vote minus item score), its standard error and inconsistency per rater.

    Inconsistency is the root mean square of the residual after the bias is removed (ddof 0),
    the quantity sureal starts its MLE from. Used by the models that have no rater model of
    their own, so that every rater row carries comparable numbers.
    """
    residual = votes.vote - np.asarray(scores, dtype=float)[votes.item]
    n, bias, m2, _ = group_moments(votes.rater, residual, votes.n_raters)
    inconsistency = np.sqrt(np.maximum(m2, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        bias_std = np.where(n > 0, inconsistency / np.sqrt(n), np.nan)
    return bias, bias_std, inconsistency


def fit_mos(votes: Votes, ci: CiMethod = "t") -> SubjectModelResult:
    """Plain MOS: every vote counts, nothing is rejected."""
    items = mean_scores(votes, ci)
    bias, bias_std, inconsistency = descriptive_rater_stats(votes, items["score"].to_numpy())
    raters = rater_frame(votes, bias, inconsistency, bias_std=bias_std)
    return SubjectModelResult("mos", items, raters).check_finite()
