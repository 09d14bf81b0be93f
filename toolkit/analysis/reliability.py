"""Inter-rater reliability besides split-half: Krippendorff's alpha and ICC(2,k), with bootstrap intervals.

Both work on the coded long votes (:class:`~toolkit.analysis.votes.Votes`), so partial sampling
(each rater rates a subset of the items) needs no dense item x rater matrix.

**Krippendorff's alpha** ``1 - D_o / D_e`` over the pairable votes (items with two or more votes),
from the coincidence matrix, with the nominal, ordinal (default, for ACR levels) or interval
difference function (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"). A rater
who votes twice on an item contributes two values to that item, as two coders would. The
``krippendorff`` package computes the same number and serves the tests as a reference; the
computation here is written out because the bootstrap needs each item's share of the
coincidence matrix (see below).

**ICC(2,k)**: two-way random effects, absolute agreement, the reliability of the mean of ``k``
votes (Shrout & Fleiss 1979). The model is ``vote = mu + a_item + b_rater + e`` with independent
random item, rater and error terms (variances ``s2_item``, ``s2_rater``, ``s2_error``), and

    ICC(2,k) = s2_item / (s2_item + (s2_rater + s2_error) / k),   ICC(2,1) the same with k = 1.

Shrout & Fleiss obtain the variances from the two-way ANOVA mean squares of a *complete* item x
rater matrix. A partially sampled study has no complete matrix, so the variances are estimated
here by Henderson's method I (Searle, Casella & McCulloch, "Variance Components", 1992, ch. 5):
the ANOVA sums of squares of the unbalanced data (item totals, rater totals, grand total) are
equated with their expectations under the model, a 3 x 3 linear system. Method I is unbiased for
this all-random model, needs no iteration and reduces *exactly* to the Shrout-Fleiss ANOVA
estimates on a complete design, so ICC(2,k) is the textbook value whenever the textbook's
premise holds. ``k`` is the harmonic mean of the votes per item: the error variance of item
``i``'s mean is ``(s2_rater + s2_error) / n_i``, and averaging that over the items gives the
harmonic mean, so ICC(2,k) is the share of the item means' variance that is true item
variance (equal to the textbook ``k`` when every item has ``k`` votes). As in Shrout & Fleiss the
variance estimates are not truncated at zero, so the ICC can be negative when the items differ
less than the noise suggests. The variances cannot be told apart (and the ICC is refused, with
the reason) when no rater rates two items or no item has two votes.

**Intervals**: percentile bootstrap over items (resampled with replacement, raters fixed), seeded.
Every statistic above is a function of per-item sums (coincidences, vote totals) and, for the
ICC, of per-rater totals, which are linear in how often each item is drawn. A batch of
replicates is therefore one matrix product of the (replicates x items) draw counts with the
per-item (or sparse item x rater) sums: the cost grows with replicates x votes, not with
replicates x items squared, and no replicate refits anything.

**At scale** the point estimates always use every vote (their cost is a few passes over the
votes). The bootstrap costs replicates x votes, so above ``RELIABILITY_BOOT_MAX_VOTES`` votes it
runs on a seeded random subsample of ``m`` of the ``n`` items (about that many votes) and the
interval is the m-out-of-n bootstrap one (Bickel, Goetze & van Zwet 1997): the subsample's
percentile deviations from its own estimate, shrunk by ``sqrt(m / n)`` and laid around the
estimate from all items. The results say so (``boot_items`` below ``n_items``; a note).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

import numpy as np
from scipy import sparse

from toolkit.analysis.votes import Votes
from toolkit.errors import InputError

AlphaMetric = Literal["nominal", "ordinal", "interval"]

MAX_ALPHA_VALUES = 50
"""Alpha's coincidence matrix has one row per distinct vote value: more than this is not a rating scale."""

RELIABILITY_BOOT_MAX_VOTES = 500_000
"""Votes above which the bootstrap intervals come from a random subsample of the items (see above)."""

