"""The five text-defined levels of Q-Align and the arithmetic between levels, votes and MOS.

Conventions used across the toolkit:

* A *level value* is an int 1..5 (1 = bad, 5 = excellent), the ACR vote scale.
* A *level distribution* (probabilities, soft labels) is an array whose last axis is in
  ``LEVELS`` order, best first (excellent .. bad), the order of a model's ``p_excellent .. p_bad``.
* A *vote histogram* (votes per level) is in ``LEVELS`` order too, excellent first, in the
  columns ``COUNT_COLUMNS`` (``votes_excellent .. votes_bad``). KonIQ-10k's ``c1..c5`` (bad first)
  is an input format, turned around by its reader.

Everything here is vectorised: functions take and return numpy arrays or pandas objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from toolkit.errors import InputError

# The level words, their values and the expected score are part of the Q-Align contract; they
# stay importable from here for the code that does level arithmetic.
from toolkit.qalign import COUNT_COLUMNS, LEVEL_VALUES, LEVELS
from toolkit.qalign import expected_score as expected_score

LEVEL_WEIGHTS_UNIT: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
"""Weights of the reference ``scorer.py`` (0-1 range); ``score_1_5 = 4 * score_0_1 + 1``."""

MosRule = Literal["equal", "floor"]


class LevelError(InputError):
    """Raised for scores or votes that cannot be mapped onto the five levels."""


def level_word(value: int) -> str:
    """``5 -> 'excellent'`` ... ``1 -> 'bad'``."""
    if value not in LEVEL_VALUES:
        raise LevelError(f"level value must be an integer 1-5, got {value!r}")
    return LEVELS[5 - int(value)]


def level_value(word: str) -> int:
    """``'excellent' -> 5`` ... ``'bad' -> 1`` (case-insensitive)."""
    try:
        return 5 - LEVELS.index(word.strip().lower())
    except ValueError:
        raise LevelError(f"unknown level word {word!r}; expected one of {', '.join(LEVELS)}") from None


def level_words(values: Sequence[int] | np.ndarray) -> list[str]:
    """Vectorised :func:`level_word`."""
    arr = np.asarray(values)
    if arr.size and (not np.isin(arr, LEVEL_VALUES).all()):
        bad = arr[~np.isin(arr, LEVEL_VALUES)][0]
        raise LevelError(f"level value must be an integer 1-5, got {bad!r}")
    return [LEVELS[5 - int(v)] for v in arr.ravel()]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of level distributions (0 = certain, ln 5 = uniform)."""
    p = np.clip(np.asarray(probs, dtype=float), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


# --------------------------------------------------------------------------- MOS -> level


@dataclass(frozen=True)
class LevelScale:
    """A score range ``[low, high]`` and its direction; maps scores to levels.

    ``higher_is_better=False`` is for DMOS-style data (LIVE, CSIQ): scores are flipped
    before the levels are assigned, so the lowest DMOS becomes *excellent*.
    """

    low: float
    high: float
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        if not (np.isfinite(self.low) and np.isfinite(self.high)) or self.high <= self.low:
            raise LevelError(f"scale bounds must be finite with low < high, got [{self.low}, {self.high}]")

    @classmethod
    def from_data(cls, scores: Sequence[float] | np.ndarray, higher_is_better: bool = True) -> LevelScale:
        """The paper's default: the bounds are the data's own min and max."""
        arr = _finite_scores(scores)
        return cls(float(arr.min()), float(arr.max()), higher_is_better)

    def check(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Return the scores as floats; raise naming the first one outside the bounds."""
        arr = _finite_scores(scores)
        outside = (arr < self.low) | (arr > self.high)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise LevelError(
                f"score {float(arr[i])!r} at position {i} is outside the declared bounds [{self.low}, {self.high}]"
                f" ({int(outside.sum())} score(s) outside in all)"
            )
        return arr

    def to_unit(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        """Scores mapped to [0, 1], 1 = best (flipped for DMOS)."""
        u = (self.check(scores) - self.low) / (self.high - self.low)
        return u if self.higher_is_better else 1.0 - u

    def rescale(self, scores: Sequence[float] | np.ndarray, low: float = 1.0, high: float = 5.0) -> np.ndarray:
        """Scores mapped linearly to ``[low, high]`` (best = ``high``)."""
        return low + self.to_unit(scores) * (high - low)

    def to_levels(self, scores: Sequence[float] | np.ndarray, rule: MosRule = "equal") -> np.ndarray:
        """Level values 1..5 for each score.

        ``equal`` (paper): five equal intervals, left-open: ``L = l_i`` if
        ``m + (i-1)(M-m)/5 < s <= m + i(M-m)/5``; the minimum itself is *bad*.
        ``floor`` (maintainers' recipe): rescale to [0, 5], take the integer part;
        5 and 4 -> excellent, 3 good, 2 fair, 1 poor, 0 bad.
        """
        u = self.to_unit(scores)
        if rule == "equal":
            # ceil(5u) is the interval index i with (i-1)/5 < u <= i/5; u == 0 falls in interval 1.
            # Round first so that boundaries hit exactly by the data (e.g. 0.4 * 5) are not pushed
            # up by floating-point noise.
            return np.clip(np.ceil(np.round(u * 5, 9)), 1, 5).astype(int)
        if rule == "floor":
            k = np.floor(np.round(u * 5, 9)).astype(int)
            return np.clip(k, 0, 4) + 1
        raise LevelError(f"unknown MOS-to-level rule {rule!r}; use 'equal' or 'floor'")

    def boundaries(self) -> np.ndarray:
        """The six interval edges of the ``equal`` rule, in score units (ascending)."""
        return self.low + np.arange(6) * (self.high - self.low) / 5


def mos_to_level(
    scores: Sequence[float] | np.ndarray,
    rule: MosRule = "equal",
    low: float | None = None,
    high: float | None = None,
    higher_is_better: bool = True,
) -> np.ndarray:
    """Level values (1..5) for MOS values; bounds default to the data's min and max."""
    arr = _finite_scores(scores)
    data = LevelScale.from_data(arr, higher_is_better)
    scale = LevelScale(data.low if low is None else low, data.high if high is None else high, higher_is_better)
    return scale.to_levels(arr, rule)


def _finite_scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(scores, dtype=float).ravel()
    if arr.size == 0:
        raise LevelError("no scores given")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LevelError(f"score at position {i} is not a finite number ({float(arr[i])!r})")
    return arr


# --------------------------------------------------------------------------- votes -> MOS


def check_votes(votes: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Votes as ints 1..5; raise naming the first invalid one."""
    arr = np.asarray(votes, dtype=float).ravel()
    bad = ~np.isin(arr, LEVEL_VALUES)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise LevelError(f"vote {float(arr[i])!r} at row {i} is not an integer level 1-5")
    return arr.astype(int)


def t_interval(
    mean: np.ndarray, sd: np.ndarray, n: np.ndarray, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Student-t confidence interval of a mean; zero width where ``n < 2`` (no spread is knowable)."""
    mean, sd, n = (np.asarray(a, dtype=float) for a in (mean, sd, n))
    dof = np.maximum(n - 1, 1)
    # The quantile once per distinct vote count (a study has few): same values, a fraction of the cost.
    distinct, position = np.unique(dof, return_inverse=True)
    quantile = stats.t.ppf(0.5 + confidence / 2, distinct)[position.reshape(dof.shape)]
    half = quantile * sd / np.sqrt(np.maximum(n, 1))
    half = np.where(n >= 2, half, 0.0)
    return mean - half, mean + half


def histogram_stats(counts: np.ndarray, confidence: float = 0.95) -> pd.DataFrame:
    """MOS, SD (sample, ddof=1), n and t-CI from vote counts per level.

    ``counts`` has shape (items, 5) in ``LEVELS`` order (excellent .. bad); fractions work too
    if ``n`` is wanted only as the fraction total (then pass counts).
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or c.shape[1] != 5:
        raise LevelError(f"vote counts must have 5 columns (excellent .. bad), got shape {c.shape}")
    if (c < 0).any() or not np.isfinite(c).all():
        raise LevelError("vote counts must be finite and non-negative")
    n = c.sum(axis=1)
    if (n <= 0).any():
        raise LevelError(f"item at row {int(np.flatnonzero(n <= 0)[0])} has no votes")
    values = np.asarray(LEVEL_VALUES, dtype=float)
    mos = c @ values / n
    ss = c @ values**2 - n * mos**2
    sd = np.sqrt(np.clip(ss, 0, None) / np.maximum(n - 1, 1))
    sd = np.where(n >= 2, sd, 0.0)
    lo, hi = t_interval(mos, sd, n, confidence)
    return pd.DataFrame({"mos": mos, "sd": sd, "n": n, "ci_low": lo, "ci_high": hi})


def vote_stats(votes: pd.DataFrame, item: str = "item", vote: str = "vote", confidence: float = 0.95) -> pd.DataFrame:
    """Per item: ``n, mos, sd, ci_low, ci_high`` and the vote counts ``COUNT_COLUMNS`` (excellent first).

    ``votes`` is long format, one row per vote. The index of the result is the item id.
    """
    if votes.empty:
        raise LevelError("no votes given")
    values = check_votes(votes[vote])
    counts = pd.crosstab(votes[item].to_numpy(), values).reindex(columns=list(LEVEL_VALUES), fill_value=0)
    out = histogram_stats(counts.to_numpy(), confidence)
    out.index = counts.index.rename(item)
    for column, value in zip(COUNT_COLUMNS, LEVEL_VALUES):
        out[column] = counts[value].to_numpy()
    out["n"] = out["n"].astype(int)
    return out[["n", "mos", "sd", "ci_low", "ci_high", *COUNT_COLUMNS]]


# --------------------------------------------------------------------------- soft labels


def soft_label(mos: Sequence[float] | np.ndarray, sd: Sequence[float] | np.ndarray, min_sd: float = 1e-3) -> np.ndarray:
    """DeQA-Score style soft labels: N(MOS, SD) discretised on the five levels, mean-corrected.

    MOS and SD must already be on the 1-5 scale. The Gaussian is integrated over the level bins
    ``[k - 0.5, k + 0.5]`` (the two end bins open), which pulls the expectation towards 3. The
    expectation is restored to the MOS exactly by moving the Gaussian's centre (bisection; the
    discretised mean is monotonic in it) rather than by an affine correction of the probabilities,
    which can turn small probabilities negative. When SD is tiny, or the MOS sits on an end of the
    scale, the label is the two levels adjacent to the MOS, weighted so the expectation is the MOS.

    Returns shape (n, 5) in ``LEVELS`` order (excellent first); rows sum to 1.
    """
    mu = np.asarray(mos, dtype=float).ravel()
    s = np.asarray(sd, dtype=float).ravel()
    if mu.shape != s.shape:
        raise LevelError(f"MOS and SD differ in length ({mu.size} vs {s.size})")
    if not (np.isfinite(mu).all() and np.isfinite(s).all()):
        raise LevelError("MOS and SD must be finite")
    outside = (mu < 1) | (mu > 5)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise LevelError(f"MOS {float(mu[i])!r} at position {i} is outside [1, 5]; rescale first")
    if (s < 0).any():
        raise LevelError("SD must be non-negative")

    values = np.arange(1, 6, dtype=float)  # bad .. excellent
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    safe_s = np.maximum(s, min_sd)[:, None]

    def discretise(centre: np.ndarray) -> np.ndarray:
        return np.diff(stats.norm.cdf((edges[None, :] - centre[:, None]) / safe_s), axis=1)

    # The discretised mean lies strictly inside (1, 5) and grows with the centre; search the
    # centre in a window wide enough for every MOS in (1, 5) and SD up to the scale's width.
    lo = mu - 10.0 - 10.0 * safe_s[:, 0]
    hi = mu + 10.0 + 10.0 * safe_s[:, 0]
    for _ in range(80):
        mid = (lo + hi) / 2
        too_low = discretise(mid) @ values < mu
        lo = np.where(too_low, mid, lo)
        hi = np.where(too_low, hi, mid)
    gaussian = discretise((lo + hi) / 2)

    lower = np.clip(np.floor(mu), 1, 4).astype(int)
    frac = mu - lower
    two_point = np.zeros((mu.size, 5))
    rows = np.arange(mu.size)
    two_point[rows, lower - 1] = 1.0 - frac
    two_point[rows, lower] = frac

    fallback = (s < min_sd) | (mu <= 1 + 1e-9) | (mu >= 5 - 1e-9)
    out = np.where(fallback[:, None], two_point, gaussian)
    out /= out.sum(axis=1, keepdims=True)
    return out[:, ::-1].copy()
