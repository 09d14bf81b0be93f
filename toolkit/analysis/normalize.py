"""Putting votes and scores from different raters and studies on one scale.

* :func:`zscore_votes`: each rater's votes minus the rater's mean, divided by the rater's SD
  (ddof 1, as sureal's ``zscore_mode``). A rater whose votes do not vary (one vote, or a
  straightliner) carries no ordering information: all their z-scores are 0.
* :func:`fit_scale_mapping` / :class:`ScaleMapping`: a linear map from one study's scores to
  another's, fitted on the items both rated (least squares, or matching mean and SD), for
  pooling studies whose raters used the scale differently.
* :func:`rescale_range`: a fixed linear map between declared ranges (0-100 to 1-5, ...),
  via :class:`toolkit.levels.LevelScale`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from toolkit.analysis.grouped import group_mean, group_sd
from toolkit.analysis.votes import Votes
from toolkit.errors import InputError
from toolkit.levels import LevelScale


def zscore_votes(votes: Votes) -> Votes:
    """Per-rater z-scored votes (same codes, new values)."""
    mean = group_mean(votes.rater, votes.vote, votes.n_raters)
    sd = group_sd(votes.rater, votes.vote, votes.n_raters, ddof=1)
    safe = np.where(sd > 0, sd, 1.0)
    z = np.where(sd[votes.rater] > 0, (votes.vote - mean[votes.rater]) / safe[votes.rater], 0.0)
    return votes.with_values(z)


@dataclass(frozen=True)
class ScaleMapping:
    """``target = slope * source + intercept``, fitted on ``n_common`` shared items."""

    slope: float
    intercept: float
    n_common: int
    method: str

    def apply(self, scores: pd.Series | np.ndarray) -> pd.Series | np.ndarray:
        return self.slope * scores + self.intercept


def fit_scale_mapping(
    source: pd.Series, target: pd.Series, method: Literal["linear", "moments"] = "linear", min_common: int = 3
) -> ScaleMapping:
    """Map ``source`` scores (indexed by item) onto ``target``'s scale using the items in both."""
    common = source.index.intersection(target.index)
    if common.size < min_common:
        raise InputError(f"rescaling needs at least {min_common} items rated in both studies; found {common.size}")
    x = source.loc[common].to_numpy(dtype=float)
    y = target.loc[common].to_numpy(dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("rescaling: the shared items' scores must be finite")
    sx, sy = x.std(), y.std()
    if sx == 0:
        raise InputError("rescaling: the source scores of the shared items do not vary")
    if method == "linear":
        slope = float(np.cov(x, y, bias=True)[0, 1] / (sx * sx))
    elif method == "moments":
        slope = float(sy / sx)
    else:
        raise InputError(f"unknown rescaling method {method!r}; use 'linear' or 'moments'")
    return ScaleMapping(slope, float(y.mean() - slope * x.mean()), int(common.size), method)


def rescale_range(
    scores: np.ndarray | pd.Series,
    low: float,
    high: float,
    new_low: float = 1.0,
    new_high: float = 5.0,
    higher_is_better: bool = True,
) -> np.ndarray:
    """Linear map from ``[low, high]`` to ``[new_low, new_high]`` (flipped for DMOS-like scales)."""
    return LevelScale(low, high, higher_is_better).rescale(np.asarray(scores, dtype=float), new_low, new_high)