_DRAWS_PER_CHUNK = 4_000_000  # replicate x item draw counts held at once (32 MB of float64)


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha with its bootstrap interval (NaN bounds when ``n_boot`` is 0)."""

    alpha: float
    ci: tuple[float, float]
    metric: str
    n_items: int  # items with two or more votes (the pairable ones)
    n_votes: int  # votes on those items
    n_boot: int
    confidence: float
    boot_items: int = 0  # items the bootstrap resampled: n_items, fewer when subsampled, 0 without

    @property
    def boot_subsampled(self) -> bool:
        return 0 < self.boot_items < self.n_items


@dataclass(frozen=True)
class IccResult:
    """ICC(2,k) and ICC(2,1) with bootstrap intervals, and the variance components behind them."""

    icc: float  # ICC(2,k)
    ci: tuple[float, float]
    icc_single: float  # ICC(2,1): the reliability of one vote
    icc_single_ci: tuple[float, float]
    k: float  # harmonic mean of the votes per item
    var_items: float
    var_raters: float
    var_error: float
    complete: bool  # every item rated once by every rater: the Shrout-Fleiss ANOVA estimate
    n_items: int
    n_raters: int
    n_votes: int
    n_boot: int
    confidence: float
    boot_items: int = 0  # items the bootstrap resampled: n_items, fewer when subsampled, 0 without

    @property
    def boot_subsampled(self) -> bool:
        return 0 < self.boot_items < self.n_items

    @property
    def method(self) -> str:
        """How the variance components were estimated, in words for the report."""
        if self.complete:
            return "two-way ANOVA of the complete item x rater design (Shrout & Fleiss)"
        return "Henderson's method I for the incomplete design (equal to Shrout & Fleiss on a complete one)"


@dataclass(frozen=True)
class Reliability:
    """Both coefficients; one that cannot be computed is None and ``notes`` says why."""

    alpha: AlphaResult | None
    icc: IccResult | None
    notes: tuple[str, ...] = ()


def _check_metric(metric: str) -> None:
    if metric not in get_args(AlphaMetric):
        raise InputError(f"unknown alpha metric {metric!r}; use 'nominal', 'ordinal' or 'interval'")


def _check_boot(n_boot: int, confidence: float) -> None:
    if n_boot < 0:
        raise InputError(f"the number of bootstrap replicates must be 0 or more, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"the confidence level must lie between 0 and 1, got {confidence}")


def _draw_counts(rng: np.random.Generator, n_items: int, n_boot: int, width: int = 0) -> Iterator[np.ndarray]:
    """Bootstrap draws in chunks: row ``b`` counts how often replicate ``b`` drew each item.

    A chunk holds as many replicates as keep (replicates x max(items, ``width``)) bounded, so
    memory stays flat however many replicates are asked for.
    """
    chunk = max(1, _DRAWS_PER_CHUNK // max(n_items, width, 1))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        draws = rng.integers(0, n_items, size=(rows, n_items)) + n_items * np.arange(rows)[:, None]
        yield np.bincount(draws.ravel(), minlength=rows * n_items).reshape(rows, n_items).astype(float)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high))


def _boot_subsample(sizes: np.ndarray, max_votes: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded random subsample of the items (``sizes``: votes per item)
    holding about ``max_votes`` votes; None when all of them hold no more."""
    total = int(sizes.sum())
    if total <= max_votes:
        return None
    keep = max(2, int(sizes.size * max_votes / total))
    chosen = np.random.default_rng([seed, 2]).choice(sizes.size, size=keep, replace=False)
    return np.sort(chosen)


def _scaled_interval(
    boot: np.ndarray, confidence: float, point: float, sub_point: float, m: int, n: int
) -> tuple[float, float]:
    """The m-out-of-n interval: the subsample's percentile deviations, times sqrt(m / n), around ``point``."""
    low, high = _interval(boot, confidence)
    factor = np.sqrt(m / n)
    return (float(point + factor * (low - sub_point)), float(point + factor * (high - sub_point)))


# --- Krippendorff's alpha -------------------------------------------------------------------------


