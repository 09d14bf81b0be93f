"""Analysis shortcuts at scale give the same answers: a per-group SD formed in the caller's own array
(to the bit), the one-vote-per-cell check of the reliability design."""

from __future__ import annotations

import numpy as np

from toolkit.analysis import grouped


def test_group_sd_in_the_callers_array_is_the_same_to_the_bit(monkeypatch) -> None:
    monkeypatch.setattr(grouped, "_SLICE", 7)  # several slices, the last one short
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 9, 100)
    values = rng.normal(size=100) * 2.5 + codes
    values[codes == 4] = 1.0  # a group without spread
    codes[codes == 8] = 7  # a group without values
    expected = grouped.group_sd(codes, values, 9)
    scratch = values.copy()
    got = grouped.group_sd(codes, scratch, 9, overwrite=True)
    assert np.array_equal(got, expected) and got[4] == 0.0 and got[8] == 0.0
    assert not np.array_equal(scratch, values)  # used for the deviations
    ints = codes.astype(np.int64)  # not float64: left as it is
    assert np.array_equal(grouped.group_sd(codes, ints, 9, overwrite=True), grouped.group_sd(codes, ints, 9))
    assert np.array_equal(ints, codes)


def test_one_vote_per_cell_is_found_without_sorting_the_votes() -> None:
    import pandas as pd

    from toolkit.analysis.reliability import _one_vote_per_cell
    from toolkit.analysis.votes import prepare_votes

    frame = pd.DataFrame({"item": list("aabbca"), "rater": list("xyxyzz"), "vote": [1, 2, 3, 4, 5, 1]})
    assert _one_vote_per_cell(prepare_votes(frame))
    again = pd.concat([frame, frame.iloc[[3]]])  # rater y on item b twice
    assert not _one_vote_per_cell(prepare_votes(again))
