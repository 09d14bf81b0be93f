"""What every subject model returns: per-item scores with uncertainty, per-rater parameters.

Column conventions (one place, so the CLI, the report and the converters agree):

* ``items``: index ``item``; ``score``, ``std`` (standard error of the score), ``sd`` (spread
  of the votes the score was computed from), ``ci_low``/``ci_high`` (95 % interval of the
  score), ``n`` (votes used).
* ``raters``: index ``rater``; ``n`` (votes), ``bias``, ``bias_std``, ``inconsistency``,
  ``inconsistency_ci_low``/``_high``, ``rejected`` and ``reason`` (empty when kept).
* ``contents`` (MLE with content ambiguity only): index ``content``; ``ambiguity``,
  ``ambiguity_std``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from toolkit.analysis.votes import Votes
from toolkit.errors import InputError

ITEM_COLUMNS: tuple[str, ...] = ("item", "score", "ci_low", "ci_high", "n")
"""Columns of ``items.csv`` (the ``qalign analyze`` contract)."""

RATER_COLUMNS: tuple[str, ...] = ("rater", "bias", "inconsistency", "rejected", "reason")
"""Columns of ``raters.csv`` (the ``qalign analyze`` contract)."""

MOS_TABLE_COLUMNS: tuple[str, ...] = ("item", "score", "sd", "std", "ci_low", "ci_high", "n")
"""Columns of :meth:`SubjectModelResult.mos_table`, the converters' input."""


@dataclass
class SubjectModelResult:
    """The output of one subject model on one set of votes."""

    model: str
    items: pd.DataFrame
    raters: pd.DataFrame
    contents: pd.DataFrame | None = None
    iterations: int = 0
    converged: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def scores(self) -> pd.Series:
        return self.items["score"]

    def items_table(self) -> pd.DataFrame:
        """``item, score, ci_low, ci_high, n``: one row per item, the CLI's ``items.csv``."""
        return self.items.reset_index()[list(ITEM_COLUMNS)]

    def raters_table(self) -> pd.DataFrame:
        """``rater, bias, inconsistency, rejected, reason``: the CLI's ``raters.csv``."""
        return self.raters.reset_index()[list(RATER_COLUMNS)]

    def mos_table(self) -> pd.DataFrame:
        """``item, score, sd, std, ci_low, ci_high, n``: cleaned labels for the converters."""
        return self.items.reset_index()[list(MOS_TABLE_COLUMNS)]

    def check_finite(self) -> SubjectModelResult:
        """Raise if any published number is NaN or infinite (never hand one on silently)."""
        for name, frame, cols in (
            ("item", self.items, ["score", "std", "sd", "ci_low", "ci_high"]),
            ("rater", self.raters, ["bias", "inconsistency"]),
        ):
            values = frame[cols].to_numpy(dtype=float)
            bad = ~np.isfinite(values).all(axis=1)
            if bad.any():
                raise InputError(
                    f"{self.model}: the model gave non-finite values for {name}(s) "
                    f"{', '.join(map(repr, frame.index[bad][:5]))}; the votes of these {name}s cannot "
                    "support this model (too few votes, or all identical)"
                )
        return self


def inconsistency_interval(v: np.ndarray, n: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square interval of an SD estimated from ``n`` values (sureal's inconsistency CI)."""
    n = np.maximum(np.asarray(n, dtype=float), 1.0)
    tail = (1.0 - confidence) / 2
    return v * np.sqrt(n / stats.chi2.ppf(1.0 - tail, df=n)), v * np.sqrt(n / stats.chi2.ppf(tail, df=n))


def item_frame(
    votes: Votes,
    score: np.ndarray,
    std: np.ndarray,
    sd: np.ndarray,
    ci_low: np.ndarray,
    ci_high: np.ndarray,
    n: np.ndarray,
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"score": score, "std": std, "sd": sd, "ci_low": ci_low, "ci_high": ci_high, "n": np.asarray(n, dtype=int)},
        index=votes.items.rename("item"),
    )
    return frame


def rater_frame(
    votes: Votes,
    bias: np.ndarray,
    inconsistency: np.ndarray,
    *,
    bias_std: np.ndarray | None = None,
    inconsistency_ci: tuple[np.ndarray, np.ndarray] | None = None,
    rejected: np.ndarray | None = None,
    reason: list[str] | np.ndarray | None = None,
) -> pd.DataFrame:
    n_r = votes.n_raters
    nan = np.full(n_r, np.nan)
    counts = votes.rater_counts()
    lo, hi = inconsistency_ci if inconsistency_ci is not None else inconsistency_interval(inconsistency, counts)
    return pd.DataFrame(
        {
            "n": counts,
            "bias": bias,
            "bias_std": bias_std if bias_std is not None else nan,
            "inconsistency": inconsistency,
            "inconsistency_ci_low": lo,
            "inconsistency_ci_high": hi,
            "rejected": np.zeros(n_r, dtype=bool) if rejected is None else np.asarray(rejected, dtype=bool),
            "reason": [""] * n_r if reason is None else list(reason),
        },
        index=votes.raters.rename("rater"),
    )
