"""The per-item vote counters (``items.n_votes`` and ``n_level_1..5``, revisions 0005 and 0006) and
the bulk way of importing.

The counters are kept by triggers, so every path that adds or removes a vote must leave each
item's counter equal to its votes; a bulk import sets the per-row work aside and must put the
schema back exactly, whether it succeeds or fails.
"""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import pytest
from sqlalchemy import Connection, delete, func, select, text

from toolkit.store import Store, add_rater, get_study, import_votes, record_rating
from toolkit.store import vote_import as vote_import_module
from toolkit.store.assignment import next_step, submit_vote, undo_last_vote
from toolkit.store.engine import make_engine
from toolkit.store.migrate import downgrade, upgrade
from toolkit.store.overview import studies_overview
from toolkit.store.progress import item_progress
from toolkit.store.schema import Item, Rating

from fixtures_ui import fresh_pg_url, make_study, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_pg_url()


def _table(raters: list[str], items: list[str]) -> pd.DataFrame:
    rows = [(item, name, 1 + (i + r) % 5) for r, name in enumerate(raters) for i, item in enumerate(items)]
    return pd.DataFrame(rows, columns=["item", "rater", "vote"])


LEVEL_COUNTERS = (Item.n_level_1, Item.n_level_2, Item.n_level_3, Item.n_level_4, Item.n_level_5)


def _assert_counters_true(store: Store) -> dict[int, int]:
    """Every item's counters (votes, votes per level) equal its votes; returns the vote counters."""
    with store.session() as s:
        counted = dict(s.execute(select(Rating.item_id, func.count()).group_by(Rating.item_id)).all())
        stored = dict(s.execute(select(Item.id, Item.n_votes)).all())
        per_level = {
            (item_id, level): n
            for item_id, level, n in s.execute(
                select(Rating.item_id, Rating.level, func.count()).group_by(Rating.item_id, Rating.level)
            )
        }
        histograms = {row[0]: tuple(row[1:]) for row in s.execute(select(Item.id, *LEVEL_COUNTERS))}
    assert stored == {item_id: counted.get(item_id, 0) for item_id in stored}
    assert histograms == {i: tuple(per_level.get((i, level), 0) for level in range(1, 6)) for i in histograms}
    return stored


def _schema(connection: Connection) -> list[tuple]:
    """The indexes, constraints and triggers of ratings as the database describes them."""
    if connection.dialect.name == "sqlite":
        return sorted(
            connection.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ('ratings', 'items')"
            ).all()
        )
    indexes = connection.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'ratings'")
    constraints = connection.exec_driver_sql(
        "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
        "WHERE conrelid = 'ratings'::regclass"
    )
    triggers = connection.exec_driver_sql(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'ratings'::regclass AND NOT tgisinternal"
    )
    return sorted(map(tuple, [*indexes, *constraints, *triggers]), key=str)


def test_counters_follow_every_path_a_vote_takes(url, tmp_path):
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=5, target_votes=3)
    items = [f"test_{k:02d}.png" for k in range(4)]  # test_04.png gets a vote moved to it
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, _table(["a", "b"], items))  # the per-row way
        rater, token = add_rater(s, study, "app")
        s.commit()
    _assert_counters_true(store)
    with store.session() as s:  # the app: serve, vote, take back, vote again
        study = get_study(s, "pilot")
        rater = study.raters[-1]
        served = next_step(s, rater)
        submit_vote(s, rater, served.item.item_id, 4)
        s.commit()
    first = _assert_counters_true(store)
    with store.session() as s:
        rater = get_study(s, "pilot").raters[-1]
        assert undo_last_vote(s, rater) is not None
        s.commit()
    after_undo = _assert_counters_true(store)
    assert sum(after_undo.values()) == sum(first.values()) - 1
    with store.session() as s:  # a repeat counts once
        study = get_study(s, "pilot")
        rater, item = study.raters[0], study.items[0]
        assert not record_rating(s, rater, item, 1 + (0 + 0) % 5).created
        s.commit()
    with store.session() as s:  # an administrator's SQL, an item deleted with its votes
        s.execute(delete(Rating).where(Rating.id == s.scalar(select(func.min(Rating.id)))))
        spare = s.scalar(select(Item.id).where(Item.path == "test_04.png"))
        s.execute(text("UPDATE ratings SET item_id = :to WHERE id = (SELECT max(id) FROM ratings)"), {"to": spare})
        # A level changed by SQL moves the vote between the item's level counters.
        s.execute(text("UPDATE ratings SET level = 6 - level WHERE id = (SELECT min(id) FROM ratings)"))
        s.execute(text("UPDATE ratings SET level = level"))  # nothing changes: no counter moves
        s.delete(s.get(Item, s.scalar(select(Item.id).where(Item.path == "test_03.png"))))
        s.commit()
    counters = _assert_counters_true(store)
    with store.session() as s:
        study = get_study(s, "pilot")
        (overview,) = studies_overview(s)
        progress = item_progress(s, study)
    assert overview.votes == sum(counters.values()) == int(progress["votes"].sum())
    store.dispose()


