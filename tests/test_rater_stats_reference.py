"""``rater_stats`` (votes as integer arrays, sums per rater, a radix sort for the runs) against a
plain per-rater reading of the same votes, row by row."""

from __future__ import annotations

from datetime import timedelta
from itertools import groupby

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from toolkit.store import Store, add_rater, get_study, import_votes
from toolkit.store.progress import rater_stats
from toolkit.store.schema import Item, Rating, utcnow

from fixtures_ui import fresh_pg_url, make_study, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_pg_url()


def test_rater_stats_equal_a_plain_reading_of_the_votes(url, tmp_path):
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=12, n_training=3)
    rng = np.random.default_rng(7)
    items = [f"test_{k:02d}.png" for k in range(12)] + [f"training_{k:02d}.png" for k in range(3)]
    rows = [(item, f"r{r}", int(rng.integers(1, 6)) if r != 2 else 3) for r in range(6) for item in items]
    order = rng.permutation(len(rows))  # the raters' votes interleaved, as in a live study
    frame = pd.DataFrame([rows[k] for k in order], columns=["item", "rater", "vote"])
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, frame)
        add_rater(s, study, "idle")  # no vote at all
        ids = s.scalars(select(Rating.id).order_by(Rating.id)).all()
        now = utcnow()
        ages = rng.uniform(0, 3600 * 5, len(ids))
        s.execute(update(Rating), [{"id": i, "answered_at": now - timedelta(seconds=a)} for i, a in zip(ids, ages)])
        s.commit()
    with store.session() as s:
        study = get_study(s, "pilot")
        stats = rater_stats(s, study).set_index("rater")
        votes = s.execute(
            select(Rating.rater_id, Rating.level, Rating.answered_at, Item.role)
            .join(Item, Item.id == Rating.item_id)
            .where(Rating.study_id == study.id)
            .order_by(Rating.id)
        ).all()
        names = {r.id: r.name for r in study.raters}
    assert stats.loc["idle", "votes"] == 0 and stats.loc["idle", "longest_run"] == 0
    assert np.isnan(stats.loc["idle", "vote_sd"]) and pd.isna(stats.loc["idle", "last_vote_at"])
    for rater_id, name in names.items():
        if name == "idle":
            continue
        own = [v for v in votes if v.rater_id == rater_id]
        rated = [v.level for v in own if v.role != "training"]
        assert stats.loc[name, "votes"] == len(own)
        assert stats.loc[name, "longest_run"] == max(len(list(run)) for _, run in groupby(rated))
        assert stats.loc[name, "vote_sd"] == pytest.approx(np.std(rated), abs=1e-12)
        last = max(v.answered_at for v in own)
        shown = pd.Timestamp(stats.loc[name, "last_vote_at"])
        assert abs((shown.tz_localize(None) if shown.tzinfo else shown) - pd.Timestamp(last).tz_localize(None)) < (
            pd.Timedelta(microseconds=1)
        )
    assert stats.loc["r2", "vote_sd"] == 0 and stats.loc["r2", "longest_run"] == 12
    store.dispose()
