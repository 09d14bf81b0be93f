"""Simulated studies drawn from the subject model itself, for tests and benchmarks.

Votes are ``round(x_item + b_rater + v_rater * e + a_content * e')`` clipped to 1-5, with each
item rated by ``votes_per_item`` distinct raters chosen at random (partial sampling) or by every
rater (``votes_per_item=None``). The true parameters come back with the votes, so a test can
check that a model recovers them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.errors import InputError


@dataclass(frozen=True)
class SimulatedStudy:
    votes: pd.DataFrame  # item, rater, content, vote
    quality: pd.Series  # true x per item
    bias: pd.Series  # true b per rater
    inconsistency: pd.Series  # true v per rater
    ambiguity: pd.Series  # true a per content


def simulate_study(
    n_items: int,
    n_raters: int,
    votes_per_item: int | None = None,
    n_contents: int | None = None,
    seed: int = 0,
    bias_sd: float = 0.3,
    inconsistency: tuple[float, float] = (0.2, 1.0),
    ambiguity: tuple[float, float] = (0.2, 0.8),
) -> SimulatedStudy:
    """A study of ``n_items`` x ``n_raters`` with the given sampling; see the module docstring."""
    if votes_per_item is not None and not 1 <= votes_per_item <= n_raters:
        raise InputError(f"votes_per_item must be between 1 and n_raters ({n_raters}), got {votes_per_item}")
    rng = np.random.default_rng(seed)
    n_contents = n_contents or n_items
    content = rng.integers(0, n_contents, n_items)
    x = rng.uniform(1.2, 4.8, n_items)
    b = rng.normal(0.0, bias_sd, n_raters)
    v = rng.uniform(*inconsistency, n_raters)
    a = rng.uniform(*ambiguity, n_contents)
    if votes_per_item is None:
        e = np.repeat(np.arange(n_items), n_raters)
        s = np.tile(np.arange(n_raters), n_items)
    else:
        # The first votes_per_item columns of a random permutation per item: distinct raters.
        s = rng.random((n_items, n_raters)).argsort(axis=1)[:, :votes_per_item].ravel()
        e = np.repeat(np.arange(n_items), votes_per_item)
    noise = v[s] * rng.standard_normal(e.size) + a[content[e]] * rng.standard_normal(e.size)
    vote = np.clip(np.rint(x[e] + b[s] + noise), 1, 5).astype(int)
    item_ids = np.array([f"i{k:05d}" for k in range(n_items)])
    rater_ids = np.array([f"r{k:03d}" for k in range(n_raters)])
    content_ids = np.array([f"c{k:03d}" for k in range(n_contents)])
    frame = pd.DataFrame({"item": item_ids[e], "rater": rater_ids[s], "content": content_ids[content[e]], "vote": vote})
    return SimulatedStudy(
        votes=frame,
        quality=pd.Series(x, index=pd.Index(item_ids, name="item")),
        bias=pd.Series(b, index=pd.Index(rater_ids, name="rater")),
        inconsistency=pd.Series(v, index=pd.Index(rater_ids, name="rater")),
        ambiguity=pd.Series(a, index=pd.Index(content_ids, name="content")),
    )
