"""The columnar vote reads (SQLite through ADBC, PostgreSQL through a binary COPY) give exactly the
arrays of the row-by-row reads; a malformed COPY stream is refused; a vote read after its item
never lands on another item."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, update

from toolkit.errors import StoreError
from toolkit.store import Store, get_study, import_votes, read_snapshot, record_rating, vote_arrays
from toolkit.store import snapshot as snapshot_module
from toolkit.store.engine import make_engine
from toolkit.store.pg_copy import SIGNATURE, array_values, copy_rows
from toolkit.store.schema import Item, Rater
from toolkit.store.sqlite_columns import database_uri

from fixtures_ui import fresh_pg_url, make_study, sqlite_url

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
EXCLUDED = {"sqlite": "rater_id NOT IN (SELECT id FROM raters WHERE excluded = 1)"}
EXCLUDED["postgresql"] = EXCLUDED["sqlite"].replace("= 1", "= true")


def _store(tmp_path: Path, backend: str) -> Store:
    """Imported votes (one time for all, no display time) between votes given in the app (each its
    own times), a rater excluded."""
    store = Store(sqlite_url(tmp_path) if backend == "sqlite" else fresh_pg_url())
    make_study(store, tmp_path / "media", n_test=6, n_gold=2)
    shown = datetime(2026, 1, 2, 3, 4, 5, 250_001, tzinfo=timezone.utc)
    with store.session() as s:
        study = get_study(s, "pilot")
        items = s.scalars(select(Item).where(Item.study_id == study.id).order_by(Item.id)).all()
        rows = [(item.path, f"r{r}", 1 + (k + r) % 5) for r in range(4) for k, item in enumerate(items)]
        import_votes(s, study, pd.DataFrame(rows, columns=["item", "rater", "vote"]))
    with store.session() as s:  # (one import a transaction: PostgreSQL's import stages in a temporary table)
        study = get_study(s, "pilot")
        items = s.scalars(select(Item).where(Item.study_id == study.id).order_by(Item.id)).all()
        for r, name in enumerate(["app1", "app2"]):
            rater = Rater(study_id=study.id, name=name, token_hash=f"hash-{name}")
            s.add(rater)
            s.flush()
            for k, item in enumerate(items[:5]):
                moment = shown + timedelta(seconds=7 * k + r, microseconds=13 * k)
                record_rating(s, rater, item, 1 + k % 5, shown_at=moment, answered_at=moment + timedelta(seconds=k))
    with store.session() as s:
        study = get_study(s, "pilot")
        import_votes(s, study, pd.DataFrame([(i.path, "late", 3) for i in items], columns=["item", "rater", "vote"]))
        s.execute(update(Rater).where(Rater.name == "r1").values(excluded=True))
    return store


def _row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the reads take the driver's rows (the reference): no ADBC, no COPY."""
    monkeypatch.setattr(vote_arrays, "COLUMNAR_MIN_VOTES", 2**62)
    monkeypatch.setattr(vote_arrays, "_psycopg", lambda connection: False)


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("block", [3, 65_536])
@pytest.mark.parametrize("excluded", [False, True])
def test_columnar_reads_give_the_arrays_of_the_row_by_row_reads(tmp_path, monkeypatch, backend, block, excluded):
    store = _store(tmp_path, backend)
    where = EXCLUDED[backend] if excluded else ""
    monkeypatch.setattr(vote_arrays, "TIME_BLOCK_IDS", block)  # blocks with app votes and blocks without
    monkeypatch.setattr(vote_arrays, "COLUMNAR_MIN_VOTES", 0)
    with store.session() as s:
        study_id = get_study(s, "pilot").id
        connection = s.connection()
        if backend == "sqlite":
            assert database_uri(connection) is not None  # the ADBC path is the one taken
        both = vote_arrays.read_votes_with_times(connection, study_id, where)
        packed = vote_arrays.read_packed_votes(connection, study_id, where)
    with monkeypatch.context() as m:
        _row_by_row(m)
        with store.session() as s:
            connection = s.connection()
            votes = vote_arrays.read_vote_arrays(connection, study_id, where)
            times = vote_arrays.read_vote_times(connection, study_id, where)
            packed_rows = vote_arrays.read_packed_votes(connection, study_id, where)
    assert both is not None and packed is not None and packed_rows is not None
    assert _equal(packed, packed_rows) and len(packed) == 4 * 8 - (8 if excluded else 0) + 2 * 5 + 8
    assert packed.flags.writeable  # the import sorts it in place
    columnar, columnar_times = both
    for a, b in zip(
        (columnar.item_id, columnar.rater_id, columnar.level),
        (votes.item_id.astype(np.int32), votes.rater_id.astype(np.int32), votes.level),
    ):
        assert _equal(a, b)
    for name in ("shown_us", "answered_us", "response_ms"):
        assert _equal(getattr(columnar_times, name), getattr(times, name)), name
    # app votes have their own times; imported ones one answer time and no display or response time
    assert np.isfinite(times.shown_us).sum() == np.isfinite(times.response_ms).sum() == 10
    assert np.isfinite(times.answered_us).all() and (times.shown_us[np.isfinite(times.shown_us)] % 1_000_000).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_snapshot_is_the_same_through_the_columnar_reads(tmp_path, monkeypatch, backend) -> None:
    store = _store(tmp_path, backend)
    monkeypatch.setattr(vote_arrays, "TIME_BLOCK_IDS", 4)
    monkeypatch.setattr(vote_arrays, "COLUMNAR_MIN_VOTES", 0)
    with store.session() as s:
        one = read_snapshot(s, get_study(s, "pilot"))
    _row_by_row(monkeypatch)
    with store.session() as s:
        two = read_snapshot(s, get_study(s, "pilot"))
    pd.testing.assert_frame_equal(one.votes, two.votes)
    assert not (one.votes["rater"] == "r1").any() and one.votes["shown_at"].notna().sum() == 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_study_reads_as_no_votes(tmp_path, monkeypatch, backend) -> None:
    store = Store(sqlite_url(tmp_path) if backend == "sqlite" else fresh_pg_url())
    make_study(store, tmp_path / "media", n_test=3)
    monkeypatch.setattr(vote_arrays, "COLUMNAR_MIN_VOTES", 0)
    with store.session() as s:
        study_id = get_study(s, "pilot").id
        both = vote_arrays.read_votes_with_times(s.connection(), study_id)
        packed = vote_arrays.read_packed_votes(s.connection(), study_id)
        snapshot = read_snapshot(s, get_study(s, "pilot"))
    assert both is not None and packed is not None
    assert len(both[0]) == 0 and both[1].answered_us.size == 0 and packed.dtype == np.int64 and packed.size == 0
    assert snapshot.votes.empty and len(snapshot.items) == 3


