"""Split-half agreement and reliability intervals at scale: histogram splits draw the same halves
as shuffled votes, and a subsample of the items (above a vote cap) is used and said to be used."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.analysis import AnalysisOptions, analyze_votes, prepare_votes, split_half_agreement
from toolkit.analysis import agreement as agreement_module
from toolkit.analysis import mle as mle_module
from toolkit.analysis.agreement import _histogram_half
from toolkit.analysis.mle_solvers import solve_fast, solve_sureal
from toolkit.analysis.reliability import _design, _henderson, icc2k, krippendorff_alpha, measure_reliability
from toolkit.analysis.report import report_data, write_report
from toolkit.analysis.screening import _longest_runs
from toolkit.analysis.simulate import simulate_study


@pytest.fixture(scope="module")
def study() -> object:
    return simulate_study(600, 40, 24, seed=11, inconsistency=(0.3, 0.8), ambiguity=(0.2, 0.5))


def test_a_histogram_half_draws_without_replacement_in_the_right_proportions() -> None:
    rng = np.random.default_rng(0)
    counts = np.array([[10, 0, 5, 3, 2], [0, 0, 0, 0, 7], [1, 1, 1, 1, 1]] * 2000)
    take = counts.sum(axis=1) // 2
    drawn = _histogram_half(counts, take, rng)
    assert (drawn >= 0).all() and (drawn <= counts).all()
    assert (drawn.sum(axis=1) == take).all()
    # Hypergeometric means: take * c / n per value, checked over the 2000 copies of each row.
    for row in range(3):
        mean = drawn[row::3].mean(axis=0)
        expected = take[row] * counts[row] / counts[row].sum()
        assert mean == pytest.approx(expected, abs=0.1)


def test_histogram_splits_agree_with_shuffled_splits(study, monkeypatch) -> None:
    votes = prepare_votes(study.votes)
    shuffled = split_half_agreement(votes, n_splits=100, seed=2)
    monkeypatch.setattr(agreement_module, "_MATRIX_CELLS", 0)  # every matrix counts as large
    histogram = split_half_agreement(votes, n_splits=100, seed=2)
    assert histogram != shuffled  # another way of drawing, so other random numbers
    assert histogram.srcc_half == pytest.approx(shuffled.srcc_half, abs=0.01)
    assert histogram.plcc_half == pytest.approx(shuffled.plcc_half, abs=0.01)
    assert histogram.srcc_ci[0] < shuffled.srcc < histogram.srcc_ci[1]
    assert histogram == split_half_agreement(votes, n_splits=100, seed=2)  # seeded
    assert not histogram.subsampled and histogram.n_items == histogram.n_items_eligible == 600


def test_split_half_above_the_vote_cap_uses_a_subsample_and_says_so(study, tmp_path) -> None:
    votes = prepare_votes(study.votes)
    full = split_half_agreement(votes, n_splits=100, seed=2)
    part = split_half_agreement(votes, n_splits=100, seed=2, max_votes=votes.n_votes // 3)
    assert part.subsampled and part.n_items_eligible == 600
    assert part.n_items == pytest.approx(200, abs=2)
    assert part.srcc == pytest.approx(full.srcc, abs=0.02)
    assert part.srcc_ci[1] - part.srcc_ci[0] > full.srcc_ci[1] - full.srcc_ci[0]  # fewer items, wider

    options = AnalysisOptions(agreement_splits=50, agreement_max_votes=votes.n_votes // 3, reliability_boot=0)
    analysis = analyze_votes(study.votes, options)
    assert analysis.agreement is not None and analysis.agreement.subsampled
    assert any("split-half agreement measured on a random" in note for note in analysis.notes)
    assert "items of 600, a random subsample" in write_report(analysis, tmp_path / "report").read_text()
    assert report_data(analysis)["split_half"]["n_items_eligible"] == 600


def test_reliability_bootstrap_above_the_vote_cap_uses_a_subsample_and_says_so(study) -> None:
    votes = prepare_votes(study.votes)
    full = measure_reliability(votes, n_boot=300, seed=1)
    part = measure_reliability(votes, n_boot=300, seed=1, max_boot_votes=votes.n_votes // 4)
    assert full.alpha is not None and full.icc is not None and part.alpha is not None and part.icc is not None
    assert not full.notes and not full.alpha.boot_subsampled and full.alpha.boot_items == 600
    # The estimates use every vote either way; only the intervals come from the subsample.
    assert part.alpha.alpha == full.alpha.alpha and part.icc.icc == full.icc.icc
    assert part.alpha.boot_subsampled and part.icc.boot_subsampled
    assert part.icc.boot_items == pytest.approx(150, abs=2)
    assert len(part.notes) == 2 and all("m-out-of-n bootstrap" in note for note in part.notes)
    for low_high, point, reference in (
        (part.alpha.ci, part.alpha.alpha, full.alpha.ci),
        (part.icc.ci, part.icc.icc, full.icc.ci),
        (part.icc.icc_single_ci, part.icc.icc_single, full.icc.icc_single_ci),
    ):
        assert low_high[0] < point < low_high[1]
        width, full_width = low_high[1] - low_high[0], reference[1] - reference[0]
        assert 0.5 * full_width < width < 2.0 * full_width  # rescaled to the full study's width
    assert krippendorff_alpha(votes, n_boot=0, max_boot_votes=10).boot_items == 0  # no bootstrap, no subsample
    assert icc2k(votes, n_boot=50, seed=1, max_boot_votes=votes.n_votes // 4) == icc2k(
        votes, n_boot=50, seed=1, max_boot_votes=votes.n_votes // 4
    )


def test_the_icc_point_estimate_needs_no_sparse_product(study) -> None:
    votes = prepare_votes(study.votes)
    design = _design(votes)
    lean = _henderson(design, None)
    weighted = _henderson(design, np.ones((1, votes.n_items)))
    for a, b in zip(lean, weighted):
        assert a == pytest.approx(b, rel=1e-12)


def _runs_by_two_key_sort(rater: np.ndarray, vote: np.ndarray, key: np.ndarray, n_raters: int) -> np.ndarray:
    order = np.lexsort((key, rater))
    r, v = rater[order], vote[order]
    start = np.r_[True, (r[1:] != r[:-1]) | (v[1:] != v[:-1])]
    lengths = np.bincount(np.cumsum(start) - 1)
    longest = np.zeros(n_raters, dtype=np.int64)
    np.maximum.at(longest, r[start], lengths)
    return longest


def test_longest_runs_in_answer_order_equal_the_two_key_sort() -> None:
    rng = np.random.default_rng(3)
    rater = rng.integers(0, 40, 5000)
    vote = rng.integers(4, 6, 5000).astype(float)  # two levels: long runs happen
    for key in (np.sort(rng.integers(0, 300, 5000)), np.zeros(5000, dtype=np.int64), rng.integers(0, 300, 5000)):
        expected = _runs_by_two_key_sort(rater, vote, key, 40)
        assert np.array_equal(_longest_runs(rater, vote, key, 40), expected)
        assert expected.max() >= 5


@pytest.mark.parametrize("solver", [solve_fast, lambda d: solve_sureal(d, content_ambiguity=False)])
def test_the_content_oblivious_fit_on_raters_is_the_fit_on_rater_content_pairs(study, solver) -> None:
    # mle_co's design pairs votes by rater alone; the general design (pairs of rater and content)
    # must reach the same numbers, only summed in another order.
    votes = prepare_votes(study.votes)
    by_rater, by_pair = mle_module._design(votes, content_ambiguity=False), mle_module._design(votes)
    assert by_rater.n_pairs == votes.n_raters < by_pair.n_pairs
    lean, full = solver(by_rater), solver(by_pair)
    assert lean.iterations == full.iterations and lean.converged and full.converged
    for a, b in ((lean.x, full.x), (lean.b, full.b), (lean.v, full.v)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("repeats", [False, True])
def test_weighted_rater_sums_of_the_icc_design_are_the_direct_sums(study, repeats) -> None:
    # With one vote per cell the squared cell counts are the counts and are not multiplied twice.
    votes = prepare_votes(study.votes)
    if repeats:  # every tenth vote given twice: cells of two votes
        again = np.arange(0, votes.n_votes, 10)
        keep = np.r_[np.arange(votes.n_votes), again]
        codes = (votes.item[keep], votes.rater[keep], votes.vote[keep])
        votes = type(votes)(*codes, votes.items, votes.raters, votes.content, votes.contents)
    design = _design(votes)
    assert design.unit_cells is not repeats
    w = np.random.default_rng(5).integers(0, 3, size=(4, votes.n_items)).astype(float)
    n_ij = np.zeros((votes.n_items, votes.n_raters))
    s_ij = np.zeros_like(n_ij)
    np.add.at(n_ij, (votes.item, votes.rater), 1.0)
    np.add.at(s_ij, (votes.item, votes.rater), votes.vote)
    expected = np.concatenate([w @ s_ij, w @ n_ij, w @ n_ij**2], axis=1)
    np.testing.assert_allclose(design.per_rater(w), expected, rtol=1e-12)