def _alpha_from_coincidences(o: np.ndarray, values: np.ndarray, metric: AlphaMetric) -> np.ndarray:
    """Alpha for a batch of coincidence matrices ``o`` (batch, V, V) over the sorted ``values``."""
    n_v = o.sum(axis=1)  # (batch, V): pairable values per level (o is symmetric)
    n = n_v.sum(axis=1)
    size = values.size
    if metric == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(size), o.shape)
    elif metric == "interval":
        delta = np.broadcast_to((values[:, None] - values[None, :]) ** 2, o.shape)
    elif metric == "ordinal":
        # delta(c, k) = (sum of n_g for g from c to k - (n_c + n_k) / 2) ** 2: ranks, not values.
        index = np.arange(size)
        low, high = np.minimum.outer(index, index), np.maximum.outer(index, index)
        cum = np.cumsum(n_v, axis=1)
        between = cum[:, high] - cum[:, low] + n_v[:, low]
        delta = (between - (n_v[:, low] + n_v[:, high]) / 2.0) ** 2
    else:  # the callers check the metric first
        raise AssertionError(metric)
    observed = (o * delta).sum(axis=(1, 2))
    # Expected disagreement: e = (n_c n_k - [c == k] n_c) / (n - 1); delta's diagonal is zero.
    expected = np.einsum("bc,bk,bck->b", n_v, n_v, delta) / (n - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(expected > 0, 1.0 - observed / expected, np.nan)


def _value_codes(vote: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(vote, return_inverse=True)``; for whole numbers in a short range (a rating
    scale) by counting instead of sorting, which at tens of millions of votes is seconds less."""
    if vote.size:
        low, high = float(vote.min()), float(vote.max())
        if np.isfinite(low) and high - low <= 2 * MAX_ALPHA_VALUES:
            shifted = vote - low
            whole = shifted.astype(np.int64)
            if np.array_equal(whole, shifted):
                present = np.flatnonzero(np.bincount(whole))
                lookup = np.zeros(int(present[-1]) + 1, dtype=np.int64)
                lookup[present] = np.arange(present.size)
                return present + low, lookup[whole]
    values, code = np.unique(vote, return_inverse=True)
    return values, code


def _alpha_shares(votes: Votes) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct vote values, each pairable item's coincidences ``(c c^T - diag c) / (m - 1)``
    flattened to (items, V*V) (their sum is the coincidence matrix), and the pairable votes."""
    values, code = _value_codes(votes.vote)
    if values.size > MAX_ALPHA_VALUES:
        raise InputError(f"Krippendorff's alpha needs a rating scale; the votes take {values.size} distinct values")
    size = values.size
    counts = np.bincount(votes.item * size + code, minlength=votes.n_items * size).reshape(votes.n_items, size)
    m = counts.sum(axis=1)
    pairable = m >= 2
    if pairable.sum() < 2:
        raise InputError(f"Krippendorff's alpha needs at least 2 items with 2 or more votes; found {pairable.sum()}")
    c = counts[pairable].astype(float)
    share = (c[:, :, None] * c[:, None, :] - c[:, :, None] * np.eye(size)) / (m[pairable] - 1.0)[:, None, None]
    return values, share.reshape(len(c), size * size), int(m[pairable].sum())


def krippendorff_alpha(
    votes: Votes,
    metric: AlphaMetric = "ordinal",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_boot_votes: int = RELIABILITY_BOOT_MAX_VOTES,
) -> AlphaResult:
    """Krippendorff's alpha of ``votes`` with a percentile bootstrap interval over items.

    Raises :class:`~toolkit.errors.InputError` when fewer than two items have two or more votes,
    when every pairable vote has the same value (alpha is 0/0), or when the votes take more than
    ``MAX_ALPHA_VALUES`` distinct values.
    """
    _check_boot(n_boot, confidence)
    _check_metric(metric)
    values, share, n_votes = _alpha_shares(votes)
    size = values.size
    per_item = votes.item_counts()
    sizes = per_item[per_item >= 2]  # votes of the pairable items, in the rows' order
    point = _alpha_from_coincidences(share.sum(axis=0).reshape(1, size, size), values, metric)[0]
    if not np.isfinite(point):
        raise InputError("Krippendorff's alpha is undefined: every pairable vote has the same value")
    ci = (float("nan"), float("nan"))
    boot_items = 0
    if n_boot:
        rng = np.random.default_rng(seed)
        chosen = _boot_subsample(sizes, max_boot_votes, seed)
        sample = share if chosen is None else share[chosen]
        parts = [
            _alpha_from_coincidences((w @ sample).reshape(-1, size, size), values, metric)
            for w in _draw_counts(rng, len(sample), n_boot)
        ]
        boot = np.concatenate(parts)
        boot_items = len(sample)
        if chosen is None:
            ci = _interval(boot, confidence)
        else:
            sub_point = _alpha_from_coincidences(sample.sum(axis=0).reshape(1, size, size), values, metric)[0]
            ci = _scaled_interval(boot, confidence, float(point), float(sub_point), boot_items, len(share))
    return AlphaResult(
        alpha=float(point),
        ci=ci,
        metric=metric,
        n_items=len(share),
        n_votes=n_votes,
        n_boot=n_boot,
        confidence=confidence,
        boot_items=boot_items,
    )


# --- ICC(2,k) -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Design:
    """The per-item and per-cell sums Henderson's method I is built from."""

    n: np.ndarray  # votes per item
    total: np.ndarray  # sum of votes per item
    squares: np.ndarray  # sum of squared votes per item
    k1: np.ndarray  # per item: sum over its raters of n_ij^2 / n_i
    cell_item: np.ndarray  # one entry per (item, rater) cell that holds votes
    cell_rater: np.ndarray
    n_ij: np.ndarray  # votes in the cell
    s_ij: np.ndarray  # their sum
    n_raters: int

    @property
    def n_cells(self) -> int:
        return int(self.n_ij.size)

    @cached_property
    def unit_cells(self) -> bool:
        """One vote in every cell (the usual case): then n_ij^2 = n_ij."""
        return bool((self.n_ij == 1).all())

    @cached_property
    def cells(self) -> sparse.csr_matrix:
        """item x (3 * raters): rater totals | cell counts n_ij | n_ij^2 (for weighted items); the
        last block is left out when it equals the counts (:attr:`unit_cells`)."""
        r = self.n_raters
        blocks = 2 if self.unit_cells else 3
        rows = np.concatenate([self.cell_item] * blocks)
        cols = np.concatenate([self.cell_rater + k * r for k in range(blocks)])
        data = np.concatenate([self.s_ij, self.n_ij, self.n_ij**2][:blocks])
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(self.n), blocks * r))

    def per_rater(self, w: np.ndarray | None) -> np.ndarray:
        """(batch, 3 * raters) rater totals, counts and squared cell counts for item weights ``w``;
        ``w=None``: every item once (no sparse product)."""
        if w is None:
            r = self.n_raters
            parts = [np.bincount(self.cell_rater, weights=v, minlength=r) for v in (self.s_ij, self.n_ij, self.n_ij**2)]
            return np.concatenate(parts)[None, :]
        product = np.asarray((self.cells.T @ w.T).T)  # a sparse product
        if self.unit_cells:  # the squared counts are the counts
            product = np.concatenate([product, product[:, self.n_raters :]], axis=1)
        return product


