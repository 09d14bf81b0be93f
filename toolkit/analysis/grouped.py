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


def group_sd(codes: np.ndarray, values: np.ndarray, n_groups: int, ddof: int = 1) -> np.ndarray:
    """Standard deviation per group; 0 where a group has ``ddof`` values or fewer."""
    # group_moments' n and m2, without the fourth moment it would also form.
    n = group_count(codes, n_groups)
    dev = group_mean(codes, values, n_groups)[codes]  # the squared deviations, formed in place
    np.subtract(values, dev, out=dev)
    dev *= dev
    with np.errstate(invalid="ignore", divide="ignore"):
        m2 = group_sum(codes, dev, n_groups) / n
        var = m2 * n / (n - ddof)
    return np.where(n > ddof, np.sqrt(np.maximum(var, 0.0)), 0.0)
