"""The study as a measuring instrument: settings, the rater's flow (instructions, consent, screen
check, quiz), trapping questions, scale factors, vote targets and per-study admin secrets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from toolkit.errors import InputError, StoreError
from toolkit.store import Store, add_rater, get_study, load_snapshot, rater_for_token
from toolkit.store.admin_secret import admin_sign_in, set_admin_secret, set_study_admin_secret, try_admin_secret
from toolkit.store.assignment import RESERVATION, next_step, submit_answer, submit_trap, submit_vote, undo_last_vote
from toolkit.store.protocol import add_trap, check_environment, give_consent, mark_instructions_seen, rater_flow
from toolkit.store.qualification import next_quiz_item, submit_quiz_answer
from toolkit.store.schema import EnvironmentCheck, Rating, TrapAnswer, utcnow
from toolkit.store.study_settings import (
    StudyProtocol,
    configure_protocol,
    measure_stimuli,
    set_study_texts,
    study_protocol,
)

from fixtures_ui import make_study, sqlite_url


@pytest.fixture()
def store(tmp_path):
    store = Store(sqlite_url(tmp_path))
    yield store
    store.dispose()


def _rater(store, name="alice", study="pilot"):
    with store.session() as s:
        return add_rater(s, get_study(s, study), name)[1]


def _configure(store, study="pilot", **settings):
    with store.session() as s:
        return configure_protocol(s, get_study(s, study), **settings)


def test_settings_default_to_todays_behaviour_and_are_checked(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3)
    with store.session() as s:
        study = get_study(s, "pilot")
        assert study.protocol is None and study_protocol(study) == StudyProtocol()
        protocol = configure_protocol(s, study, trap_every=4, crowd_platforms="prolific,mturk", video_replay="once")
        assert protocol.crowd_platforms == ("prolific", "mturk") and protocol.video_replay == "once"
        # Only what differs from the defaults is stored.
        assert '"trap_every": 4' in study.protocol and "oversize" not in study.protocol
        for bad, message in [
            (dict(oversize="crop"), "oversize: choose one of scale, refuse"),
            (dict(quiz_items=2, quiz_pass=3), "quiz_pass"),
            (dict(min_gold_accuracy=1.5), "min_gold_accuracy"),
            (dict(trap_every=-1), "trap_every"),
            (dict(crowd_platforms=("mechanical",)), "unknown platform 'mechanical'"),
            (dict(mturk_submit_url="http://example.org"), "https://"),
            (dict(colour="grey"), "unknown study setting 'colour'"),
        ]:
            with pytest.raises(InputError, match=message):
                configure_protocol(s, study, **bad)
        assert study_protocol(study).trap_every == 4  # a refused change leaves the settings as they were


def test_video_replay_defaults_to_once_and_studies_configured_before_keep_free(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=2)
    with store.session() as s:
        study = get_study(s, "pilot")
        assert study_protocol(study).video_replay == "once"  # P.910: shown once, one replay offered
        # Settings stored while "free" was the default left it out: such a study keeps "free".
        study.protocol = '{"trap_every": 4}'
        assert study_protocol(study).video_replay == "free"
        # Changing another setting keeps it, now written out.
        assert configure_protocol(s, study, audio="sound").video_replay == "free"
        assert '"video_replay": "free"' in study.protocol
        configure_protocol(s, study, video_replay="once")
        assert '"video_replay": "once"' in study.protocol and study_protocol(study).video_replay == "once"


def test_flow_goes_instructions_consent_screen_quiz_rating_completion(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=2, n_gold=3, target_votes=1)
    token = _rater(store)
    with store.session() as s:
        study = get_study(s, "pilot")
        set_study_texts(s, study, instructions="# Read me", consent="I agree.")
        configure_protocol(s, study, min_viewport_width=800, min_viewport_height=600, quiz_items=2, quiz_pass=2)
    with store.session() as s:
        rater = rater_for_token(s, token)
        assert rater_flow(s, rater).step == "instructions"
        with pytest.raises(StoreError, match="must finish the instructions step"):
            next_step(s, rater)
        with pytest.raises(StoreError, match="read the instructions before consenting"):
            give_consent(s, rater)
        mark_instructions_seen(s, rater)
        assert rater_flow(s, rater).step == "consent"
        give_consent(s, rater)
        assert rater.consent_given_at is not None and rater.instructions_seen_at is not None
        assert rater_flow(s, rater).step == "environment"
        small = check_environment(s, rater, viewport_width=640, viewport_height=700, dpr=2.0, zoom=1.0)
        assert not small.passed and "640x700" in small.reason and "800x600" in small.reason
        state = rater_flow(s, rater)
        assert state.step == "environment" and state.reason == small.reason
        assert check_environment(s, rater, 1280, 800, 1.0, 1.0).passed
        assert s.scalar(select(func.count()).select_from(EnvironmentCheck)) == 2  # every try is recorded
        assert rater_flow(s, rater).step == "quiz"
        with pytest.raises(StoreError, match="must finish the quiz step"):
            next_step(s, rater)
        answers = []
        while (question := next_quiz_item(s, rater)) is not None:
            answers.append(submit_quiz_answer(s, rater, question.item_id, 5))
        assert [a.finished for a in answers] == [False, True] and answers[-1].passed
        assert rater_flow(s, rater).step == "rating"
        # The two quiz items are not served again as interleaved gold; the third gold item is.
        roles = []
        while (step := next_step(s, rater)).status == "rate":
            roles.append(step.item.role)
            submit_vote(s, rater, step.item.item_id, 4)
        assert sorted(roles) == ["gold", "test", "test"]
        assert step.status == "finished" and rater_flow(s, rater).step == "completion"
        # Quiz answers are never votes.
        assert s.scalar(select(func.count()).select_from(Rating)) == 3


def test_failing_the_quiz_keeps_the_rater_out(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=2, n_gold=2)
    token = _rater(store)
    _configure(store, quiz_items=2, quiz_pass=2)
    with store.session() as s:
        rater = rater_for_token(s, token)
        first = next_quiz_item(s, rater)
        result = submit_quiz_answer(s, rater, first.item_id, 1)  # expected 5, tolerance 1
        assert not result.correct and not result.finished
        assert submit_quiz_answer(s, rater, first.item_id, 5).given_level == 1  # the first answer stands
        second = next_quiz_item(s, rater)
        assert second.position == 2 and second.item_id != first.item_id
        assert submit_quiz_answer(s, rater, second.item_id, 5).passed is False
        state = rater_flow(s, rater)
        assert state.step == "not_admitted" and "quiz" in state.reason
        with pytest.raises(StoreError, match="not admitted: the qualification quiz was not passed"):
            next_step(s, rater)


def test_zoom_dpr_and_unscaled_stimuli_are_checked(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=2)  # 16x16 images
    token = _rater(store)
    with store.session() as s:
        study = get_study(s, "pilot")
        assert measure_stimuli(s, study) == (16, 16)
        configure_protocol(s, study, oversize="refuse", stimulus_width=1920, stimulus_height=1080)
        configure_protocol(s, study, max_zoom_deviation=0.05, min_dpr=1.0)
    with store.session() as s:
        rater = rater_for_token(s, token)
        zoomed = check_environment(s, rater, 1600, 900, 1.0, zoom=1.25)
        assert not zoomed.passed and "zoom is 125 %" in zoomed.reason and "1920x1080" in zoomed.reason
        # A high-DPI laptop holds the stimuli unscaled in a smaller CSS viewport.
        assert check_environment(s, rater, 1000, 600, 2.0, zoom=1.0).passed
        with pytest.raises(InputError, match="dpr must be a positive number"):
            check_environment(s, rater, 1000, 600, 0)


def test_traps_are_interleaved_recorded_and_never_votes(store, tmp_path):
    media = tmp_path / "media"
    make_study(store, media, n_test=6, target_votes=2)
    token = _rater(store)
    with store.session() as s:
        study = get_study(s, "pilot")
        trap = add_trap(s, study, "test_00.png", 2)
        assert trap.message == "Attention check: for this image, please select \u201cPoor\u201d."
        add_trap(s, study, "test_01.png", 4, message="Press Good now")
        with pytest.raises(InputError, match="no such file"):
            add_trap(s, study, "nowhere.png", 3)
        configure_protocol(s, study, trap_every=2)
    served = []
    with store.session() as s:
        rater = rater_for_token(s, token)
        while (step := next_step(s, rater)).status == "rate":
            # A reload shows the same screen, trap or item.
            assert next_step(s, rater).item.item_id == step.item.item_id
            assert step.progress.traps_answered == served.count("trap")  # for the app's "N of M done"
            served.append(step.item.role)
            if step.item.role == "trap":
                level = step.item.trap.instructed_level if len(served) < 4 else 1
                result = submit_answer(s, rater, step.item, level)
                assert result.passed == (len(served) < 4)
                assert submit_trap(s, rater, step.item.item_id, 5).created is False
            else:
                submit_answer(s, rater, step.item, 3, scale_factor=0.5)
    assert served == ["test", "test", "trap", "test", "test", "trap", "test", "test"]
    with store.session() as s:
        answers = s.execute(select(TrapAnswer.passed).order_by(TrapAnswer.id)).scalars().all()
        assert answers == [True, False]
        assert s.scalar(select(func.count()).select_from(Rating)) == 6
        assert set(s.scalars(select(Rating.scale_factor))) == {0.5}
    snapshot = load_snapshot("pilot", store.url)
    assert len(snapshot.votes) == 6  # trap answers are on no label


def test_scale_factor_must_be_positive(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=1)
    token = _rater(store)
    with store.session() as s:
        rater = rater_for_token(s, token)
        step = next_step(s, rater)
        with pytest.raises(InputError, match="scale factor"):
            submit_vote(s, rater, step.item.item_id, 3, scale_factor=0)
        assert submit_vote(s, rater, step.item.item_id, 3).created


def test_item_cap_ends_the_rater_s_work(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=5)
    token = _rater(store)
    _configure(store, max_items_per_rater=2)
    with store.session() as s:
        rater = rater_for_token(s, token)
        for _ in range(2):
            step = next_step(s, rater)
            assert step.progress.remaining == 2 - step.progress.rated
            submit_vote(s, rater, step.item.item_id, 3)
        step = next_step(s, rater)
        assert step.status == "finished" and step.progress.remaining == 0
        assert rater.completed_at is not None


def test_an_item_on_screen_holds_its_last_vote(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=1, target_votes=1)
    first, second = _rater(store, "a"), _rater(store, "b")
    now = utcnow()
    with store.session() as s:
        step = next_step(s, rater_for_token(s, first), now)
    with store.session() as s:
        assert next_step(s, rater_for_token(s, second), now).status == "finished"
    # The first rater walked away; after the reservation the item goes to the second rater, and the
    # first rater's late vote no longer fits under the target.
    later = now + RESERVATION + timedelta(seconds=1)
    with store.session() as s:
        other = next_step(s, rater_for_token(s, second), later)
        assert other.status == "rate"
        assert submit_vote(s, rater_for_token(s, second), other.item.item_id, 4, later).created
    with store.session() as s:
        late = submit_vote(s, rater_for_token(s, first), step.item.item_id, 2, later)
        assert late.accepted is False and late.created is False
        assert s.scalar(select(func.count()).select_from(Rating)) == 1


def test_a_study_secret_opens_only_its_study(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=1, name="one")
    make_study(store, tmp_path / "media2", n_test=1, name="two")
    with store.session() as s:
        one, two = get_study(s, "one"), get_study(s, "two")
        set_admin_secret(s, "global-secret")
        set_study_admin_secret(s, one, "study-one-secret")
        with pytest.raises(InputError, match="at least 8"):
            set_study_admin_secret(s, two, "short")
        access = admin_sign_in(s, "study-one-secret")
        assert access is not None and access.allows(one) and not access.allows(two)
        assert admin_sign_in(s, "study-one-secret", study=two) is None  # counted as a wrong try
        everything = admin_sign_in(s, "global-secret", study=two)
        assert everything is not None and everything.all_studies and everything.allows(two)
        assert try_admin_secret(s, "study-one-secret") is False  # the global check is unchanged
        set_study_admin_secret(s, one, None)
        assert admin_sign_in(s, "study-one-secret") is None


def test_undo_after_a_trap_was_served_shows_the_item_again(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4)
    token = _rater(store)
    with store.session() as s:
        add_trap(s, get_study(s, "pilot"), "test_03.png", 1)
        configure_protocol(s, get_study(s, "pilot"), trap_every=1)
        rater = rater_for_token(s, token)
        first = next_step(s, rater)
        submit_vote(s, rater, first.item.item_id, 2)
        assert next_step(s, rater).item.role == "trap"
        assert undo_last_vote(s, rater) == first.item.path
        again = next_step(s, rater)
        assert again.item.role == "test" and again.item.item_id == first.item.item_id
        submit_vote(s, rater, again.item.item_id, 4)
        assert next_step(s, rater).item.role == "trap"  # the trap comes back once the vote is in


def test_a_study_is_set_up_with_its_protocol_in_one_transaction(store, tmp_path):
    from toolkit.store.setup import StudySetup, setup_study

    make_study(store, tmp_path / "media", n_test=2)  # writes the images and the manifest
    media = tmp_path / "media"
    with store.session() as s:
        study, _ = setup_study(
            s,
            StudySetup(
                name="crowd",
                media_root=media,
                manifest=media / "manifest.csv",
                instructions="Look at each image.",
                consent="I agree.",
                protocol={"trap_every": 5, "crowd_platforms": ("prolific",), "completion_code": "XYZ"},
            ),
        )
        assert study.instructions == "Look at each image." and study.consent_text == "I agree."
        assert study_protocol(study).completion_code == "XYZ"
    with pytest.raises(InputError, match="trap_every"):
        with store.session() as s:
            setup_study(s, StudySetup(name="bad", media_root=media, protocol={"trap_every": -2}))
    with store.session() as s:
        with pytest.raises(StoreError):
            get_study(s, "bad")  # nothing of it was kept


def test_migration_0004_keeps_every_rating_both_ways(tmp_path):
    # Rebuilding the raters or studies table on SQLite would cascade to the ratings (foreign keys on).
    from sqlalchemy import create_engine, text

    from toolkit.store.migrate import downgrade, upgrade

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url, "0003")
    engine = create_engine(url)
    rows = [
        "INSERT INTO studies (id, name, task, question, media_root, target_votes, items_per_session, "
        "allow_self_register, created_at, gold_every) "
        "VALUES (1, 's', 'quality', 'q', '/m', 15, 50, 0, '2026-01-01', 10)",
        "INSERT INTO items (id, study_id, path, kind, sha256, content_group, role, tolerance, created_at, priority) "
        "VALUES (1, 1, 'a.png', 'image', '0', 'a', 'test', 1, '2026-01-01', 0)",
        "INSERT INTO raters (id, study_id, name, token_hash, revoked, created_at, excluded, self_registered) "
        "VALUES (1, 1, 'r', 'h', 0, '2026-01-01', 1, 0)",
        "INSERT INTO ratings (study_id, item_id, rater_id, level, answered_at) VALUES (1, 1, 1, 3, '2026-01-01')",
    ]
    with engine.begin() as conn:
        for row in rows:
            conn.execute(text(row))

    def counts() -> list[int]:
        with engine.connect() as conn:
            tables = ("studies", "items", "raters", "ratings")
            return [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables]

    assert upgrade(url, "0004") == "0004" and counts() == [1, 1, 1, 1]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT excluded, excluded_by_rules FROM raters")).one() == (1, 0)
    assert downgrade(url, "0003") == "0003" and counts() == [1, 1, 1, 1]
    engine.dispose()