def test_bulk_import_counts_and_puts_the_schema_back(url, tmp_path):
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=6)
    items = [f"test_{k:02d}.png" for k in range(6)]
    with store.engine.connect() as connection:
        before = _schema(connection)
    with store.session() as s:  # into an empty table: indexes rebuilt on SQLite
        assert import_votes(s, get_study(s, "pilot"), _table(["a", "b", "c"], items), bulk_rows=1) == (18, 0)
        s.commit()
    _assert_counters_true(store)
    table = _table(["a", "b", "c", "d"], items).sample(frac=1.0, random_state=1)
    with store.session() as s:  # stored votes among new ones: only the new ones count
        assert import_votes(s, get_study(s, "pilot"), table, bulk_rows=1, chunk_rows=5) == (6, 18)
        s.commit()
    counters = _assert_counters_true(store)
    assert sum(counters.values()) == 24
    with store.engine.connect() as connection:
        assert _schema(connection) == before
    with store.session() as s:  # the app's votes are counted by the trigger again
        study = get_study(s, "pilot")
        rater, _ = add_rater(s, study, "app")
        record_rating(s, rater, study.items[0], 3)
        s.commit()
    assert sum(_assert_counters_true(store).values()) == 25
    store.dispose()


def test_failed_bulk_import_changes_nothing(url, tmp_path, monkeypatch):
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=6)
    items = [f"test_{k:02d}.png" for k in range(6)]
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), _table(["a"], items))
        s.commit()
    with store.engine.connect() as connection:
        before = _schema(connection)
    counters = _assert_counters_true(store)

    def fail_after(original):
        def insert(*args, **kwargs):
            original(*args, **kwargs)
            raise RuntimeError("disk full")

        return insert

    name = "_insert_staged" if url.startswith("postgresql") else "_insert_rows"
    monkeypatch.setattr(vote_import_module, name, fail_after(getattr(vote_import_module, name)))
    with pytest.raises(RuntimeError, match="disk full"):
        with store.session() as s:
            import_votes(s, get_study(s, "pilot"), _table(["a", "b", "c"], items), bulk_rows=1)
    assert _assert_counters_true(store) == counters
    with store.engine.connect() as connection:
        assert _schema(connection) == before
    store.dispose()


