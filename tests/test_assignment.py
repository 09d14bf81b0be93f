"""Balanced assignment, sittings, gold interleaving, undo and the admin's store-level figures (SQLite)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select

from toolkit.errors import InputError, StoreError
from toolkit.store import Store, add_rater, get_study, import_votes, rater_for_token
from toolkit.store.admin_secret import (
    FAILURE_WINDOW,
    check_admin_secret,
    ensure_admin_secret,
    set_admin_secret,
    sign_in_refused_until,
    try_admin_secret,
)
from toolkit.store.assignment import (
    SESSION_IDLE,
    can_undo,
    mark_trained,
    next_step,
    self_register,
    start_new_session,
    submit_vote,
    training_items,
    undo_last_vote,
)
from toolkit.store.media_check import check_media, missing_items
from toolkit.store.progress import item_progress, rater_stats, study_summary
from toolkit.store.raters import reissue_token, set_rater_access, set_rater_excluded
from toolkit.store.schema import Rater, Rating, utcnow
from toolkit.store.setup import StudySetup, level_labels, setup_study

from fixtures_ui import make_study, sqlite_url, write_images


@pytest.fixture()
def store(tmp_path):
    s = Store(sqlite_url(tmp_path))
    yield s
    s.dispose()


def new_rater(store, name, study="pilot"):
    with store.session() as s:
        return add_rater(s, get_study(s, study), name)[1]


def step(store, token, now=None):
    with store.session() as s:
        return next_step(s, rater_for_token(s, token), now=now)


def vote(store, token, item_id, level, now=None):
    with store.session() as s:
        return submit_vote(s, rater_for_token(s, token), item_id, level, now=now)


def rate_all(store, token, level=3, limit=100):
    """Rate until the queue says stop; returns the item paths in the order served."""
    seen = []
    for _ in range(limit):
        nxt = step(store, token)
        if nxt.status != "rate":
            return seen
        seen.append(nxt.item.path)
        vote(store, token, nxt.item.item_id, level)
    raise AssertionError("queue never ended")


def votes_per_item(store):
    with store.session() as s:
        rows = s.execute(select(Rating.item_id, func.count()).group_by(Rating.item_id)).all()
    return dict(rows)


def test_balanced_assignment_reaches_target_and_stops(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=5, target_votes=2)
    tokens = [new_rater(store, f"r{k}") for k in range(3)]
    served = [rate_all(store, t) for t in tokens]
    # Raters in turn: the first two see every item once, the third finds all items at target.
    assert sorted(served[0]) == sorted(served[1]) and len(served[0]) == 5
    assert served[2] == []
    assert sorted(votes_per_item(store).values()) == [2] * 5
    assert step(store, tokens[2]).status == "finished"


def test_fewest_valid_votes_first_and_excluded_raters_do_not_count(store, tmp_path):
    study = make_study(store, tmp_path / "media", n_test=4, target_votes=10)
    table = pd.DataFrame(
        {
            "item": ["test_00.png", "test_00.png", "test_01.png", "test_02.png", "test_02.png", "test_03.png"],
            "rater": ["a", "b", "a", "a", "b", "screened"],
            "vote": [3, 4, 2, 5, 5, 1],
        }
    )
    with store.session() as s:
        import_votes(s, get_study(s, "pilot"), table)
        set_rater_excluded(s, get_study(s, "pilot"), "screened", True)
    token = new_rater(store, "fresh")
    # test_03's only vote is from a screened-out rater, so it has 0 valid votes: served first.
    order = rate_all(store, token)
    assert order[0] == "test_03.png"
    assert order[1] == "test_01.png"
    assert set(order[2:]) == {"test_00.png", "test_02.png"}
    assert study.target_votes == 10


def test_each_rater_has_an_own_random_order(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=12, target_votes=50)
    orders = [rate_all(store, new_rater(store, f"r{k}")) for k in range(3)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders)
    assert len({tuple(o) for o in orders}) == 3


def test_reload_shows_the_same_item_with_server_side_shown_time(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3)
    token = new_rater(store, "alice")
    start = utcnow()
    first = step(store, token, now=start)
    again = step(store, token, now=start + timedelta(seconds=40))
    assert again.item.item_id == first.item.item_id
    assert again.item.shown_at == first.item.shown_at
    result = vote(store, token, first.item.item_id, 4, now=start + timedelta(seconds=42.5))
    assert result.created
    with store.session() as s:
        rating = s.scalar(select(Rating))
    assert rating.response_ms == pytest.approx(42500, abs=1)


def test_double_submission_counts_once_and_other_items_are_refused(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3)
    token = new_rater(store, "alice")
    item = step(store, token).item
    assert vote(store, token, item.item_id, 2).created
    repeat = vote(store, token, item.item_id, 5)  # second click, other button: the first vote stands
    assert not repeat.created and repeat.level == 2
    assert votes_per_item(store) == {item.item_id: 1}
    shown = step(store, token).item
    other = next(i for i in (1, 2, 3) if i not in (item.item_id, shown.item_id))
    with pytest.raises(StoreError, match="not the item shown"):
        vote(store, token, other, 3)
    with pytest.raises(InputError):
        vote(store, token, shown.item_id, 6)


def test_undo_takes_back_only_the_own_last_vote(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4)
    alice, bob = new_rater(store, "alice"), new_rater(store, "bob")
    bob_item = step(store, bob).item
    vote(store, bob, bob_item.item_id, 1)
    first = step(store, alice).item
    vote(store, alice, first.item_id, 5)
    second = step(store, alice).item
    with store.session() as s:
        rater = rater_for_token(s, alice)
        assert can_undo(s, rater)
        assert undo_last_vote(s, rater) == first.path
    again = step(store, alice)
    assert again.item.item_id == first.item_id  # the undone item is back on screen
    assert again.progress.session_votes == 0
    assert second.item_id != first.item_id
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Rating).where(Rating.item_id == bob_item.item_id)) == 1
        # Nothing more to undo in this sitting for alice: bob's vote is not hers.
        assert undo_last_vote(s, rater_for_token(s, alice)) is None
    assert vote(store, alice, first.item_id, 3).level == 3


def test_gold_items_are_interleaved_with_feedback_and_not_undoable(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=6, n_gold=2, gold_every=2)
    token = new_rater(store, "alice")
    roles, feedback = [], []
    for _ in range(20):
        nxt = step(store, token)
        if nxt.status != "rate":
            break
        roles.append(nxt.item.role)
        result = vote(store, token, nxt.item.item_id, 3 if nxt.item.role == "gold" else 4)
        if nxt.item.role == "gold":
            feedback.append(result.gold)
            with store.session() as s:
                assert undo_last_vote(s, rater_for_token(s, token)) is None
    assert roles == ["test", "test", "gold", "test", "test", "gold", "test", "test"]
    assert all(f.expected_level == 5 and f.given_level == 3 and not f.correct for f in feedback)
    with store.session() as s:
        stats = rater_stats(s, get_study(s, "pilot")).set_index("rater")
    assert stats.loc["alice", "gold_votes"] == 2
    assert stats.loc["alice", "gold_accuracy"] == 0.0


def test_sittings_have_a_size_and_end_when_idle(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=5, items_per_session=2)
    token = new_rater(store, "alice")
    for _ in range(2):
        vote(store, token, step(store, token).item.item_id, 3)
    done = step(store, token)
    assert done.status == "session_done" and done.progress.session_votes == 2
    with store.session() as s:
        start_new_session(s, rater_for_token(s, token))
    nxt = step(store, token)
    assert nxt.status == "rate" and nxt.progress.session_votes == 0
    later = utcnow() + SESSION_IDLE + timedelta(minutes=1)
    vote(store, token, nxt.item.item_id, 3)
    # After a long pause the sitting is over: a new one starts and old votes cannot be undone.
    resumed = step(store, token, now=later)
    assert resumed.status == "rate" and resumed.progress.session_votes == 0 and resumed.progress.rated == 3
    with store.session() as s:
        assert undo_last_vote(s, rater_for_token(s, token), now=later) is None


def test_missing_media_is_flagged_and_skipped(store, tmp_path):
    media = tmp_path / "media"
    make_study(store, media, n_test=3, target_votes=5)
    token = new_rater(store, "alice")
    first = step(store, token).item
    first.file.unlink()  # the file on screen disappears
    nxt = step(store, token)
    assert nxt.skipped_missing == [first.path]
    assert nxt.item.path != first.path
    with store.session() as s:
        study = get_study(s, "pilot")
        assert missing_items(s, study) == [first.path]
        assert bool(item_progress(s, study).set_index("item").loc[first.path, "missing"])
    write_images(media, [first.path])
    with store.session() as s:
        check = check_media(s, get_study(s, "pilot"))
    assert check.restored == [first.path] and check.missing == []


def test_revoked_and_reissued_tokens(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=2)
    token = new_rater(store, "alice")
    with store.session() as s:
        rater = rater_for_token(s, token)
        set_rater_access(s, get_study(s, "pilot"), "alice", revoked=True)
        with pytest.raises(StoreError, match="revoked"):
            next_step(s, rater)
    with pytest.raises(StoreError, match="unknown or revoked"), store.session() as s:
        rater_for_token(s, token)
    with store.session() as s:
        fresh = reissue_token(s, get_study(s, "pilot"), "alice")
    assert step(store, fresh).status == "rate"
    with pytest.raises(StoreError), store.session() as s:
        rater_for_token(s, token)


def test_self_registration_training_and_invite_only(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=2, n_training=3, allow_self_register=False)
    with pytest.raises(StoreError, match="invitation only"), store.session() as s:
        self_register(s, get_study(s, "pilot"), "mallory")
    make_study(store, tmp_path / "open", n_test=2, n_training=3, name="open", allow_self_register=True)
    with store.session() as s:
        study = get_study(s, "open")
        rater, token = self_register(s, study, "walk-in")
        assert [i.expected_level for i in training_items(s, study)] == [5, 3, 1]
        mark_trained(s, rater)
    with store.session() as s:
        assert rater_for_token(s, token).trained_at is not None


def test_setup_refuses_paths_outside_the_media_root_and_bad_labels(store, tmp_path):
    media = tmp_path / "media"
    write_images(media, ["a.png"])
    write_images(tmp_path, ["outside.png"])
    manifest = media / "manifest.csv"
    manifest.write_text("path\na.png\n../outside.png\n")
    with pytest.raises(InputError, match="outside the study's media root"), store.session() as s:
        setup_study(s, StudySetup(name="x", media_root=media, manifest=manifest))
    with pytest.raises(InputError, match="5 non-empty labels"), store.session() as s:
        setup_study(s, StudySetup(name="x", media_root=media, labels=["good", "bad"]))
    labels = ["Superb", "Nice", "<b>Meh</b>", "Poor'; DROP TABLE ratings;--", "Awful"]
    with store.session() as s:
        study, added = setup_study(
            s, StudySetup(name="x", media_root=media, labels=labels, task="custom", question="Is it <i>sharp</i>?")
        )
        assert level_labels(study) == labels and added.added == ["a.png"]
        assert study_summary(s, study)["items"] == 1


def test_admin_secret(store, monkeypatch):
    monkeypatch.delenv("QALIGN_ADMIN_SECRET", raising=False)
    with store.session() as s:
        generated = ensure_admin_secret(s)
        assert generated and check_admin_secret(s, generated)
        assert not check_admin_secret(s, generated + "x") and not check_admin_secret(s, "")
        assert ensure_admin_secret(s) is None  # kept, not regenerated
        assert ensure_admin_secret(s, "correct horse battery") is None
        assert check_admin_secret(s, "correct horse battery") and not check_admin_secret(s, generated)
        with pytest.raises(InputError, match="at least 8"):
            ensure_admin_secret(s, "short")


def test_rater_stats_straightlining_and_valid_votes(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=6, target_votes=5)
    flat, varied = new_rater(store, "flat"), new_rater(store, "varied")
    rate_all(store, flat, level=4)
    levels = iter([1, 2, 3, 4, 5, 5])
    for _ in range(6):
        nxt = step(store, varied)
        vote(store, varied, nxt.item.item_id, next(levels))
    with store.session() as s:
        study = get_study(s, "pilot")
        stats = rater_stats(s, study).set_index("rater")
        assert stats.loc["flat", "longest_run"] == 6 and stats.loc["flat", "min_session_sd"] == 0
        assert stats.loc["varied", "longest_run"] == 2 and stats.loc["varied", "min_session_sd"] > 1
        assert stats.loc["flat", "votes"] == 6 and stats.loc["flat", "sessions"] == 1
        progress = item_progress(s, study)
        assert progress["valid_votes"].tolist() == [2] * 6 and progress["votes"].tolist() == [2] * 6
        set_rater_excluded(s, study, "flat", True)
        progress = item_progress(s, study)
        assert progress["valid_votes"].tolist() == [1] * 6 and progress["votes"].tolist() == [2] * 6
        assert study_summary(s, study)["target_fraction"] == pytest.approx(6 / 30)
        # The rater's own figures keep every vote: they are what an exclusion is judged on.
        assert rater_stats(s, study).set_index("rater").loc["flat", "votes"] == 6


def check_duplicate_rater_names(store, tmp_path, monkeypatch):
    """A taken rater name gives one line, from every way of adding a rater, also when another
    session takes the name between the check and the insert; the transaction stays usable."""
    from toolkit.store import raters

    make_study(store, tmp_path / "open", n_test=2, name="open", allow_self_register=True)
    with store.session() as s:
        raters.invite_rater(s, get_study(s, "open"), "alice")
    duplicate = "a rater named 'alice' already exists in study 'open'"
    for add in (
        lambda s, study: raters.invite_rater(s, study, " alice "),
        lambda s, study: self_register(s, study, "alice"),
    ):
        with pytest.raises(StoreError) as info, store.session() as s:
            add(s, get_study(s, "open"))
        assert str(info.value) == duplicate
    # The race: the name is free when checked, taken when inserted.
    monkeypatch.setattr(raters, "_name_taken", lambda *_: False)
    with store.session() as s:
        study = get_study(s, "open")
        with pytest.raises(StoreError, match=duplicate):
            self_register(s, study, "alice")
        bob_token = raters.invite_rater(s, study, "bob")  # same transaction, still usable
    with store.session() as s:
        assert rater_for_token(s, bob_token).name == "bob"
        names = s.scalars(select(Rater.name).where(Rater.study_id == get_study(s, "open").id)).all()
        assert sorted(names) == ["alice", "bob"]


def test_duplicate_rater_name_is_one_line(store, tmp_path, monkeypatch):
    check_duplicate_rater_names(store, tmp_path, monkeypatch)


def check_admin_sign_in_back_off(store):
    """Five wrong admin secrets within the window are free; each further try waits twice as long
    as the last, the right secret included; a new secret or a successful sign-in clears the count."""
    start = utcnow()
    with store.session() as s:
        set_admin_secret(s, "the-right-secret")
    at = start
    for _ in range(5):
        with store.session() as s:
            assert try_admin_secret(s, "guess", now=at) is False
        at += timedelta(seconds=1)
    last_failure = at - timedelta(seconds=1)
    waits = []
    for _ in range(3):
        with store.session() as s:
            until = sign_in_refused_until(s, now=at)
            assert until is not None
            with pytest.raises(
                StoreError, match=r"^too many wrong admin secrets: try again after \S+ UTC \(in \d+ s\)$"
            ):
                try_admin_secret(s, "the-right-secret", now=at)
        waits.append(until - last_failure)
        at = last_failure = until + timedelta(seconds=1)
        with store.session() as s:
            assert try_admin_secret(s, "guess", now=at) is False
    assert waits == [timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=120)]
    with store.session() as s:
        assert sign_in_refused_until(s, now=at + FAILURE_WINDOW + timedelta(minutes=16)) is None
        set_admin_secret(s, "a-new-secret")
    with store.session() as s:
        assert sign_in_refused_until(s, now=at) is None
        assert try_admin_secret(s, "a-new-secret", now=at) is True


def test_admin_sign_in_back_off(store):
    check_admin_sign_in_back_off(store)


def test_admin_sign_in_success_clears_the_count(store):
    with store.session() as s:
        set_admin_secret(s, "the-right-secret")
    now = utcnow()
    for _ in range(4):
        with store.session() as s:
            assert try_admin_secret(s, "guess", now=now) is False
    with store.session() as s:
        assert try_admin_secret(s, "the-right-secret", now=now) is True
    with store.session() as s:
        assert try_admin_secret(s, "guess", now=now) is False
        assert sign_in_refused_until(s, now=now) is None  # one failure since the sign-in, not five
