"""Simulated raters: each with a bias and a noise level, a few of them careless.

They vote through the same store functions as the annotation app (``record_rating_by_token``),
so the demo exercises the path real votes take.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from toolkit.store import Store, add_rater, get_study, record_rating_by_token, study_items
from toolkit.store.schema import utcnow


@dataclass(frozen=True)
class SimulatedRater:
    name: str
    bias: float  # added to the perceived quality
    noise: float  # SD of the per-vote perception noise
    careless: bool  # votes uniformly at random


def make_raters(n: int, n_careless: int, rng: np.random.Generator) -> list[SimulatedRater]:
    careless = set(rng.choice(n, size=min(n_careless, n), replace=False).tolist())
    return [
        SimulatedRater(
            name=f"rater{i:02d}",
            bias=float(rng.normal(0, 0.35)),
            noise=float(rng.uniform(0.35, 0.8)),
            careless=i in careless,
        )
        for i in range(n)
    ]


def vote(rater: SimulatedRater, quality: float, rng: np.random.Generator) -> int:
    if rater.careless:
        return int(rng.integers(1, 6))
    return int(np.clip(np.rint(quality + rater.bias + rng.normal(0, rater.noise)), 1, 5))


def simulate_votes(
    store: Store,
    study_name: str,
    quality: dict[str, float],
    raters: list[SimulatedRater],
    votes_per_item: int,
    rng: np.random.Generator,
) -> int:
    """Each item gets ``votes_per_item`` votes from randomly drawn raters; returns votes stored."""
    with store.session() as session:
        study = get_study(session, study_name)
        tokens = [add_rater(session, study, r.name)[1] for r in raters]
        items = [(item.id, item.path) for item in study_items(session, study)]
    stored = 0
    with store.session() as session:
        for item_id, path in items:
            for index in rng.choice(len(raters), size=min(votes_per_item, len(raters)), replace=False):
                shown = utcnow() - timedelta(seconds=float(rng.uniform(1.5, 6.0)))
                level = vote(raters[index], quality[path], rng)
                stored += record_rating_by_token(session, tokens[index], item_id, level, shown_at=shown).created
    return stored