def _one_vote_per_cell(votes: Votes) -> bool:
    """Whether no rater voted twice on an item. A sparse items x raters matrix merges a cell's
    entries into one, sorting each item's few raters (not one key per vote, as a sort of all
    the votes would: seconds at tens of millions of votes)."""
    cells = sparse.csr_matrix(
        (np.ones(votes.item.size, dtype=bool), (votes.item, votes.rater)), shape=(votes.n_items, votes.n_raters)
    )
    return bool(cells.nnz == votes.item.size)


def _design(votes: Votes) -> _Design:
    n_items, n_raters = votes.n_items, votes.n_raters
    y = np.asarray(votes.vote, dtype=float)  # the votes' own array when already float
    n = np.bincount(votes.item, minlength=n_items).astype(float)
    if _one_vote_per_cell(votes):  # the usual case: the votes are the cells
        cell_item, cell_rater, n_ij, s_ij = votes.item, votes.rater, np.ones(y.size), y
    else:
        cell, cell_code = np.unique(votes.item * np.int64(n_raters) + votes.rater, return_inverse=True)
        cell_item, cell_rater = cell // n_raters, cell % n_raters
        n_ij = np.bincount(cell_code).astype(float)
        s_ij = np.bincount(cell_code, weights=y)
    with np.errstate(divide="ignore", invalid="ignore"):
        k1 = np.bincount(cell_item, weights=n_ij**2, minlength=n_items) / n
    return _Design(
        n=n,
        total=np.bincount(votes.item, weights=y, minlength=n_items),
        squares=np.bincount(votes.item, weights=y * y, minlength=n_items),
        k1=np.nan_to_num(k1),
        cell_item=cell_item,
        cell_rater=cell_rater,
        n_ij=n_ij,
        s_ij=s_ij,
        n_raters=n_raters,
    )