def test_adbc_is_not_used_for_a_database_in_memory_or_beside_the_sessions_own_writes(tmp_path) -> None:
    memory = make_engine("sqlite://")
    with memory.connect() as connection:
        assert database_uri(connection) is None
    memory.dispose()
    store = Store(sqlite_url(tmp_path))
    make_study(store, tmp_path / "media", n_test=2)
    with store.session() as s:
        assert database_uri(s.connection()) == f"file:{tmp_path / 'study.db'}?mode=ro"
        s.execute(update(Rater).values(excluded=True))  # a write of its own, not committed yet
        assert database_uri(s.connection()) is None


# -- the binary COPY parser, on crafted bytes


def _array(values: list[float] | list[int], code: str, oid: int, flags: int = 0, lengths: int = 8) -> bytes:
    head = struct.pack(">iiiii", 1, flags, oid, len(values), 1)
    return head + b"".join(struct.pack(">i", lengths) + struct.pack(f">{code}", v) for v in values)


def _stream(rows: list[list[bytes | None]], trailer: bool = True) -> bytes:
    out = SIGNATURE + struct.pack(">ii", 0, 0)
    for row in rows:
        out += struct.pack(">h", len(row))
        for field in row:
            out += struct.pack(">i", -1) if field is None else struct.pack(">i", len(field)) + field
    return out + (struct.pack(">h", -1) if trailer else b"")


def test_a_copy_stream_cut_anywhere_reads_as_its_rows() -> None:
    packed = _array([5, -(2**63), 2**62 + 7], "q", 20)
    times = _array([1.5, float("nan"), -2.25], "d", 701)
    data = _stream([[packed, times, None], [struct.pack(">iii", 0, 0, 20), struct.pack(">d", 3.0), None]])
    for size in (1, 2, 7, 19, 64, len(data)):
        rows = list(copy_rows((data[k : k + size] for k in range(0, len(data), size)), 3))
        assert len(rows) == 2 and rows[0][2] is None and rows[1][2] is None
        assert array_values(rows[0][0], ">i8").tolist() == [5, -(2**63), 2**62 + 7]
        assert np.array_equal(array_values(rows[0][1], ">f8"), [1.5, np.nan, -2.25], equal_nan=True)
        assert array_values(rows[1][0], ">i8").dtype == np.int64 and array_values(rows[1][0], ">i8").size == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "it is empty"),
        (b"PGCOPX\n\xff\r\n\x00" + bytes(8) + b"\xff\xff", "no PGCOPY signature"),
        (SIGNATURE + struct.pack(">ii", 1 << 16, 0) + b"\xff\xff", "rows carry OIDs"),
        (_stream([[b"12345678"]], trailer=False), "ends before its end marker"),
        (_stream([[b"12345678"]])[:-1], "ends before its end marker"),
        (_stream([[b"12345678"]]) + b"\x00", "data after the end marker"),
        (_stream([[b"12345678", b"12345678"]]), "a row of 2 fields where 1"),
        (SIGNATURE + bytes(8) + b"\x00\x01\xff\xff\xff\xfe" + b"\xff\xff", "field length -2"),
    ],
)
def test_a_malformed_copy_stream_is_refused_by_name(data, message) -> None:
    with pytest.raises(StoreError, match=message):
        list(copy_rows([data], 1))