def test_migration_counts_the_stored_votes_and_goes_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0004")
    engine = make_engine(url)
    with engine.begin() as connection:  # votes stored before the counters existed
        for statement in (
            "INSERT INTO studies (id, name, task, question, media_root, target_votes, items_per_session, "
            "allow_self_register, created_at, gold_every) VALUES (1, 's', 'quality', 'q', '/m', 15, 50, 0, "
            "'2026-01-01', 10)",
            "INSERT INTO items (study_id, path, kind, sha256, content_group, role, tolerance, created_at, priority) "
            "VALUES (1, 'a.png', 'image', '0', 'a', 'test', 1, '2026-01-01', 0), "
            "(1, 'b.png', 'image', '1', 'b', 'test', 1, '2026-01-01', 0), "
            "(1, 'c.png', 'image', '2', 'c', 'test', 1, '2026-01-01', 0)",
            "INSERT INTO raters (study_id, name, token_hash, revoked, created_at, excluded, self_registered, "
            "excluded_by_rules) VALUES (1, 'r', 'h', 0, '2026-01-01', 0, 0, 0)",
            "INSERT INTO ratings (study_id, item_id, rater_id, level, answered_at) "
            "SELECT 1, id, 1, 2 + id, '2026-01-01' FROM items WHERE id <= 2",
        ):
            connection.exec_driver_sql(statement)
    engine.dispose()
    upgrade(url)
    store = Store(url)
    assert sorted(_assert_counters_true(store).values()) == [0, 1, 1]
    store.dispose()
    assert downgrade(url, "0004") == "0004"
    engine = make_engine(url)
    with engine.connect() as connection:
        names = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master")}
        assert "ix_ratings_rater_id" in names and not any(n.startswith("tr_ratings_count") for n in names)
        assert connection.exec_driver_sql("SELECT count(*) FROM ratings").scalar_one() == 2
    engine.dispose()


def test_level_counters_migration_there_and_back(url, tmp_path):
    """Revision 0006 on votes stored under 0005: the histograms are filled; back at 0005 the vote
    counter is kept by 0005's triggers again."""
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=5)
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), _table(["a", "b", "c"], [f"test_{k:02d}.png" for k in range(4)]))
        s.commit()
    store.dispose()
    downgrade(url, "0005")
    engine = make_engine(url)
    with engine.begin() as connection:  # a vote given under 0005
        connection.exec_driver_sql(
            "INSERT INTO ratings (study_id, item_id, rater_id, level, answered_at) "
            "SELECT study_id, id, (SELECT min(id) FROM raters), 5, created_at FROM items "
            "WHERE path = 'test_04.png'"
        )
        columns = set(connection.exec_driver_sql("SELECT * FROM items LIMIT 0").keys())
        assert "n_votes" in columns and "n_level_1" not in columns
    engine.dispose()
    upgrade(url)
    store = Store(url)
    assert sum(_assert_counters_true(store).values()) == 13
    store.dispose()
    downgrade(url, "0005")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM ratings WHERE level = 5")
        counted = connection.exec_driver_sql("SELECT count(*) FROM ratings").scalar_one()
        assert connection.exec_driver_sql("SELECT sum(n_votes) FROM items").scalar_one() == counted
    engine.dispose()
    upgrade(url)


@pytest.mark.postgres
def test_bulk_import_without_the_right_to_alter_the_table_goes_row_by_row(tmp_path, monkeypatch):
    url = fresh_pg_url()
    set_aside: list[bool] = []
    original = vote_import_module.postgresql_bulk_insert

    @contextmanager
    def recorded(*args, **kwargs):
        with original(*args, **kwargs) as done:
            set_aside.append(done)
            yield done

    monkeypatch.setattr(vote_import_module, "postgresql_bulk_insert", recorded)
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=6)
    items = [f"test_{k:02d}.png" for k in range(6)]
    with store.engine.begin() as connection:  # a user who may write votes but does not own the tables
        connection.exec_driver_sql(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'qalign_writer') "
            "THEN CREATE ROLE qalign_writer; END IF; END $$"
        )
        connection.exec_driver_sql(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO qalign_writer"
        )
        connection.exec_driver_sql("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO qalign_writer")
        connection.exec_driver_sql("GRANT USAGE ON SCHEMA public TO qalign_writer")
    with store.engine.connect() as connection:
        before = _schema(connection)
    with store.session() as s:
        s.connection().exec_driver_sql("SET ROLE qalign_writer")
        assert import_votes(s, get_study(s, "pilot"), _table(["a", "b"], items), bulk_rows=1) == (12, 0)
        s.connection().exec_driver_sql("RESET ROLE")
        s.commit()
    assert set_aside == [False]  # the bulk way was refused, the votes went in row by row
    assert sum(_assert_counters_true(store).values()) == 12
    with store.engine.connect() as connection:
        assert _schema(connection) == before
    store.dispose()
