import threading

import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import func, select

from toolkit.analysis import item_aggregates
from toolkit.errors import InputError, StoreError
from toolkit.store import (
    ItemSpec,
    Rating,
    Store,
    add_items,
    add_rater,
    create_study,
    current_revision,
    export_study,
    get_study,
    head_revision,
    import_votes,
    rater_for_token,
    read_snapshot,
    record_rating,
    record_rating_by_token,
    revoke_rater,
    scan_media,
    study_items,
    upgrade,
    votes_frame,
)


@pytest.fixture()
def media(tmp_path):
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 60, 10, 10)).save(root / f"img{i}.png")
    Image.new("RGB", (8, 8)).save(root / "sub" / "deep.jpg")
    (root / "notes.txt").write_text("not media")
    return root


@pytest.fixture()
def store(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert upgrade(url) == head_revision()
    s = Store(url)
    yield s
    s.dispose()


def test_migrations_create_schema_and_store_checks_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    with pytest.raises(StoreError, match="qalign db upgrade"):
        Store(url)
    assert not (tmp_path / "a.db").exists()  # refusing must not leave an empty file behind
    upgrade(url)
    assert current_revision(url) == head_revision()
    Store(url).dispose()


@pytest.mark.parametrize(
    "url, message",
    [
        ("not a url", "cannot parse database URL"),
        ("nosuchdb://x", "unsupported database URL 'nosuchdb://x': the study store runs on SQLite or PostgreSQL"),
        ("postgresql+nosuchdriver://x", "no SQLAlchemy dialect"),
        ("sqlite:////nonexistent-folder/x.db", "does not exist"),
    ],
)
def test_bad_urls_give_clear_errors(url, message):
    with pytest.raises(StoreError, match=message):
        upgrade(url)


def test_study_items_hash_kind_group(store, media):
    with store.session() as s:
        study = create_study(s, "pilot", media)
        result = add_items(s, study, scan_media(media))
        assert sorted(result.added) == ["img0.png", "img1.png", "img2.png", "img3.png", "sub/deep.jpg"]
        again = add_items(s, study, scan_media(media))
        assert again.added == [] and len(again.skipped) == 5
        items = {i.path: i for i in study_items(s, study)}
    import hashlib

    assert items["img1.png"].sha256 == hashlib.sha256((media / "img1.png").read_bytes()).hexdigest()
    assert items["sub/deep.jpg"].kind == "image" and items["sub/deep.jpg"].content_group == "deep"


def test_paths_outside_media_root_are_refused(store, media, tmp_path):
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    with store.session() as s:
        study = create_study(s, "p", media)
        with pytest.raises(InputError, match="outside the study's media root"):
            add_items(s, study, [ItemSpec(path="../secret.png")])


def test_failed_operation_writes_nothing(store, media):
    with pytest.raises(InputError):
        with store.session() as s:
            study = create_study(s, "half", media)
            add_items(s, study, [ItemSpec(path="img0.png"), ItemSpec(path="missing.png")])
    with store.session() as s:
        with pytest.raises(StoreError, match="no study named 'half'"):
            get_study(s, "half")


def test_tokens_are_hashed_and_revocable(store, media):
    with store.session() as s:
        study = create_study(s, "t", media)
        rater, token = add_rater(s, study, "alice")
        assert token not in rater.token_hash
        assert rater_for_token(s, token).name == "alice"
        with pytest.raises(StoreError, match="unknown or revoked"):
            rater_for_token(s, "forged-token")
        revoke_rater(s, rater)
        with pytest.raises(StoreError, match="unknown or revoked"):
            rater_for_token(s, token)


def test_a_vote_counts_once_and_the_first_stands(store, media):
    with store.session() as s:
        study = create_study(s, "v", media)
        add_items(s, study, scan_media(media))
        rater, token = add_rater(s, study, "bob")
        item = study_items(s, study)[0]
        first = record_rating(s, rater, item, 4)
        again = record_rating(s, rater, item, 1)
        assert first.created and not again.created and again.rating.level == 4
        with pytest.raises(InputError):
            record_rating(s, rater, item, 6)
        with pytest.raises(StoreError):
            record_rating_by_token(s, "wrong", item.id, 3)
        frame = votes_frame(s, study)
    assert len(frame) == 1 and frame.loc[0, "vote"] == 4 and frame.loc[0, "rater"] == "bob"


def test_concurrent_double_submissions_store_one_row(store, media):
    with store.session() as s:
        study = create_study(s, "c", media)
        add_items(s, study, scan_media(media))
        tokens = [add_rater(s, study, f"r{i}")[1] for i in range(8)]
        item_ids = [i.id for i in study_items(s, study)]
    barrier = threading.Barrier(16)
    errors = []

    def submit(token):
        try:
            barrier.wait()
            for item_id in item_ids:
                with store.session() as s:
                    record_rating_by_token(s, token, item_id, 3)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(t,)) for t in tokens * 2]  # every rater clicks twice
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Rating)) == len(tokens) * len(item_ids)


def test_import_is_all_or_nothing_and_idempotent(store, media, tmp_path):
    with store.session() as s:
        study = create_study(s, "imp", media)
        add_items(s, study, scan_media(media))
    votes = pd.DataFrame({"item": ["img0.png", "img1.png", "img0.png"], "rater": ["a", "a", "b"], "vote": [5, 2, 4]})
    with store.session() as s:
        assert import_votes(s, get_study(s, "imp"), votes) == (3, 0)
    with store.session() as s:
        assert import_votes(s, get_study(s, "imp"), votes) == (0, 3)
    bad = pd.concat([votes, pd.DataFrame({"item": ["img2.png"], "rater": ["c"], "vote": [7]})], ignore_index=True)
    with pytest.raises(InputError, match=r"vote 7.0 at row 3"):
        with store.session() as s:
            import_votes(s, get_study(s, "imp"), bad)
    unknown = pd.DataFrame({"item": ["img2.png", "nope.png"], "rater": ["c", "c"], "vote": [3, 3]})
    with pytest.raises(InputError, match=r"row 1: item 'nope.png' is not in study"):
        with store.session() as s:
            import_votes(s, get_study(s, "imp"), unknown)
    contradiction = pd.DataFrame({"item": ["img0.png"], "rater": ["a"], "vote": [1]})
    with pytest.raises(InputError, match="already has vote 5"):
        with store.session() as s:
            import_votes(s, get_study(s, "imp"), contradiction)
    twice = pd.DataFrame({"item": ["img3.png", "img3.png"], "rater": ["z", "z"], "vote": [1, 2]})
    with pytest.raises(InputError, match="more than once"):
        with store.session() as s:
            import_votes(s, get_study(s, "imp"), twice)
    with store.session() as s:
        study = get_study(s, "imp")
        assert len(votes_frame(s, study)) == 3  # none of the failed imports left a vote
        agg = item_aggregates(read_snapshot(s, study))
        out = export_study(s, study, tmp_path / "votes.parquet")
    assert set(agg["item"]) == {"img0.png", "img1.png", "img2.png", "img3.png", "sub/deep.jpg"}
    row = agg.set_index("item").loc["img0.png"]
    assert row.n == 2 and row.mos == 4.5 and row.votes_excellent == 1 and row.votes_good == 1
    assert agg.set_index("item").loc["img3.png", "n"] == 0
    assert len(pd.read_parquet(out)) == 3