@pytest.mark.parametrize(
    "field, message",
    [
        (None, "a NULL where an array"),
        (b"\x00\x00\x00\x01", "an array field of 4 bytes"),
        (_array([1], "q", 20, flags=1), "flags 1"),
        (_array([1.0], "d", 701), "element type 701"),
        (_array([1, 2], "q", 20)[:-3], "an array of 2 elements in"),
        (_array([1, 2], "q", 20, lengths=-1), "NULL or not 8 bytes"),
    ],
)
def test_an_unexpected_array_field_is_refused_by_name(field, message) -> None:
    with pytest.raises(StoreError, match=message):
        array_values(field, ">i8")


# -- a vote read after its item or rater was


@pytest.mark.parametrize(
    "ids, wanted, what",
    [
        (np.array([5, 6, 9, 7]), np.array([6, 8]), "item id 8"),
        (np.array([5, 6, 9, 7]), np.array([6, 10]), "item id 10"),
        (np.array([5, 6, 9, 7]), np.array([4, 6]), "item id 4"),
        (np.array([3, 10**9, 17]), np.array([17, 18]), "item id 18"),
        (np.array([10**9, 3, 17]), np.array([2]), "item id 2"),
        (np.array([], dtype=np.int64), np.array([1]), "item id 1"),
    ],
)
def test_a_vote_of_an_id_not_read_is_refused_never_placed(ids, wanted, what) -> None:
    with pytest.raises(snapshot_module.UnknownVoteIds, match=what):
        snapshot_module.vote_positions(ids, wanted)


def _add_item_and_vote(store: Store) -> None:
    """From another connection: a new item of the study and a vote on it (committed)."""
    with store.session() as s:
        study = get_study(s, "pilot")
        item = Item(
            study_id=study.id, path="late_item.png", kind="image", sha256="f" * 64, content_group="late", role="test"
        )
        s.add(item)
        s.flush()
        rater = s.scalars(select(Rater).where(Rater.name == "app1")).one()
        record_rating(s, rater, item, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vote_on_an_item_added_while_the_study_is_read_reads_the_items_again(tmp_path, monkeypatch, backend):
    store = _store(tmp_path, backend)
    monkeypatch.setattr(vote_arrays, "COLUMNAR_MIN_VOTES", 0)  # SQLite: votes on an ADBC connection of their own
    real = snapshot_module.read_votes_with_times
    calls = []

    def votes_after_a_new_item(connection, study_id, where=""):
        if not calls:
            _add_item_and_vote(store)  # after the session read the items, before it reads the votes
        calls.append(1)
        return real(connection, study_id, where)

    monkeypatch.setattr(snapshot_module, "read_votes_with_times", votes_after_a_new_item)
    with store.session() as s:
        snapshot = read_snapshot(s, get_study(s, "pilot"))
    late = snapshot.votes[snapshot.votes["item"] == "late_item.png"]
    assert len(late) == 1 and late["vote"].tolist() == [4] and late["rater"].tolist() == ["app1"]
    assert "late_item.png" in set(snapshot.items["item"])
    counts = snapshot.votes["item"].value_counts()
    assert counts["test_00.png"] == 3 + 2 + 1  # imported (r1 excluded), app1, app2, late


def test_items_that_keep_changing_while_read_give_a_clear_error(tmp_path, monkeypatch) -> None:
    store = _store(tmp_path, "sqlite")
    real = snapshot_module.items_frame
    monkeypatch.setattr(snapshot_module, "items_frame", lambda session, study: real(session, study).iloc[1:])
    with store.session() as s, pytest.raises(StoreError, match="kept changing while it was read"):
        read_snapshot(s, get_study(s, "pilot"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_imported_studys_shared_times_take_no_memory_and_read_the_same(tmp_path, monkeypatch, backend) -> None:
    store = Store(sqlite_url(tmp_path) if backend == "sqlite" else fresh_pg_url())
    make_study(store, tmp_path / "media", n_test=5)
    rows = [(f"test_{k:02d}.png", f"r{r}", 1 + (k + r) % 5) for r in range(7) for k in range(5)]
    with store.session() as s:  # one import: one answer time for all, no display or response time
        import_votes(s, get_study(s, "pilot"), pd.DataFrame(rows, columns=["item", "rater", "vote"]))
    monkeypatch.setattr(vote_arrays, "TIME_BLOCK_IDS", 4)
    monkeypatch.setattr(vote_arrays, "COLUMNAR_MIN_VOTES", 0)
    with store.session() as s:
        both = vote_arrays.read_votes_with_times(s.connection(), get_study(s, "pilot").id)
        one = read_snapshot(s, get_study(s, "pilot"))
    assert both is not None
    for column in (both[1].shown_us, both[1].answered_us, both[1].response_ms):
        assert column.shape == (35,) and column.strides == (0,) and not column.flags.writeable
    assert np.isnan(both[1].shown_us).all() and np.isfinite(both[1].answered_us).all()
    _row_by_row(monkeypatch)
    with store.session() as s:
        two = read_snapshot(s, get_study(s, "pilot"))
    pd.testing.assert_frame_equal(one.votes, two.votes)
    assert one.votes["response_ms"].isna().all() and one.votes["shown_at"].isna().all()
