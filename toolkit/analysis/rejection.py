"""Observer screening by ITU-R BT.500 and subject bias removal by ITU-T P.913.

Both follow sureal 0.9.0 (``BT500``/``SR_MOS`` and ``P913``/``BR_SR_MOS``) so the numbers agree:

* BT.500 (Annex 1, 2.3.1): per item the kurtosis ``b2 = m4 / m2^2`` of its votes decides the
  range, mean +- 2 SD when ``2 <= b2 <= 4``, else mean +- sqrt(20) SD (population SD). Per rater,
  P counts votes at or above the top of the range, Q votes at or below the bottom. A rater is
  rejected when ``(P + Q) / N > 0.05`` and ``|P - Q| / (P + Q) < 0.3``. If every rater would be
  rejected, none is.
* P.913 (12.4): each rater's bias is the mean of (vote - item MOS); it is subtracted from the
  rater's votes, then the BT.500 screening above runs on the corrected votes, and the score is
  the mean of the kept, corrected votes.

Two deliberate differences from sureal, neither of which changes a fully sampled study such as
the Netflix public data set:

* ``N`` is the number of votes the rater cast. sureal divides by the number of items in the
  study, which understates the outlier rate of a rater who saw only part of a partially sampled
  study.
* An item whose votes are all identical has no range to fall outside, so it counts for nobody.
  (sureal's kurtosis is undefined there and its inclusive comparisons then count every vote on
  that item as both above and below the range.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.analysis.grouped import group_mean, group_moments
from toolkit.analysis.mos import CiMethod, descriptive_rater_stats, mean_scores
from toolkit.analysis.result import SubjectModelResult, rater_frame
from toolkit.analysis.votes import Votes
from toolkit.errors import InputError

# Votes are integers, so a range edge such as mean + 2 SD can coincide with a vote exactly; the
# comparison is inclusive (as sureal's) up to floating-point noise in the moments.
_EDGE_TOL = 1e-9


@dataclass(frozen=True)
class Bt500Screening:
    """Per rater (in ``votes.raters`` order): P, Q, N, the two ratios and the verdict."""

    p: np.ndarray
    q: np.ndarray
    n: np.ndarray
    outlier_ratio: np.ndarray  # (P + Q) / N
    balance: np.ndarray  # |P - Q| / (P + Q); 1 where P + Q = 0 (no evidence to reject)
    rejected: np.ndarray
    all_rejected_overridden: bool

    def reasons(self) -> list[str]:
        return [
            f"BT.500: {int(p + q)} of {int(n)} votes outside the item range ({ratio:.1%} > 5%), "
            f"on both sides (|P-Q|/(P+Q) = {bal:.2f} < 0.3)"
            if rej
            else ""
            for p, q, n, ratio, bal, rej in zip(self.p, self.q, self.n, self.outlier_ratio, self.balance, self.rejected)
        ]


def bt500_screen(votes: Votes, max_outlier_ratio: float = 0.05, max_balance: float = 0.3) -> Bt500Screening:
    """BT.500 observer screening on ``votes.vote`` (raw or bias-corrected values)."""
    n_e, mean, m2, m4 = group_moments(votes.item, votes.vote, votes.n_items)
    sd = np.sqrt(np.maximum(m2, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        kurtosis = m4 / (m2 * m2)
    normal = (kurtosis >= 2) & (kurtosis <= 4)
    half_width = np.where(normal, 2.0, np.sqrt(20.0)) * sd
    spread = sd > 0
    x = votes.vote
    e = votes.item
    above = spread[e] & (x >= mean[e] + half_width[e] - _EDGE_TOL)
    below = spread[e] & (x <= mean[e] - half_width[e] + _EDGE_TOL)
    n_r = votes.n_raters
    p = np.bincount(votes.rater, weights=above, minlength=n_r)
    q = np.bincount(votes.rater, weights=below, minlength=n_r)
    n = np.bincount(votes.rater, minlength=n_r).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(n > 0, (p + q) / n, 0.0)
        balance = np.where(p + q > 0, np.abs(p - q) / (p + q), 1.0)
    rejected = (ratio > max_outlier_ratio) & (balance < max_balance)
    overridden = bool(rejected.all())
    if overridden:
        rejected = np.zeros_like(rejected)
    return Bt500Screening(p, q, n, ratio, balance, rejected, overridden)


def p913_bias(votes: Votes) -> np.ndarray:
    """P.913 12.4 rater bias: mean over the rater's votes of (vote - item MOS of all raters)."""
    mos = group_mean(votes.item, votes.vote, votes.n_items)
    return group_mean(votes.rater, votes.vote - mos[votes.item], votes.n_raters)


def _screened_result(
    model: str, votes: Votes, values: np.ndarray, screen: Bt500Screening, ci: CiMethod, bias: np.ndarray | None
) -> SubjectModelResult:
    kept = votes.with_values(values).subset(~screen.rejected[votes.rater])
    orphans = kept.item_counts() == 0
    if orphans.any():
        raise InputError(
            f"{model}: every rater of item(s) {', '.join(map(repr, votes.items[orphans][:5]))} was "
            "rejected, so they have no score; use model 'mos' or 'mle_co', or collect more votes"
        )
    items = mean_scores(kept, ci)
    notes = []
    if screen.all_rejected_overridden:
        notes.append("BT.500 would have rejected every rater; as in BT.500 practice none is rejected")
    desc_bias, bias_std, inconsistency = descriptive_rater_stats(votes.with_values(values), items["score"].to_numpy())
    if bias is None:  # BT.500 alone has no bias model: report the descriptive one
        bias = desc_bias
    raters = rater_frame(
        votes, bias, inconsistency, bias_std=bias_std, rejected=screen.rejected, reason=screen.reasons()
    )
    return SubjectModelResult(model, items, raters, notes=notes).check_finite()


def fit_bt500(votes: Votes, ci: CiMethod = "t") -> SubjectModelResult:
    """BT.500 observer rejection, then MOS of the kept raters' votes (sureal's ``BT500``)."""
    return _screened_result("bt500", votes, votes.vote, bt500_screen(votes), ci, None)


def fit_p913(votes: Votes, ci: CiMethod = "t") -> SubjectModelResult:
    """P.913 bias removal, BT.500 rejection on the corrected votes, then their MOS (sureal's ``P913``).

    ``bias`` in the rater table is the P.913 bias of every rater (rejected ones included), as
    estimated before any rejection.
    """
    bias = p913_bias(votes)
    corrected = votes.vote - bias[votes.rater]
    screen = bt500_screen(votes.with_values(corrected))
    return _screened_result("p913", votes, corrected, screen, ci, bias)
