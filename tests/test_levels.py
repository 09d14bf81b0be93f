import numpy as np
import pandas as pd
import pytest

from toolkit.errors import InputError
from toolkit.levels import (
    LEVELS,
    LevelScale,
    entropy,
    expected_score,
    histogram_stats,
    level_value,
    level_word,
    mos_to_level,
    soft_label,
    vote_stats,
)
from toolkit.qalign import COUNT_COLUMNS


def test_words_and_values_round_trip():
    assert LEVELS == ("excellent", "good", "fair", "poor", "bad")
    assert [level_word(v) for v in (5, 4, 3, 2, 1)] == list(LEVELS)
    assert [level_value(w.upper()) for w in LEVELS] == [5, 4, 3, 2, 1]
    with pytest.raises(InputError, match="unknown level word"):
        level_value("superb")
    with pytest.raises(InputError):
        level_word(0)


def test_paper_rule_equal_intervals_left_open():
    # [0, 100]: edges 20, 40, 60, 80; an edge value belongs to the lower level.
    scores = [0, 10, 20, 20.001, 40, 59.9, 60, 80, 80.5, 100]
    assert mos_to_level(scores, low=0, high=100).tolist() == [1, 1, 1, 2, 2, 3, 3, 4, 5, 5]
    # bounds default to the data's own min and max
    assert mos_to_level([2.0, 3.0, 4.0, 6.0]).tolist() == [1, 2, 3, 5]


def test_dmos_is_flipped():
    assert mos_to_level([0, 50, 100], low=0, high=100, higher_is_better=False).tolist() == [5, 3, 1]


def test_floor_rule_maintainers_recipe():
    # rescale to [0,5], int part: 5,4 -> excellent; 3 good; 2 fair; 1 poor; 0 bad
    scale = LevelScale(0, 5)
    assert scale.to_levels([0, 0.99, 1, 2.5, 3.2, 4.0, 5.0], rule="floor").tolist() == [1, 1, 2, 3, 4, 5, 5]


def test_out_of_bounds_names_value_and_position():
    with pytest.raises(InputError, match=r"score 101.0 at position 2 is outside"):
        mos_to_level([10, 20, 101], low=0, high=100)
    with pytest.raises(InputError, match="not a finite number"):
        mos_to_level([1.0, float("nan")])


def test_vote_stats_matches_pandas_and_t_interval():
    rng = np.random.default_rng(0)
    votes = pd.DataFrame({"item": rng.integers(0, 20, 600), "vote": rng.integers(1, 6, 600)})
    out = vote_stats(votes)
    grouped = votes.groupby("item")["vote"]
    np.testing.assert_allclose(out["mos"], grouped.mean().loc[out.index])
    np.testing.assert_allclose(out["sd"], grouped.std(ddof=1).loc[out.index])
    assert (out[list(COUNT_COLUMNS)].sum(axis=1) == out["n"]).all()
    from scipy import stats

    row = out.iloc[0]
    half = stats.t.ppf(0.975, row.n - 1) * row.sd / np.sqrt(row.n)
    assert row.ci_low == pytest.approx(row.mos - half)
    assert row.ci_high == pytest.approx(row.mos + half)


def test_vote_stats_rejects_bad_votes():
    with pytest.raises(InputError, match=r"vote 6.0 at row 1"):
        vote_stats(pd.DataFrame({"item": [1, 1], "vote": [3, 6]}))


def test_histogram_stats_single_vote_has_zero_width_interval():
    out = histogram_stats(np.array([[0, 0, 1, 0, 0]]))
    assert out.loc[0, "mos"] == 3 and out.loc[0, "sd"] == 0
    assert out.loc[0, "ci_low"] == out.loc[0, "ci_high"] == 3


def test_soft_labels_sum_to_one_and_keep_the_mos():
    mos = np.array([1.0, 1.3, 2.5, 3.0, 4.2, 4.9, 5.0])
    sd = np.array([0.0, 2.0, 0.8, 0.9, 0.5, 0.3, 0.4])
    p = soft_label(mos, sd)
    assert p.shape == (7, 5)
    assert (p >= 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(expected_score(p), mos, atol=1e-8)
    # excellent first: a high MOS puts most mass at the front
    assert p[4].argmax() in (0, 1) and p[0, 4] == 1.0
    # symmetric around 3
    np.testing.assert_allclose(p[3], p[3][::-1], atol=1e-12)
    # tiny SD falls back to the two adjacent levels
    two = soft_label([3.25], [0.0])[0]
    np.testing.assert_allclose(two, [0, 0.25, 0.75, 0, 0])


def test_entropy_bounds():
    assert entropy(np.array([1.0, 0, 0, 0, 0])) == pytest.approx(0, abs=1e-9)
    assert entropy(np.full(5, 0.2)) == pytest.approx(np.log(5))


def test_vote_counts_run_excellent_first_like_level_distributions():
    # One order for every per-level vector: a histogram of only "excellent" votes is the first column.
    out = histogram_stats(np.array([[4, 0, 0, 0, 0], [0, 0, 0, 0, 4]]))
    assert out["mos"].tolist() == [5.0, 1.0]
    stats = vote_stats(pd.DataFrame({"item": ["a", "a", "b"], "vote": [5, 5, 1]}))
    assert stats.loc["a", list(COUNT_COLUMNS)].tolist() == [2, 0, 0, 0, 0]
    assert stats.loc["b", list(COUNT_COLUMNS)].tolist() == [0, 0, 0, 0, 1]
    assert list(COUNT_COLUMNS) == [f"votes_{w}" for w in LEVELS]
