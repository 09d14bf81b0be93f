"""A categorical id column factorized through its codes gives what pandas' own factorize gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.analysis.votes import factorize_sorted

CASES = {
    "categories out of order, one unused, a missing value": pd.Categorical.from_codes(
        [2, 0, 2, 1, -1], categories=["z", "a", "m", "q"]
    ),
    "one category used": pd.Categorical.from_codes([3, 3], categories=["z", "a", "m", "q"]),
    "all missing": pd.Categorical.from_codes([-1, -1], categories=["z", "a"]),
    "many, 16-bit codes": pd.Categorical.from_codes(
        np.random.default_rng(1).integers(-1, 2000, 5000), categories=[f"r{k:04d}" for k in range(3000)][::-1]
    ),
    "plain text": pd.array(["b", "a", None, "b"], dtype=object),
}


@pytest.mark.parametrize("name", list(CASES))
def test_factorize_sorted_is_pandas_factorize_sorted(name) -> None:
    values = pd.Series(CASES[name])
    expected_codes, expected_uniques = pd.factorize(values, sort=True)
    codes, uniques = factorize_sorted(values)
    assert codes.dtype == expected_codes.dtype and np.array_equal(codes, expected_codes)
    pd.testing.assert_index_equal(uniques, pd.Index(expected_uniques), exact=True)


def test_screening_a_categorical_vote_table_is_screening_its_text() -> None:
    from toolkit.analysis.screening import screen_raters

    rng = np.random.default_rng(5)
    n = 600
    items = [f"item_{k:02d}" for k in rng.integers(0, 40, n)]
    raters = [f"rater_{k}" for k in rng.integers(0, 12, n)]
    text = pd.DataFrame({"item": items, "rater": raters, "vote": rng.integers(1, 6, n)})
    text = text.drop_duplicates(["item", "rater"]).reset_index(drop=True)
    coded = text.astype({"item": "category", "rater": "category"})
    # categories in an order of their own, one unused: as the store's snapshot makes them
    coded["rater"] = coded["rater"].cat.set_categories(sorted(set(raters), reverse=True) + ["nobody"])
    one, two = screen_raters(text).table, screen_raters(coded).table
    two.index = two.index.astype(str)  # raters in category order there: the same rows, reordered
    pd.testing.assert_frame_equal(one, two.loc[one.index], check_index_type=False, check_exact=True)
    assert one["correlation"].notna().all()
