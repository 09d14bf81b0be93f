"""Per-group moments of long-format values with ``np.bincount`` (no loop over groups)."""

from __future__ import annotations

import numpy as np


def group_sum(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(codes, weights=values, minlength=n_groups)


def group_count(codes: np.ndarray, n_groups: int) -> np.ndarray:
    return np.bincount(codes, minlength=n_groups)


def group_mean(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean per group; groups without values get NaN (callers make sure there are none)."""
    n = group_count(codes, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return group_sum(codes, values, n_groups) / n


def group_moments(
    codes: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and the central moments m2, m4 (population, i.e. divided by n) per group.

    The deviations are taken from the group mean first (two passes), which keeps m2 exact for
    integer votes instead of suffering the cancellation of ``E[x^2] - E[x]^2``.
    """
    n = group_count(codes, n_groups)
    mean = group_mean(codes, values, n_groups)
    dev = values - mean[codes]
    dev2 = dev * dev
    with np.errstate(invalid="ignore", divide="ignore"):
        m2 = group_sum(codes, dev2, n_groups) / n
        m4 = group_sum(codes, dev2 * dev2, n_groups) / n
    return n, mean, m2, m4


_SLICE = 1 << 20  # values a slice of the in-place deviations: a few MB of temporaries


def group_sd(
    codes: np.ndarray, values: np.ndarray, n_groups: int, ddof: int = 1, overwrite: bool = False
) -> np.ndarray:
    """Standard deviation per group; 0 where a group has ``ddof`` values or fewer. ``overwrite``:
    ``values`` (a float64 temporary of the caller's) may be used for the deviations, so that no
    second array the size of the values is made."""
    # group_moments' n and m2, without the fourth moment it would also form.
    n = group_count(codes, n_groups)
    mean = group_mean(codes, values, n_groups)
    if overwrite and values.dtype == np.float64:
        dev = values  # the same subtraction, a slice at a time
        for start in range(0, values.size, _SLICE):
            part = slice(start, start + _SLICE)
            np.subtract(values[part], mean[codes[part]], out=dev[part])
    else:
        dev = mean[codes]  # the squared deviations, formed in place
        np.subtract(values, dev, out=dev)
    dev *= dev
    with np.errstate(invalid="ignore", divide="ignore"):
        m2 = group_sum(codes, dev, n_groups) / n
        var = m2 * n / (n - ddof)
    return np.where(n > ddof, np.sqrt(np.maximum(var, 0.0)), 0.0)
