"""Krippendorff's alpha and ICC(2,k): published worked examples, an independent matrix derivation of
the incomplete-design estimate, the linear bootstrap against explicit resampling, and the refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.reliability import (
    AlphaMetric,
    _alpha_from_coincidences,
    _alpha_shares,
    _design,
    _henderson,
    _icc_values,
    icc2k,
    krippendorff_alpha,
    measure_reliability,
)
from toolkit.analysis.votes import Votes, prepare_votes
from toolkit.errors import InputError

NAN = np.nan

# Krippendorff, K. (2011). "Computing Krippendorff's Alpha-Reliability", University of
# Pennsylvania, section C: 4 observers x 12 units, values 1-5, missing values blank. Published:
# alpha nominal 0.743, ordinal 0.815, interval 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]

# Shrout, P. E. & Fleiss, J. L. (1979). "Intraclass correlations: uses in assessing rater
# reliability", Psychological Bulletin 86(2), Table 2: 6 targets x 4 judges. Published (Table 4):
# ICC(2,1) = .29, ICC(2,4) = .62.
SHROUT_FLEISS_1979 = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)


def coded(item: np.ndarray, rater: np.ndarray, value: np.ndarray) -> Votes:
    """Votes with any values (the ICC takes numbers beyond the 1-5 levels)."""
    item_code, items = pd.factorize(pd.Series(item))
    rater_code, raters = pd.factorize(pd.Series(rater), sort=True)
    n = len(items)
    return Votes(
        item_code.astype(np.int64),
        rater_code.astype(np.int64),
        np.asarray(value, dtype=float),
        pd.Index(items),
        pd.Index(raters),
        np.arange(n),
        pd.Index(items),
    )


def matrix_votes(matrix: list[list[float]] | np.ndarray, raters_by_rows: bool) -> pd.DataFrame:
    """A long vote table from a dense matrix, NaN cells left out."""
    data = np.asarray(matrix, dtype=float)
    rows = []
    for r, line in enumerate(data if raters_by_rows else data.T):
        for i, value in enumerate(line):
            if np.isfinite(value):
                rows.append({"item": f"u{i:02d}", "rater": f"r{r}", "vote": int(value)})
    return pd.DataFrame(rows)


def sparse_study(
    rng: np.random.Generator, n_items: int, n_raters: int, per_item: tuple[int, int], repeats: int = 0
) -> pd.DataFrame:
    """Each item voted on by a random subset of raters (sizes in ``per_item``); ``repeats`` extra
    votes by a rater who already voted on the item; levels 1-5 around a latent quality."""
    quality = rng.normal(3.0, 0.9, n_items)
    bias = rng.normal(0.0, 0.3, n_raters)
    rows = []
    for i in range(n_items):
        for r in rng.choice(n_raters, rng.integers(per_item[0], per_item[1] + 1), replace=False):
            rows.append((f"i{i}", f"r{r}", quality[i] + bias[r] + rng.normal(0, 0.7)))
    frame = pd.DataFrame(rows, columns=["item", "rater", "vote"])
    if repeats:
        frame = pd.concat([frame, frame.sample(repeats, random_state=1).assign(vote=lambda f: f["vote"] + 0.5)])
    frame["vote"] = np.clip(np.rint(frame["vote"]), 1, 5).astype(int)
    return frame.reset_index(drop=True)


# --- Krippendorff's alpha -------------------------------------------------------------------------


def test_alpha_reproduces_krippendorffs_worked_example() -> None:
    votes = prepare_votes(matrix_votes(KRIPPENDORFF_2011, raters_by_rows=True))
    published: dict[AlphaMetric, float] = {"nominal": 0.743, "ordinal": 0.815, "interval": 0.849}
    for metric, value in published.items():
        result = krippendorff_alpha(votes, metric=metric, n_boot=0)
        assert round(result.alpha, 3) == value, metric
        # Unit 12 has a single value: not pairable. 41 values in all, 40 on the 11 pairable units.
        assert (result.n_items, result.n_votes) == (11, 40)
        assert np.isnan(result.ci).all()


def test_alpha_equals_the_krippendorff_package_on_sparse_data() -> None:
    krippendorff = pytest.importorskip("krippendorff")
    frame = sparse_study(np.random.default_rng(7), n_items=150, n_raters=25, per_item=(1, 7))
    votes = prepare_votes(frame)
    dense = frame.pivot(index="rater", columns="item", values="vote").to_numpy(dtype=float)
    metrics: tuple[AlphaMetric, ...] = ("nominal", "ordinal", "interval")
    for metric in metrics:
        reference = krippendorff.alpha(reliability_data=dense, level_of_measurement=metric)
        assert krippendorff_alpha(votes, metric=metric, n_boot=0).alpha == pytest.approx(reference, abs=1e-12)


def test_alpha_counts_a_repeated_vote_as_another_value_of_the_item() -> None:
    krippendorff = pytest.importorskip("krippendorff")
    frame = sparse_study(np.random.default_rng(8), n_items=60, n_raters=12, per_item=(2, 5), repeats=30)
    votes = prepare_votes(frame)
    counts = pd.crosstab(frame["item"], frame["vote"]).reindex(columns=range(1, 6), fill_value=0)
    reference = krippendorff.alpha(
        value_counts=counts.to_numpy(), value_domain=[1, 2, 3, 4, 5], level_of_measurement="ordinal"
    )
    assert krippendorff_alpha(votes, n_boot=0).alpha == pytest.approx(reference, abs=1e-12)


# --- ICC(2,k) -------------------------------------------------------------------------------------


def test_icc_reproduces_shrout_and_fleiss() -> None:
    n, k = SHROUT_FLEISS_1979.shape
    item, rater = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
    result = icc2k(coded(item, rater, SHROUT_FLEISS_1979.ravel()), n_boot=0)
    assert round(result.icc, 2) == 0.62 and round(result.icc_single, 2) == 0.29
    assert result.complete and result.k == pytest.approx(k)

    # The textbook formulas from the two-way ANOVA mean squares, exactly.
    x = SHROUT_FLEISS_1979
    grand = x.mean()
    bms = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    jms = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    ems = (resid**2).sum() / ((n - 1) * (k - 1))
    assert result.icc == pytest.approx((bms - ems) / (bms + (jms - ems) / n), abs=1e-12)
    assert result.icc_single == pytest.approx((bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n), abs=1e-12)


def test_icc_on_an_incomplete_design_solves_the_method_i_equations() -> None:
    """The moment equations built here from the generic quadratic-form expectation
    E[y'Qy] = mu^2 1'Q1 + sum_t s2_t tr(Q Z_t Z_t') + s2_e tr(Q), with dense matrices."""
    frame = sparse_study(np.random.default_rng(11), n_items=25, n_raters=9, per_item=(1, 5), repeats=6)
    votes = prepare_votes(frame)
    result = icc2k(votes, n_boot=0)
    assert not result.complete

    y = votes.vote
    z_a = np.eye(votes.n_items)[votes.item]
    z_b = np.eye(votes.n_raters)[votes.rater]
    big_n = y.size
    forms = {
        "items": z_a @ np.diag(1 / z_a.sum(axis=0)) @ z_a.T,
        "raters": z_b @ np.diag(1 / z_b.sum(axis=0)) @ z_b.T,
        "all": np.eye(big_n),
    }
    q_mu = np.full((big_n, big_n), 1 / big_n)
    coef, rhs = [], []
    for q in forms.values():
        d = q - q_mu
        coef.append([np.trace(d @ z_a @ z_a.T), np.trace(d @ z_b @ z_b.T), np.trace(d)])
        rhs.append(y @ d @ y)
    s_item, s_rater, s_error = np.linalg.solve(np.array(coef), np.array(rhs))
    assert (result.var_items, result.var_raters, result.var_error) == pytest.approx(
        (s_item, s_rater, s_error), abs=1e-9
    )
    k = votes.n_items / (1 / votes.item_counts()).sum()
    assert result.k == pytest.approx(k)
    assert result.icc == pytest.approx(s_item / (s_item + (s_rater + s_error) / k), abs=1e-9)


def test_icc_recovers_the_variance_components_of_a_sparse_study() -> None:
    rng = np.random.default_rng(3)
    n_items, n_raters, per_item = 3000, 200, 8
    item = np.repeat(np.arange(n_items), per_item)
    rater = np.concatenate([rng.choice(n_raters, per_item, replace=False) for _ in range(n_items)])
    s_item, s_rater, s_error = 1.0, 0.25, 0.5
    value = (
        rng.normal(0, np.sqrt(s_item), n_items)[item]
        + rng.normal(0, np.sqrt(s_rater), n_raters)[rater]
        + rng.normal(0, np.sqrt(s_error), item.size)
    )
    result = icc2k(coded(item, rater, value), n_boot=300, seed=1)
    assert result.var_items == pytest.approx(s_item, abs=0.1)
    assert result.var_raters == pytest.approx(s_rater, abs=0.1)
    assert result.var_error == pytest.approx(s_error, abs=0.05)
    truth = s_item / (s_item + (s_rater + s_error) / per_item)
    assert result.icc == pytest.approx(truth, abs=0.02)
    assert result.ci[0] < result.icc < result.ci[1] and result.ci[1] - result.ci[0] < 0.05


# --- The bootstrap --------------------------------------------------------------------------------


def resampled(votes: Votes, draws: np.ndarray) -> Votes:
    """The votes of the drawn items, every drawn copy a separate item."""
    frame = votes.to_frame()
    parts = [frame[frame["item"] == votes.items[d]].assign(item=f"copy{c}") for c, d in enumerate(draws)]
    return prepare_votes(pd.concat(parts, ignore_index=True))


def test_a_bootstrap_replicate_equals_the_statistic_on_the_resampled_items() -> None:
    """Replicates are weighted sums of per-item parts; here one is checked against recomputing
    alpha and the ICC from scratch on the explicitly resampled votes."""
    frame = sparse_study(np.random.default_rng(5), n_items=40, n_raters=10, per_item=(2, 6), repeats=5)
    votes = prepare_votes(frame)
    rng = np.random.default_rng(0)
    for _ in range(3):
        draws = rng.integers(0, votes.n_items, votes.n_items)
        w = np.bincount(draws, minlength=votes.n_items)[None, :].astype(float)
        again = resampled(votes, draws)

        values, share, _ = _alpha_shares(votes)  # every item is pairable here
        size = values.size
        weighted = _alpha_from_coincidences((w @ share).reshape(1, size, size), values, "ordinal")[0]
        assert weighted == pytest.approx(krippendorff_alpha(again, n_boot=0).alpha, abs=1e-12)

        components, _, k = _henderson(_design(votes), w)
        icc, single = _icc_values(components, k)
        direct = icc2k(again, n_boot=0)
        assert (icc[0], single[0]) == pytest.approx((direct.icc, direct.icc_single), abs=1e-9)


def test_intervals_are_seeded_and_bracket_the_estimate() -> None:
    votes = prepare_votes(sparse_study(np.random.default_rng(2), n_items=120, n_raters=15, per_item=(3, 6)))
    first = measure_reliability(votes, n_boot=200, seed=4)
    again = measure_reliability(votes, n_boot=200, seed=4)
    other = measure_reliability(votes, n_boot=200, seed=5)
    assert first.alpha is not None and first.icc is not None and other.alpha is not None
    assert first == again and first.alpha.ci != other.alpha.ci
    assert first.alpha.ci[0] < first.alpha.alpha < first.alpha.ci[1]
    assert first.icc.ci[0] < first.icc.icc < first.icc.ci[1]
    assert first.icc.icc_single_ci[0] < first.icc.icc_single < first.icc.icc_single_ci[1]
    wide = krippendorff_alpha(votes, n_boot=200, seed=4, confidence=0.99)
    assert wide.ci[0] <= first.alpha.ci[0] and wide.ci[1] >= first.alpha.ci[1]


# --- Refusals -------------------------------------------------------------------------------------


def test_designs_that_cannot_support_a_coefficient_are_refused_with_the_reason() -> None:
    # Every rater rated one item: rater and error variance cannot be told apart.
    nested = prepare_votes(pd.DataFrame({"item": list("aabbcc"), "rater": list("uvwxyz"), "vote": [1, 2, 4, 5, 3, 3]}))
    with pytest.raises(InputError, match="no rater rated two items"):
        icc2k(nested)
    same = prepare_votes(pd.DataFrame({"item": list("aabb"), "rater": list("xyxy"), "vote": [3, 3, 3, 3]}))
    with pytest.raises(InputError, match="every pairable vote has the same value"):
        krippendorff_alpha(same)
    single = prepare_votes(pd.DataFrame({"item": list("abc"), "rater": list("xyx"), "vote": [1, 2, 3]}))
    report = measure_reliability(single, n_boot=10)
    assert report.alpha is None and report.icc is None
    assert "at least 2 items with 2 or more votes" in report.notes[0] and "ICC(2,k)" in report.notes[1]
    with pytest.raises(InputError, match="bootstrap replicates"):
        measure_reliability(single, n_boot=-1)
    with pytest.raises(InputError, match="unknown alpha metric"):
        krippendorff_alpha(prepare_votes(matrix_votes(KRIPPENDORFF_2011, True)), metric="ratio")  # type: ignore[arg-type]


def test_items_and_raters_left_without_votes_do_not_count() -> None:
    frame = sparse_study(np.random.default_rng(6), n_items=50, n_raters=10, per_item=(2, 5))
    votes = prepare_votes(frame)
    # A subset keeps the codes of the dropped rater (and of items only they rated).
    keep = (votes.rater != 0) & (votes.item != 3)
    subset = votes.subset(keep)
    fresh = prepare_votes(frame[keep].reset_index(drop=True))
    assert icc2k(subset, n_boot=20, seed=1) == icc2k(fresh, n_boot=20, seed=1)
    assert icc2k(subset, n_boot=0).n_raters == 9
    assert krippendorff_alpha(subset, n_boot=0).alpha == pytest.approx(krippendorff_alpha(fresh, n_boot=0).alpha)
