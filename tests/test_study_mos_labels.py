"""The plain-MOS labels from the items' stored vote histograms (revision 0006) are the labels of
the votes: the same table as ``study_label_table(read_snapshot(...), "mos")``, to the last bit."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from toolkit.analysis import study_label_table, study_mos_labels
from toolkit.store import Store, add_rater, get_study, histograms, import_votes, read_snapshot, record_rating
from toolkit.store.raters import set_rater_excluded
from toolkit.store.schema import Item

from fixtures_ui import fresh_pg_url, make_study, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    return sqlite_url(tmp_path) if request.param == "sqlite" else fresh_pg_url()


def _both(store: Store) -> tuple:
    with store.session() as s:
        study = get_study(s, "pilot")
        return study_mos_labels(s, study), study_label_table(read_snapshot(s, study), "mos")


def _assert_same(stored, from_votes) -> None:
    pd.testing.assert_frame_equal(stored.table, from_votes.table)
    assert stored.unrated == from_votes.unrated
    assert stored.notes == from_votes.notes
    assert stored.subject_model == from_votes.subject_model == "mos"


@pytest.mark.parametrize("reader", ["arrow", "driver"])
def test_labels_from_the_stored_histograms_equal_the_labels_of_the_votes(url, tmp_path, reader, monkeypatch):
    if reader == "driver":  # SQLite's other way: the items from the session's own driver
        monkeypatch.setattr(histograms, "database_uri", lambda connection: None)
    elif url.startswith("postgresql"):
        pytest.skip("PostgreSQL reads the items from its driver")
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=7, n_gold=2, n_training=2)
    stored, from_votes = _both(store)  # no votes yet: an empty table, every test item unrated
    _assert_same(stored, from_votes)
    assert stored.table.empty and len(stored.unrated) == 7

    # Votes on test items (one with a single vote, one with none), gold and training items; a
    # rater the admin excluded; a vote given in the app; a level changed by SQL.
    tests = [f"test_{k:02d}.png" for k in range(5)]
    rows = [(item, f"r{r}", 1 + (3 * i + r * r) % 5) for r in range(6) for i, item in enumerate(tests)]
    rows += [("test_05.png", "r0", 4), ("gold_00.png", "r1", 5), ("training_01.png", "r2", 3)]
    rows += [(item, "careless", 1) for item in tests]
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, pd.DataFrame(rows, columns=["item", "rater", "vote"]))
        rater, _ = add_rater(s, study, "app")
        record_rating(s, rater, study.items[0], 2)
        # Names a CSV or a missing-value reader could take apart: kept as they are.
        for k, path in enumerate(('odd, "quoted"\nname.png', "NA")):
            odd = Item(study_id=study.id, path=path, kind="image", sha256=f"{k:064x}", content_group="", role="test")
            s.add(odd)
            s.flush()
            record_rating(s, rater, odd, 3 + k)
        set_rater_excluded(s, study, "careless", True)
        s.execute(text("UPDATE ratings SET level = 5 WHERE id = (SELECT min(id) FROM ratings)"))
        s.commit()
    stored, from_votes = _both(store)
    _assert_same(stored, from_votes)
    assert stored.unrated == ("test_06.png",)
    assert len(stored.table) == 8 and stored.table["n"].tolist()[5] == 1
    assert stored.table["item"].tolist()[-2:] == ['odd, "quoted"\nname.png', "NA"]
    assert stored.notes == ["1 rater(s) excluded by the admin; their 5 vote(s) are not counted"]

    with store.session() as s:  # the excluded rater re-admitted: their votes count again
        set_rater_excluded(s, get_study(s, "pilot"), "careless", False)
        s.commit()
    stored, from_votes = _both(store)
    _assert_same(stored, from_votes)
    assert stored.notes == []
    store.dispose()


def test_a_study_without_items_has_no_labels(url, tmp_path):
    from toolkit.store.studies import create_study

    store = Store(url)
    with store.session() as s:
        create_study(s, "pilot", media_root=tmp_path)
        s.commit()
    stored, from_votes = _both(store)
    _assert_same(stored, from_votes)
    assert stored.table.empty and stored.unrated == ()
    store.dispose()