def _henderson(design: _Design, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Method I variance components (batch, 3) = (item, rater, error), the system's condition number
    and the harmonic mean of votes per item, for item weights ``w`` (batch, items): the data with
    item ``i`` present ``w[b, i]`` times (``None``: every item once)."""
    n_raters = design.n_raters
    per_rater = design.per_rater(w)
    if w is None:
        w = np.ones((1, len(design.n)))
    n_items = w.sum(axis=1)  # items drawn (each copy counts as an item)
    big_n = w @ design.n
    t0 = w @ design.squares
    t_a = w @ (design.total**2 / design.n)
    grand = w @ design.total
    t_mu = grand**2 / big_n
    k1 = w @ design.k1
    k3 = (w @ design.n**2) / big_n
    r_total, r_n, r_n2 = per_rater[:, :n_raters], per_rater[:, n_raters : 2 * n_raters], per_rater[:, 2 * n_raters :]
    seen = r_n > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t_b = np.where(seen, r_total**2 / r_n, 0.0).sum(axis=1)
        k2 = np.where(seen, r_n2 / r_n, 0.0).sum(axis=1)
    k4 = (r_n**2).sum(axis=1) / big_n
    n_r = seen.sum(axis=1)
    # E[T - T_mu] = coefficients @ (s2_item, s2_rater, s2_error) for T = T_A, T_B, T_0.
    coef = np.stack(
        [
            np.stack([big_n - k3, k1 - k4, n_items - 1.0], axis=1),
            np.stack([k2 - k3, big_n - k4, n_r - 1.0], axis=1),
            np.stack([big_n - k3, big_n - k4, big_n - 1.0], axis=1),
        ],
        axis=1,
    )
    rhs = np.stack([t_a - t_mu, t_b - t_mu, t0 - t_mu], axis=1)
    cond = np.linalg.cond(coef)
    solvable = np.isfinite(cond) & (cond < 1e12)
    components = np.full(rhs.shape, np.nan)
    if solvable.any():
        components[solvable] = np.linalg.solve(coef[solvable], rhs[solvable][..., None])[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        harmonic_k = n_items / (w @ (1.0 / design.n))
    return components, cond, harmonic_k


def _with_votes_only(votes: Votes) -> Votes:
    """The same votes with the items and raters that have none dropped from the codes (a
    :meth:`Votes.subset` keeps them, and an item without votes has no mean to speak of)."""
    # Codes of the items and raters that have votes, in code order (what np.unique's inverse
    # gives), by counting rather than sorting: tens of millions of votes cost seconds less.
    has_item = np.bincount(votes.item, minlength=votes.n_items) > 0
    has_rater = np.bincount(votes.rater, minlength=votes.n_raters) > 0
    if has_item.all() and has_rater.all():
        return votes
    used_items, used_raters = np.flatnonzero(has_item), np.flatnonzero(has_rater)
    item_code = (np.cumsum(has_item) - 1)[votes.item]
    rater_code = (np.cumsum(has_rater) - 1)[votes.rater]
    items = votes.items[used_items]
    return Votes(item_code, rater_code, votes.vote, items, votes.raters[used_raters], np.arange(items.size), items)


def _icc_values(components: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s_item, s_rater, s_error = components.T
    noise = s_rater + s_error
    with np.errstate(divide="ignore", invalid="ignore"):
        return s_item / (s_item + noise / k), s_item / (s_item + noise)


def icc2k(
    votes: Votes,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    max_boot_votes: int = RELIABILITY_BOOT_MAX_VOTES,
) -> IccResult:
    """ICC(2,k) and ICC(2,1) of ``votes`` (see the module docstring for the incomplete-design estimate).

    Votes may be any numbers (bias-removed or z-scored votes too). Raises
    :class:`~toolkit.errors.InputError` naming the reason when the design cannot separate item,
    rater and error variance (fewer than 2 items or raters, no item with two votes, no rater
    with two items) or the items' votes do not vary at all.
    """
    _check_boot(n_boot, confidence)
    votes = _with_votes_only(votes)
    n_e = votes.item_counts()
    if votes.n_items < 2 or votes.n_raters < 2:
        raise InputError(f"ICC(2,k) needs at least 2 items and 2 raters; found {votes.n_items} and {votes.n_raters}")
    if (n_e >= 2).sum() == 0:
        raise InputError("ICC(2,k) needs items with 2 or more votes; every item has one")
    if (votes.rater_counts() >= 2).sum() == 0:
        raise InputError(
            "ICC(2,k) is undefined: no rater rated two items, so rater and error variance cannot be told apart"
        )
    design = _design(votes)
    comp, cond, k = _henderson(design, None)
    if not np.isfinite(comp).all():
        raise InputError(
            f"ICC(2,k) is undefined for this design: item, rater and error variance cannot be separated "
            f"(condition number {cond[0]:.3g}); it needs raters who rate several items, and items with several raters"
        )
    icc, single = _icc_values(comp, k)
    if not (np.isfinite(icc[0]) and np.isfinite(single[0])):
        raise InputError("ICC(2,k) is undefined: the votes do not vary")
    nan_ci = (float("nan"), float("nan"))
    ci = single_ci = nan_ci
    boot_items = 0
    if n_boot:
        chosen = _boot_subsample(n_e, max_boot_votes, seed)
        sample = design
        if chosen is not None:  # the bootstrap's own design on the subsample's votes
            keep = np.zeros(votes.n_items, dtype=bool)
            keep[chosen] = True
            sample = _design(_with_votes_only(votes.subset(keep[votes.item])))
        boot_items = len(sample.n)
        rng = np.random.default_rng(seed)
        icc_parts, single_parts = [], []
        # The per-rater totals of a chunk are (replicates x 3 * raters): bound that too.
        for w in _draw_counts(rng, boot_items, n_boot, width=3 * sample.n_raters):
            components, _, k_boot = _henderson(sample, w)
            icc_b, single_b = _icc_values(components, k_boot)
            icc_parts.append(icc_b)
            single_parts.append(single_b)
        icc_boot, single_boot = np.concatenate(icc_parts), np.concatenate(single_parts)
        if chosen is None:
            ci, single_ci = _interval(icc_boot, confidence), _interval(single_boot, confidence)
        else:
            sub_icc, sub_single = _icc_values(*_henderson(sample, None)[::2])
            scale = (boot_items, votes.n_items)
            ci = _scaled_interval(icc_boot, confidence, float(icc[0]), float(sub_icc[0]), *scale)
            single_ci = _scaled_interval(single_boot, confidence, float(single[0]), float(sub_single[0]), *scale)
    complete = design.n_cells == votes.n_items * votes.n_raters == votes.n_votes
    return IccResult(
        icc=float(icc[0]),
        ci=ci,
        icc_single=float(single[0]),
        icc_single_ci=single_ci,
        k=float(k[0]),
        var_items=float(comp[0, 0]),
        var_raters=float(comp[0, 1]),
        var_error=float(comp[0, 2]),
        complete=bool(complete),
        n_items=votes.n_items,
        n_raters=votes.n_raters,
        n_votes=votes.n_votes,
        n_boot=n_boot,
        confidence=confidence,
        boot_items=boot_items,
    )


def boot_subsample_note(what: str, boot_items: int, n_items: int, max_votes: int = RELIABILITY_BOOT_MAX_VOTES) -> str:
    """The sentence a result whose bootstrap ran on a subsample of the items carries."""
    return (
        f"{what} intervals: bootstrap of a random {boot_items:,} of the {n_items:,} items, widths scaled by "
        f"sqrt({boot_items:,}/{n_items:,}) (m-out-of-n bootstrap, above {max_votes:,} votes)"
    )


def measure_reliability(
    votes: Votes,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metric: AlphaMetric = "ordinal",
    max_boot_votes: int = RELIABILITY_BOOT_MAX_VOTES,
) -> Reliability:
    """Krippendorff's alpha and ICC(2,k) of the same votes; a coefficient the votes cannot
    support is left out with the reason in ``notes`` (bad arguments still raise), and a
    bootstrap run on a subsample of the items (above ``max_boot_votes`` votes) is named there too."""
    _check_boot(n_boot, confidence)
    _check_metric(metric)
    notes: list[str] = []
    alpha: AlphaResult | None = None
    icc: IccResult | None = None
    try:
        alpha = krippendorff_alpha(votes, metric, n_boot, confidence, seed, max_boot_votes)
        if alpha.boot_subsampled:
            notes.append(boot_subsample_note("Krippendorff's alpha", alpha.boot_items, alpha.n_items, max_boot_votes))
    except InputError as exc:
        notes.append(str(exc))  # the message names the coefficient and the reason
    try:
        icc = icc2k(votes, n_boot, confidence, seed, max_boot_votes)
        if icc.boot_subsampled:
            notes.append(boot_subsample_note("ICC(2,k) and ICC(2,1)", icc.boot_items, icc.n_items, max_boot_votes))
    except InputError as exc:
        notes.append(str(exc))  # the message names the coefficient and the reason
    return Reliability(alpha, icc, tuple(notes))
