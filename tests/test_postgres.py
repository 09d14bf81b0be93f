"""The store and the assignment queue on a real PostgreSQL server (skipped when none is running).

`.ci/setup-services` starts one on 127.0.0.1 and writes its URL where `fixtures_ui.pg_test_url`
finds it; `QALIGN_TEST_PG_URL` overrides.
"""

from __future__ import annotations

import pytest
from test_assignment_concurrency import check_simulation

from toolkit.store import Store, add_rater, get_study, rater_for_token
from toolkit.store.assignment import next_step, submit_vote, undo_last_vote
from toolkit.store.migrate import current_revision, downgrade, head_revision, upgrade
from toolkit.store.progress import item_progress, rater_stats
from toolkit.store.setup import prepare_database

from fixtures_ui import fresh_pg_url, make_study, simulate_raters

pytestmark = pytest.mark.postgres


@pytest.fixture()
def pg_url():
    return fresh_pg_url()


def test_migrations_down_and_up(pg_url):
    assert current_revision(pg_url) == head_revision()
    assert downgrade(pg_url, "0001") == "0001"
    assert upgrade(pg_url) == head_revision()


def test_rating_flow_and_admin_figures(pg_url, tmp_path):
    store = Store(pg_url)
    make_study(store, tmp_path / "media", n_test=4, n_gold=1, gold_every=2, target_votes=3)
    with store.session() as s:
        token = add_rater(s, get_study(s, "pilot"), "alice")[1]
    levels = []
    for level in (5, 4, 3, 2, 1, 3):
        with store.session() as s:
            step = next_step(s, rater_for_token(s, token))
            if step.status != "rate":
                break
            levels.append((step.item.role, submit_vote(s, rater_for_token(s, token), step.item.item_id, level).created))
    assert [role for role, _ in levels] == ["test", "test", "gold", "test", "test"]
    assert all(created for _, created in levels)
    with store.session() as s:
        assert undo_last_vote(s, rater_for_token(s, token)) is not None
        study = get_study(s, "pilot")
        assert int(item_progress(s, study)["votes"].sum()) == 4
        stats = rater_stats(s, study).set_index("rater")
        assert stats.loc["alice", "gold_votes"] == 1 and stats.loc["alice", "gold_accuracy"] == 0.0
    store.dispose()


def test_prepare_database_creates_the_sample_study(pg_url, monkeypatch):
    monkeypatch.delenv("QALIGN_ADMIN_SECRET", raising=False)
    report = prepare_database(pg_url)
    assert report.sample_created and report.generated_admin_secret
    again = prepare_database(pg_url)
    assert not again.sample_created and again.generated_admin_secret is None


def test_24_raters_two_tabs_each_on_postgres(pg_url, tmp_path):
    outcome = simulate_raters(pg_url, tmp_path / "media", n_raters=24, votes_each=4)
    check_simulation(outcome, 24, 4)


def test_duplicate_rater_name_is_one_line(pg_url, tmp_path, monkeypatch):
    from test_assignment import check_duplicate_rater_names

    store = Store(pg_url)
    try:
        check_duplicate_rater_names(store, tmp_path, monkeypatch)
    finally:
        store.dispose()


def test_admin_sign_in_back_off(pg_url):
    from test_assignment import check_admin_sign_in_back_off

    store = Store(pg_url)
    try:
        check_admin_sign_in_back_off(store)
    finally:
        store.dispose()
