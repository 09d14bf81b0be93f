"""Many raters at once on SQLite: no vote lost, none duplicated, a double click counts once."""

from __future__ import annotations

from collections import Counter

from fixtures_ui import simulate_raters, sqlite_url


def check_simulation(outcome: dict, n_raters: int, votes_each: int) -> None:
    assert outcome["errors"] == [] and outcome["alive"] == []
    assert outcome["duplicates"] == []
    # Every click pair stored exactly one vote: one tab created it, the other saw it stored.
    assert len(outcome["created"]) == n_raters * votes_each
    assert len(outcome["repeats"]) == n_raters * votes_each
    assert sorted(outcome["stored"]) == sorted(outcome["created"])
    assert Counter((t, i) for t, i, _ in outcome["repeats"]) == Counter((t, i) for t, i, _ in outcome["created"])
    stored = {(t, i): level for t, i, level in outcome["stored"]}
    assert all(stored[(t, i)] == level for t, i, level in outcome["repeats"])


def test_24_raters_two_tabs_each_on_sqlite(tmp_path):
    outcome = simulate_raters(sqlite_url(tmp_path), tmp_path / "media", n_raters=24, votes_each=4)
    check_simulation(outcome, 24, 4)
