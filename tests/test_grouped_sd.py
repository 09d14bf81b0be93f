"""A per-group standard deviation formed in the caller's own array is the same, to the bit."""

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
