"""Split-half inter-rater agreement: the noise ceiling an automatic scorer can reach.

For each random split, the votes of every item are divided into two halves of equal size (with
an odd count one vote, chosen at random, sits out), the two half-MOS vectors are correlated and
the Spearman-Brown formula ``2 r / (1 + r)`` projects the correlation of half the votes to the
full count. The estimate is the mean over splits; the interval is a percentile bootstrap in
which every replicate draws a fresh split *and* resamples the items, so it covers both the
arbitrariness of the split and the finite set of items.

At scale two things keep the cost bounded:

* A half-MOS depends only on *which values* land in the half, so when the votes are a rating
  scale (a few distinct values) and the vote matrix is large, a split is drawn from each item's
  vote histogram: the value counts of a random half are multivariate hypergeometric, drawn one
  level at a time (``Generator.hypergeometric``, vectorised over the items). That is the same
  distribution as shuffling the item's votes, at a cost per item, not per vote.
* Above ``SPLIT_HALF_MAX_VOTES`` eligible votes the agreement is measured on a seeded random
  subsample of the items (about that many votes). The result says so (``n_items`` used out of
  ``n_items_eligible``; ``subsampled``): the estimate is that of the same population of items,
  its interval that of the smaller sample, hence wider than the full study would give.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from toolkit.analysis.votes import Votes
from toolkit.errors import InputError

SPLIT_HALF_MAX_VOTES = 2_000_000
"""Eligible votes above which the split-half runs on a random subsample of the items."""

_MATRIX_CELLS = 500_000  # above this many (items x max votes) cells, splits come from the histograms
_MAX_HISTOGRAM_VALUES = 16  # more distinct vote values than this: not a rating scale, shuffle the votes


@dataclass(frozen=True)
class SplitHalfResult:
    """Spearman-Brown corrected SRCC and PLCC with their intervals, and the raw half-split means."""

    srcc: float
    srcc_ci: tuple[float, float]
    plcc: float
    plcc_ci: tuple[float, float]
    srcc_half: float
    plcc_half: float
    n_items: int  # items the splits used
    n_splits: int
    confidence: float
    n_items_eligible: int = 0  # items with 2 or more votes (more than n_items when subsampled)

    @property
    def subsampled(self) -> bool:
        """Whether the agreement was measured on a random subsample of the eligible items."""
        return self.n_items_eligible > self.n_items


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


def _histogram_half(counts: np.ndarray, take: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Value counts of ``take`` votes drawn without replacement from each row's ``counts``
    (multivariate hypergeometric, one value at a time)."""
    drawn = np.zeros_like(counts)
    need = take.copy()
    rest = counts.sum(axis=1)
    for j in range(counts.shape[1] - 1):
        rest = rest - counts[:, j]
        drawn[:, j] = rng.hypergeometric(counts[:, j], rest, need)
        need -= drawn[:, j]
    drawn[:, -1] = need
    return drawn


class _Splitter:
    """Random halves of the eligible items' votes: from the vote matrix (shuffled rows) or,
    for a large matrix of a rating scale, from the vote histograms (see the module docstring)."""

    def __init__(self, votes: Votes, n_e: np.ndarray, eligible: np.ndarray) -> None:
        self.half = n_e[eligible] // 2
        self.histogram = False
        if eligible.size * int(n_e[eligible].max()) > _MATRIX_CELLS:
            position = np.full(votes.n_items, -1, dtype=np.int32 if eligible.size < 2**31 else np.int64)
            position[eligible] = np.arange(eligible.size)
            row = position[votes.item]
            used = row >= 0
            values, code = np.unique(votes.vote[used], return_inverse=True)
            self.histogram = values.size <= _MAX_HISTOGRAM_VALUES
        if self.histogram:
            flat = np.bincount(row[used].astype(np.int64) * values.size + code, minlength=eligible.size * values.size)
            self.counts = flat.reshape(eligible.size, values.size)
            self.values = values.astype(float)
        else:
            self.matrix = _padded(votes, n_e)[eligible]
            self.padding = np.isnan(self.matrix)

    def split(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if not self.histogram:
            return _half_means(self.matrix, self.padding, self.half, rng)
        a = _histogram_half(self.counts, self.half, rng)
        b = _histogram_half(self.counts - a, self.half, rng)
        return (a @ self.values) / self.half, (b @ self.values) / self.half


def _subsample(votes: Votes, n_e: np.ndarray, eligible: np.ndarray, max_votes: int, seed: int) -> np.ndarray:
    """A seeded random subsample of ``eligible`` holding about ``max_votes`` votes (all of them
    when they hold fewer), in item order."""
    total = int(n_e[eligible].sum())
    if total <= max_votes:
        return eligible
    keep = max(3, int(eligible.size * max_votes / total))
    # A generator of its own: the splits below draw the same numbers as without a subsample.
    chosen = np.random.default_rng([seed, 1]).choice(eligible.size, size=keep, replace=False)
    return eligible[np.sort(chosen)]


def split_half_agreement(
    votes: Votes,
    n_splits: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    max_votes: int = SPLIT_HALF_MAX_VOTES,
) -> SplitHalfResult:
    """Split-half SRCC/PLCC with Spearman-Brown correction over the items with two or more votes
    (a random subsample of them above ``max_votes`` votes, see the module docstring)."""
    if n_splits < 2:
        raise InputError(f"split-half agreement needs at least 2 splits, got {n_splits}")
    n_e = votes.item_counts()
    eligible = np.flatnonzero(n_e >= 2)
    if eligible.size < 3:
        raise InputError(f"split-half agreement needs at least 3 items with 2 or more votes; found {eligible.size}")
    n_eligible = int(eligible.size)
    eligible = _subsample(votes, n_e, eligible, max_votes, seed)
    splitter = _Splitter(votes, n_e, eligible)
    rng = np.random.default_rng(seed)

    halves_a = np.empty((n_splits, eligible.size))
    halves_b = np.empty((n_splits, eligible.size))
    for k in range(n_splits):  # one vectorised pass over the items per split
        halves_a[k], halves_b[k] = splitter.split(rng)
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
        n_items_eligible=n_eligible,
    )
