"""Split-half inter-rater agreement: the noise ceiling an automatic scorer can reach.

For each random split, the votes of every item are divided into two halves of equal size (with
an odd count one vote, chosen at random, sits out), the two half-MOS vectors are correlated and
the Spearman-Brown formula ``2 r / (1 + r)`` projects the correlation of half the votes to the
full count. The estimate is the mean over splits; the interval is a percentile bootstrap in
which every replicate draws a fresh split *and* resamples the items, so it covers both the
arbitrariness of the split and the finite set of items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from toolkit.analysis.votes import Votes
from toolkit.errors import InputError


@dataclass(frozen=True)
class SplitHalfResult:
    """Spearman-Brown corrected SRCC and PLCC with their intervals, and the raw half-split means."""

    srcc: float
    srcc_ci: tuple[float, float]
    plcc: float
    plcc_ci: tuple[float, float]
    srcc_half: float
    plcc_half: float
    n_items: int
    n_splits: int
    confidence: float


def spearman_brown(r: np.ndarray | float) -> np.ndarray:
    """Reliability of the full vote count from the correlation between two halves."""
    r = np.asarray(r, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2.0 * r / (1.0 + r)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))


def _padded(votes: Votes, n_e: np.ndarray) -> np.ndarray:
    """Votes as an (items, max votes per item) matrix, NaN-padded, one row per item."""
    order = np.argsort(votes.item, kind="stable")
    e = votes.item[order]
    start = np.concatenate([[0], np.cumsum(n_e)[:-1]])
    matrix = np.full((votes.n_items, int(n_e.max())), np.nan)
    matrix[e, np.arange(e.size) - start[e]] = votes.vote[order]
    return matrix


def _half_means(
    matrix: np.ndarray, padding: np.ndarray, half: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random split: shuffle each row (padding last), first ``half`` votes vs the next ``half``."""
    keys = rng.random(matrix.shape)
    keys[padding] = np.inf
    shuffled = np.take_along_axis(matrix, np.argsort(keys, axis=1), axis=1)
    col = np.arange(matrix.shape[1])[None, :]
    h = half[:, None]
    mean_a = np.where(col < h, shuffled, 0.0).sum(axis=1) / half
    mean_b = np.where((col >= h) & (col < 2 * h), shuffled, 0.0).sum(axis=1) / half
    return mean_a, mean_b


def split_half_agreement(votes: Votes, n_splits: int = 200, confidence: float = 0.95, seed: int = 0) -> SplitHalfResult:
    """Split-half SRCC/PLCC with Spearman-Brown correction over the items with two or more votes."""
    if n_splits < 2:
        raise InputError(f"split-half agreement needs at least 2 splits, got {n_splits}")
    n_e = votes.item_counts()
    eligible = np.flatnonzero(n_e >= 2)
    if eligible.size < 3:
        raise InputError(f"split-half agreement needs at least 3 items with 2 or more votes; found {eligible.size}")
    matrix = _padded(votes, n_e)[eligible]
    padding = np.isnan(matrix)
    half = n_e[eligible] // 2
    rng = np.random.default_rng(seed)

    halves_a = np.empty((n_splits, eligible.size))
    halves_b = np.empty((n_splits, eligible.size))
    for k in range(n_splits):  # one vectorised pass over the vote matrix per split
        halves_a[k], halves_b[k] = _half_means(matrix, padding, half, rng)
    boot = rng.integers(0, eligible.size, size=(n_splits, eligible.size))
    boot_a = np.take_along_axis(halves_a, boot, axis=1)
    boot_b = np.take_along_axis(halves_b, boot, axis=1)

    def srcc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _pearson_rows(stats.rankdata(a, axis=1), stats.rankdata(b, axis=1))

    s_half, p_half = srcc(halves_a, halves_b), _pearson_rows(halves_a, halves_b)
    s_boot = spearman_brown(srcc(boot_a, boot_b))
    p_boot = spearman_brown(_pearson_rows(boot_a, boot_b))
    if not (np.isfinite(s_half).all() and np.isfinite(p_half).all()):
        raise InputError("split-half agreement is undefined: the half-MOS values do not vary across items")
    tail = (1.0 - confidence) / 2 * 100
    s_low, s_high = np.nanpercentile(s_boot, [tail, 100 - tail])
    p_low, p_high = np.nanpercentile(p_boot, [tail, 100 - tail])
    return SplitHalfResult(
        srcc=float(spearman_brown(s_half).mean()),
        srcc_ci=(float(s_low), float(s_high)),
        plcc=float(spearman_brown(p_half).mean()),
        plcc_ci=(float(p_low), float(p_high)),
        srcc_half=float(s_half.mean()),
        plcc_half=float(p_half.mean()),
        n_items=int(eligible.size),
        n_splits=n_splits,
        confidence=confidence,
    )
