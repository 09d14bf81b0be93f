"""Calibration of predicted level distributions against what raters actually answered.

A Q-Align model predicts a distribution over the five levels (``p_excellent .. p_bad``), not
only a score. Two models with the same SRCC can differ a lot in whether those probabilities
mean anything: a model that says "70 % good" should be right about 70 % of the time. The
observed distribution of an item is its vote histogram (the share of raters who chose each
level) when raw votes exist, else the one-hot level of its MOS.

Numbers reported:

* ``mean_kl``: mean over items of KL(observed || predicted) in nats. With one-hot
  observations this is the negative log-likelihood of the observed level.
* ``ece``: classwise expected calibration error (Kull et al., NeurIPS 2019): for each level,
  items are binned by the predicted probability of that level (``n_bins`` equal-width bins on
  [0, 1]) and the bin's mean prediction is compared with the bin's mean observed share,
  weighted by the bin's size; the five per-level errors are averaged.
* per MOS level bin: the mean predicted and mean observed distribution of the items whose MOS
  falls on each level, and the KL between the two means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import InputError
from toolkit.qalign import LEVEL_VALUES, LEVELS, expected_score

DEFAULT_BINS = 10
_EPS = 1e-12


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability curve: predictions in ``[low, high)`` of one level."""

    low: float
    high: float
    count: int
    mean_predicted: float
    mean_observed: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "low": self.low,
            "high": self.high,
            "count": self.count,
            "mean_predicted": self.mean_predicted,
            "mean_observed": self.mean_observed,
        }


@dataclass(frozen=True)
class LevelBin:
    """Items whose MOS lies on one level: their mean predicted and mean observed distributions."""

    level: str
    count: int
    predicted: tuple[float, ...]  # LEVELS order
    observed: tuple[float, ...]
    kl: float  # KL(mean observed || mean predicted), nats

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "count": self.count,
            "predicted": list(self.predicted),
            "observed": list(self.observed),
            "kl": self.kl,
        }


@dataclass
class CalibrationResult:
    """Calibration of one model on one test set (see the module docstring)."""

    n: int
    observed_from: str  # "vote histogram" or "MOS level (one-hot)"
    mean_kl: float
    ece: float
    ece_per_level: dict[str, float]
    reliability: dict[str, list[ReliabilityBin]]  # level word -> non-empty bins
    level_bins: list[LevelBin]
    n_bins: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "observed_from": self.observed_from,
            "mean_kl": self.mean_kl,
            "ece": self.ece,
            "ece_per_level": dict(self.ece_per_level),
            "n_bins": self.n_bins,
            "reliability": {k: [b.to_dict() for b in v] for k, v in self.reliability.items()},
            "level_bins": [b.to_dict() for b in self.level_bins],
            "notes": list(self.notes),
        }


def _check_distributions(name: str, probs: np.ndarray) -> np.ndarray:
    arr = np.asarray(probs, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise InputError(f"{name} level distributions must have shape (items, 5), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < -1e-9).any():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1) | (arr < -1e-9).any(axis=1))[0])
        raise InputError(f"{name} level distribution of item {row} is not a probability vector: {arr[row].tolist()}")
    sums = arr.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-6
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise InputError(f"{name} level distribution of item {row} sums to {sums[row]:.6g}, not 1")
    return np.clip(arr, 0.0, 1.0)


def kl_divergence(observed: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """KL(observed || predicted) per row in nats; ``0 log 0 = 0``, predictions floored at 1e-12."""
    o = np.asarray(observed, dtype=float)
    p = np.clip(np.asarray(predicted, dtype=float), _EPS, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(o > 0, o * (np.log(np.clip(o, _EPS, None)) - np.log(p)), 0.0)
    return terms.sum(axis=-1)


def reliability_bins(
    predicted: np.ndarray, observed: np.ndarray, n_bins: int = DEFAULT_BINS
) -> tuple[list[ReliabilityBin], float]:
    """Equal-width bins of one level's predicted probability; returns the non-empty bins and the ECE.

    The last bin is closed (a prediction of exactly 1 falls in it).
    """
    p = np.asarray(predicted, dtype=float)
    o = np.asarray(observed, dtype=float)
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=p, minlength=n_bins)
    sum_o = np.bincount(index, weights=o, minlength=n_bins)
    bins = []
    ece = 0.0
    for b in np.flatnonzero(counts):
        mp, mo = sum_p[b] / counts[b], sum_o[b] / counts[b]
        ece += counts[b] / p.size * abs(mp - mo)
        bins.append(ReliabilityBin(b / n_bins, (b + 1) / n_bins, int(counts[b]), float(mp), float(mo)))
    return bins, float(ece)


def observed_levels(observed: np.ndarray) -> np.ndarray:
    """Level value (1..5) nearest to the expectation of each observed distribution."""
    return np.clip(np.rint(expected_score(observed)), 1, 5).astype(int)


def onehot_levels(levels: np.ndarray) -> np.ndarray:
    """(n, 5) one-hot distributions, ``LEVELS`` order, of level values 1..5."""
    lv = np.asarray(levels, dtype=int)
    if lv.size and not np.isin(lv, LEVEL_VALUES).all():
        raise InputError(f"level values must be integers 1-5, got {lv[~np.isin(lv, LEVEL_VALUES)][0]!r}")
    out = np.zeros((lv.size, 5))
    out[np.arange(lv.size), 5 - lv] = 1.0
    return out


def calibration(
    predicted: np.ndarray,
    observed: np.ndarray,
    *,
    levels: np.ndarray | None = None,
    n_bins: int = DEFAULT_BINS,
    observed_from: str = "vote histogram",
) -> CalibrationResult:
    """Calibration of predicted level distributions against observed ones (both (n, 5), ``LEVELS`` order).

    ``levels`` (1..5 per item) puts the items into MOS level bins; by default the level nearest
    to the expectation of the observed distribution.
    """
    if n_bins < 1:
        raise InputError(f"the number of calibration bins must be positive, got {n_bins}")
    p = _check_distributions("predicted", predicted)
    o = _check_distributions("observed", observed)
    if p.shape != o.shape:
        raise InputError(f"predicted and observed distributions differ in shape ({p.shape} vs {o.shape})")
    if p.shape[0] == 0:
        raise InputError("no items to measure calibration on")
    lv = observed_levels(o) if levels is None else np.asarray(levels, dtype=int).ravel()
    if lv.shape[0] != p.shape[0]:
        raise InputError(f"{lv.shape[0]} level(s) given for {p.shape[0]} item(s)")

    reliability: dict[str, list[ReliabilityBin]] = {}
    ece_per_level: dict[str, float] = {}
    for k, word in enumerate(LEVELS):
        reliability[word], ece_per_level[word] = reliability_bins(p[:, k], o[:, k], n_bins)

    level_bins = []
    for value in LEVEL_VALUES:
        members = lv == value
        if not members.any():
            continue
        mean_p, mean_o = p[members].mean(axis=0), o[members].mean(axis=0)
        level_bins.append(
            LevelBin(
                LEVELS[5 - value],
                int(members.sum()),
                tuple(map(float, mean_p)),
                tuple(map(float, mean_o)),
                float(kl_divergence(mean_o, mean_p)),
            )
        )
    return CalibrationResult(
        n=int(p.shape[0]),
        observed_from=observed_from,
        mean_kl=float(kl_divergence(o, p).mean()),
        ece=float(np.mean(list(ece_per_level.values()))),
        ece_per_level=ece_per_level,
        reliability=reliability,
        level_bins=level_bins,
        n_bins=n_bins,
    )
