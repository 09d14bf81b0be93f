"""The annotation app's pages and flows through streamlit.testing (no browser)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from toolkit.store import Store, add_rater, get_study, rater_for_token
from toolkit.store.raters import set_rater_access
from toolkit.store.schema import Assignment, Item, Rater, Rating, utcnow

from fixtures_ui import (
    ADMIN_SECRET,
    app_store,
    make_study,
    screen_data,
    screen_event,
    send_measurement,
    send_vote,
)

ROOT = Path(__file__).resolve().parents[1] / "annotation_ui"
RATE = str(ROOT / "views" / "rate.py")
ADMIN = str(ROOT / "views" / "admin.py")
SECRET = ADMIN_SECRET


@pytest.fixture()
def store(tmp_path, monkeypatch):
    s = app_store(tmp_path, monkeypatch)
    yield s
    s.dispose()


def invite(store, name="alice", study="pilot", trained=True):
    with store.session() as s:
        rater, token = add_rater(s, get_study(s, study), name)
        if trained:
            rater.trained_at = utcnow()
    return token


def rate_page(token=None):
    at = AppTest.from_file(RATE, default_timeout=60)
    if token:
        at.query_params["token"] = token
    return at.run()


def ratings(store):
    with store.session() as s:
        return s.execute(
            select(Rater.name, Item.path, Rating.level)
            .join(Rater)
            .join(Item, Rating.item_id == Item.id)
            .order_by(Rating.id)
        ).all()


def vote_levels(at):
    """The level labels the rating screen offers (none when it is not shown or not rating)."""
    data = screen_data(at)
    return data["labels"] if data and data["mode"] == "rate" else []


def texts(at):
    return " ".join(
        str(e.value)
        for kind in ("markdown", "caption", "info", "success", "warning", "error", "header")
        for e in at.get(kind)
    )


def screen_message(at):
    message = (screen_data(at) or {}).get("message")
    return message["text"] if message else ""


def test_unknown_token_is_refused_and_nothing_is_shown(store, tmp_path):
    make_study(store, tmp_path / "media")
    at = rate_page("no-such-token")
    assert not at.exception
    assert [e.value for e in at.error] == ["Unknown or revoked token."]
    assert screen_data(at) is None and not at.get("image")
    at = rate_page()
    at.text_input(key="join_token").input("still-wrong")
    at.button(key="FormSubmitter:join-Join").click().run()
    assert [e.value for e in at.error] == ["Unknown or revoked token."]
    assert screen_data(at) is None


def test_join_training_then_rate_with_the_screen_and_undo(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3, n_training=3)
    token = invite(store, trained=False)
    at = rate_page()
    at.text_input(key="join_token").input(token)
    at.button(key="FormSubmitter:join-Join").click().run()
    assert "token" not in at.query_params  # held by the session, not shown in the address bar
    shown = []
    while (data := screen_data(at)) is not None:
        assert data["mode"] == "train"
        shown.append((data["example_level"], data["caption"]))
        screen_event(at, "next")
    assert [level for level, _ in shown] == [5, 3, 1]
    assert [caption.split("example of ")[1] for _, caption in shown] == ["Excellent.", "Fair.", "Bad."]
    assert "press its key" in texts(at)
    at.button(key="train_done").click().run()
    data = screen_data(at)
    assert data["mode"] == "rate" and data["labels"] == ["Excellent", "Good", "Fair", "Poor", "Bad"]
    assert data["question"] == "How would you rate the quality of this image?"
    assert data["progress"]["text"] == "0 of 3 done" and not data["can_undo"]
    first = data["key"]
    send_vote(at, 2)
    assert [(r.name, r.level) for r in ratings(store)] == [("alice", 2)]
    assert screen_data(at)["progress"]["text"] == "1 of 3 done" and screen_data(at)["can_undo"]
    screen_event(at, "undo")
    assert ratings(store) == []
    assert "taken back" in screen_message(at)
    # The same item again, shown anew: a new screen key, so a video plays again from its start.
    again = screen_data(at)["key"]
    assert again != first and again.rsplit("-i", 1)[1] == first.rsplit("-i", 1)[1]
    send_vote(at, 4)
    assert [r.level for r in ratings(store)] == [4]


def test_a_vote_carries_the_measured_scale_and_stale_or_odd_answers_store_nothing(store, tmp_path):
    from toolkit.store.schema import Rating

    make_study(store, tmp_path / "media", n_test=3)
    token = invite(store)
    at = rate_page(token)
    first = screen_data(at)["key"]
    send_vote(at, 3, scale=0.64)
    assert [r.level for r in ratings(store)] == [3]
    with store.session() as s:
        assert s.scalar(select(Rating.scale_factor)) == pytest.approx(0.64)
    send_vote(at, 5, key=first)  # a late second click on the screen before: not a vote on the new item
    send_vote(at, 7)  # not a level
    send_vote(at, True)
    assert [r.level for r in ratings(store)] == [3]
    assert "not one of the five levels" in screen_message(at)


def test_resume_after_reload_shows_the_same_item(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4)
    token = invite(store)
    first = rate_page(token)
    send_vote(first, 5)
    with store.session() as s:
        pending = s.scalar(select(Assignment.item_id))
    again = rate_page(token)  # a new browser session, same invite link
    assert screen_data(again)["progress"]["text"] == "1 of 4 done"
    assert screen_data(again)["key"] == screen_data(first)["key"]
    with store.session() as s:
        assert s.scalar(select(Assignment.item_id)) == pending
    send_vote(again, 1)
    assert [r.level for r in ratings(store)] == [5, 1]


def test_gold_feedback_one_progress_count_and_session_break(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4, n_gold=1, gold_every=2, items_per_session=3)
    token = invite(store)
    at = rate_page(token)
    # Four test items and the one check item that comes after two of them: five answers in all.
    assert screen_data(at)["progress"]["text"] == "0 of 5 done"
    send_vote(at, 3)
    send_vote(at, 3)
    assert screen_data(at)["progress"]["text"] == "2 of 5 done"
    send_vote(at, 1)  # the gold item (expected 5, tolerance 1)
    assert [r.path.startswith("gold") for r in ratings(store)] == [False, False, True]
    assert any("expected answer was Excellent" in w.value for w in at.warning)
    assert "Session complete" in texts(at) and "3 of 5 done" in texts(at) and screen_data(at) is None
    at.button(key="next_session").click().run()
    assert screen_data(at)["progress"]["text"] == "3 of 5 done"
    send_vote(at, 4)
    send_vote(at, 4)
    assert "nothing left for you to rate" in texts(at) and len(ratings(store)) == 5


def test_video_vote_counts_only_once_the_clip_has_played(store, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    import shutil

    from toolkit.store.setup import SAMPLE_MEDIA_ROOT, StudySetup, setup_study

    shutil.copy(SAMPLE_MEDIA_ROOT / "clip.mp4", media / "clip.mp4")
    with store.session() as s:
        setup_study(s, StudySetup(name="pilot", media_root=media, gold_every=0))
    token = invite(store)
    at = rate_page(token)
    data = screen_data(at)
    assert data["kind"] == "video" and data["question"] == "How would you rate the quality of this video?"
    assert data["audio"] == "muted" and data["replay"] in ("none", "once", "free")  # the study's settings
    # The page sends a vote only after the player's "ended" event; one without it, or sooner than the
    # clip can have played since the server showed it, is refused.
    send_vote(at, 4, played=False)
    send_vote(at, 4)
    assert ratings(store) == [] and "watch the whole video" in screen_message(at)
    with store.session() as s:
        s.execute(update(Assignment).values(shown_at=utcnow() - timedelta(seconds=5)))
    at = rate_page(token)
    send_vote(at, 4)
    assert [r.level for r in ratings(store)] == [4]


def test_video_study_texts_say_video(store, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    import shutil

    from toolkit.store.setup import SAMPLE_MEDIA_ROOT, StudySetup, setup_study

    shutil.copy(SAMPLE_MEDIA_ROOT / "clip.mp4", media / "clip.mp4")
    with store.session() as s:
        setup_study(s, StudySetup(name="pilot", media_root=media, gold_every=0))
    at = rate_page(invite(store, trained=False))
    shown = texts(at)
    assert "quality of this video" in shown and "Each video is shown" in shown and "image" not in shown


def test_missing_media_is_skipped_with_a_message(store, tmp_path):
    media = tmp_path / "media"
    make_study(store, media, n_test=3)
    token = invite(store)
    at = rate_page(token)
    with store.session() as s:
        path = s.scalar(select(Item.path).join(Assignment, Assignment.item_id == Item.id))
    (media / path).unlink()
    at = rate_page(token)
    assert "could not be loaded" in screen_message(at)
    assert len(vote_levels(at)) == 5
    with store.session() as s:
        assert s.scalar(select(Item.missing_since).where(Item.path == path)) is not None


def test_stimulus_bytes_are_served_as_stored(store, tmp_path, monkeypatch):
    """The browser gets the file's own bytes (no re-encoding, which would change the quality judged)."""
    import streamlit.testing.v1 as streamlit_testing
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    kept: dict[str, tuple[bytes, str]] = {}

    class Kept(MemoryMediaFileStorage):
        def load_and_get_id(self, path_or_data, mimetype, kind, filename=None):
            file_id = super().load_and_get_id(path_or_data, mimetype, kind, filename)
            kept[file_id] = (self.get_file(file_id).content, mimetype)
            return file_id

    monkeypatch.setattr(streamlit_testing.app_test, "MemoryMediaFileStorage", Kept)
    make_study(store, tmp_path / "media", n_test=2)
    at = rate_page(invite(store))
    with store.session() as s:
        path = s.scalar(select(Item.path).join(Assignment, Assignment.item_id == Item.id))
    assert kept[Path(screen_data(at)["src"]).stem] == ((tmp_path / "media" / path).read_bytes(), "image/png")


def test_self_registration_shows_names_as_text(store, tmp_path):
    make_study(
        store,
        tmp_path / "media",
        allow_self_register=True,
        task="custom",
        question="Is it <b>sharp</b>? [x](javascript:alert(1))",
    )
    at = rate_page()
    name = "<script>alert(1)</script>'; DROP TABLE ratings;--"
    at.text_input(key="register_name").input(name)
    at.button(key="FormSubmitter:register-Register").click().run()
    with store.session() as s:
        rater = s.scalar(select(Rater))
        assert rater.name == name and rater.self_registered
    assert "Your personal token" in at.info[0].value and "\\<script\\>" not in at.info[0].value
    assert any("\\<b\\>sharp\\<\\/b\\>" in m.value and "\\(javascript" in m.value for m in at.markdown)
    at.button(key="train_done").click().run()
    # The screen draws every text as text (textContent), never as HTML or Markdown.
    data = screen_data(at)
    assert data["who"] == f"pilot: {name}" and data["question"] == "Is it <b>sharp</b>? [x](javascript:alert(1))"


def test_invite_only_study_offers_no_registration(store, tmp_path):
    make_study(store, tmp_path / "media", allow_self_register=False)
    at = rate_page()
    assert [b.label for b in at.button] == ["Join"]


def test_revoked_rater_is_signed_out(store, tmp_path):
    make_study(store, tmp_path / "media")
    token = invite(store)
    at = rate_page(token)
    assert len(vote_levels(at)) == 5
    with store.session() as s:
        set_rater_access(s, get_study(s, "pilot"), "alice", revoked=True)
    send_vote(at, 5)
    assert "Unknown or revoked token." in [e.value for e in at.error]
    assert screen_data(at) is None and ratings(store) == []


def test_sign_out_from_the_screen(store, tmp_path):
    make_study(store, tmp_path / "media")
    at = rate_page(invite(store))
    screen_event(at, "signout")
    assert screen_data(at) is None and [b.label for b in at.button] == ["Join"]


def admin_page(secret=SECRET):
    at = AppTest.from_file(ADMIN, default_timeout=60).run()
    at.text_input(key="admin_secret").input(secret)
    return at.button(key="FormSubmitter:admin_login-Sign in").click().run()


def admin_tab(at, tab, study="pilot"):
    """Open ``study``'s ``tab`` on the admin page (tabs run lazily: only the open one is drawn)."""
    at.selectbox(key="admin_study").set_value(study).run()
    at.session_state["admin_tab"] = tab
    return at.run()


def test_admin_sets_up_a_study_invites_and_exports(store, tmp_path):
    media = tmp_path / "new"
    make_study(store, tmp_path / "media", n_test=3, n_gold=1, gold_every=1)
    from fixtures_ui import write_images

    write_images(media, ["x.png", "y.png"])
    at = admin_page()
    assert [t.label for t in at.tabs] == ["Overview", "New study"]
    at.session_state["admin_home_tab"] = "New study"
    at.run()
    at.text_input(key="new_name").input("<i>fresh</i>")
    at.text_input(key="new_media").input(str(media))
    at.selectbox(key="new_task").set_value("custom")
    at.text_input(key="new_question").input("How **sharp**?")
    at.text_input(key="new_label_0").input("Superb")
    at.number_input(key="new_target").set_value(7)
    at.button(key="FormSubmitter:new_study-Create study").click().run()
    assert not at.exception and "created with 2 items" in at.success[0].value
    with store.session() as s:
        fresh = get_study(s, "<i>fresh</i>")
        assert (fresh.target_votes, fresh.question, fresh.task) == (7, "How **sharp**?", "custom")

    admin_tab(at, "Tokens")
    at.text_input(key="invite_name").input("bob")
    at.button(key="FormSubmitter:invite-Create invite token").click().run()
    token = at.code[0].value
    with store.session() as s:
        assert rater_for_token(s, token).name == "bob"

    rater_at = rate_page(token)
    rater_at.button(key="train_done").click().run()  # no training examples: the scale, then rating
    for level in (5, 4, 2):
        send_vote(rater_at, level)
    admin_tab(at, "Export")
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download raw votes (CSV)", "Download per-item aggregates (CSV)"]
    admin_tab(at, "Results")
    assert len(at.get("image")) == 3  # the MOS histogram, the worst and the best items
    admin_tab(at, "Raters")
    stats = next(d.value for d in at.dataframe if "longest_run" in d.value.columns)
    assert stats.set_index("rater").loc["bob", "votes"] == 3
    assert "Screening" in [h.value for h in at.subheader]  # toolkit.analysis's rater screening

    admin_tab(at, "Tokens")
    at.selectbox(key="token_rater").set_value("bob")
    at.button(key="token_revoke").click().run()
    with store.session() as s:
        assert s.scalar(select(Rater.revoked).where(Rater.name == "bob"))
    assert "Unknown or revoked token." in [e.value for e in rate_page(token).error]


def test_app_entry_navigates_to_admin(store, tmp_path):
    make_study(store, tmp_path / "media")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and [b.label for b in at.button] == ["Join"]
    at.switch_page("views/admin.py").run()
    assert at.text_input(key="admin_secret") is not None


def test_qalign_ui_prepares_an_empty_database(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from toolkit.cli import app
    from toolkit.store import list_studies
    from toolkit.store.admin_secret import check_admin_secret

    monkeypatch.delenv("QALIGN_ADMIN_SECRET", raising=False)
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = CliRunner().invoke(app, ["ui", "--prepare-only", "--db", url])
    assert result.exit_code == 0, result.output
    assert "(migrated)" in result.output and "sample-study" in result.output
    secret = result.output.split("admin secret (shown once, stored hashed):")[1].split()[0]
    store = Store(url)
    with store.session() as s:
        assert [st.name for st in list_studies(s)] == ["sample-study"]
        assert check_admin_secret(s, secret)
    store.dispose()
    again = CliRunner().invoke(app, ["ui", "--prepare-only", "--db", url])
    assert again.exit_code == 0 and "admin secret" not in again.output and "sample" not in again.output


def test_duplicate_rater_names_show_one_line(store, tmp_path):
    make_study(store, tmp_path / "media", allow_self_register=True)
    invite(store, "alice")
    at = rate_page()
    at.text_input(key="register_name").input("alice")
    at.button(key="FormSubmitter:register-Register").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["a rater named 'alice' already exists in study 'pilot'"]
    admin = admin_tab(admin_page(), "Tokens")
    admin.text_input(key="invite_name").input("alice")
    admin.button(key="FormSubmitter:invite-Create invite token").click().run()
    assert not admin.exception
    assert [e.value for e in admin.error] == ["a rater named 'alice' already exists in study 'pilot'"]


@pytest.mark.parametrize("page", [RATE, ADMIN, str(ROOT / "app.py")])
def test_an_unexpected_error_shows_a_short_message_and_no_traceback(store, tmp_path, monkeypatch, capfd, caplog, page):
    import annotation_ui.admin
    import annotation_ui.rate
    from annotation_ui.guard import FAILURE_MESSAGE

    make_study(store, tmp_path / "media", allow_self_register=True)

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom at /srv/secret/path.py with SELECT * FROM raters")

    monkeypatch.setattr(annotation_ui.rate, "list_studies", broken)
    monkeypatch.setattr(annotation_ui.admin, "admin_sign_in", broken)
    at = AppTest.from_file(page, default_timeout=60).run()
    if page == ADMIN:
        at.text_input(key="admin_secret").input("anything")
        at.button(key="FormSubmitter:admin_login-Sign in").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [FAILURE_MESSAGE]
    shown = texts(at) + " ".join(str(e.value) for e in at.get("code"))
    assert "boom" not in shown and "Traceback" not in shown and "/srv/secret" not in shown
    logged = caplog.text + capfd.readouterr().err  # streamlit's loggers may write to stderr themselves
    assert "boom at /srv/secret/path.py" in logged and "Traceback" in logged


def test_the_app_is_served_without_error_details():
    from annotation_ui.launch import streamlit_command

    command = streamlit_command()
    assert command[command.index("--client.showErrorDetails") + 1] == "none"


def test_the_app_runs_without_a_full_collection_after_every_run(monkeypatch):
    """Streamlit's post-run gc.collect() was most of a vote's server CPU; both ways of starting the app turn it off."""
    import tomllib

    from annotation_ui.launch import streamlit_command

    monkeypatch.delenv("STREAMLIT_RUNNER_POST_SCRIPT_GC", raising=False)

    command = streamlit_command()
    assert command[command.index("--runner.postScriptGC") + 1] == "false"
    config = tomllib.loads((ROOT.parent / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_a_deployments_own_collection_setting_wins(monkeypatch):
    from annotation_ui.launch import streamlit_command

    monkeypatch.setenv("STREAMLIT_RUNNER_POST_SCRIPT_GC", "true")
    assert "--runner.postScriptGC" not in streamlit_command()


def test_the_app_offers_raters_no_theme_or_menu():
    """One fixed look for every rater: the light theme (under the rater pages' grey), no settings menu."""
    import tomllib

    from annotation_ui.launch import streamlit_command

    command = streamlit_command()
    assert command[command.index("--theme.base") + 1] == "light"
    assert command[command.index("--client.toolbarMode") + 1] == "minimal"
    config = tomllib.loads((ROOT.parent / ".streamlit" / "config.toml").read_text())
    assert config["theme"]["base"] == "light" and config["client"]["toolbarMode"] == "minimal"


def test_invite_link_token_leaves_the_address_bar_and_the_session_keeps_it(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3)
    token = invite(store)
    at = rate_page(token)
    assert "token" not in at.query_params
    assert len(vote_levels(at)) == 5
    send_vote(at, 4)  # later runs of the same session: still signed in
    assert "token" not in at.query_params and len(vote_levels(at)) == 5
    assert [r.level for r in ratings(store)] == [4]


# --------------------------------------------------------------------------- the study's steps (P.808 order)


def protocol_study(store, media, **protocol):
    """A study with instructions, consent, a screen requirement, a two-question quiz, a trap and a
    completion code (Prolific workers admitted)."""
    from toolkit.store.protocol import add_trap
    from toolkit.store.study_settings import configure_protocol, set_study_texts

    make_study(store, media, n_test=4, n_gold=2, gold_every=0)
    settings = dict(
        min_viewport_width=1200,
        min_viewport_height=700,
        quiz_items=2,
        quiz_pass=1,
        trap_every=2,
        completion_code="C0MPL3TE",
        crowd_platforms=("prolific", "mturk"),
    )
    settings.update(protocol)
    with store.session() as s:
        study = get_study(s, "pilot")
        set_study_texts(s, study, instructions="Rate **sharpness** only.", consent="Your votes are kept *anonymous*.")
        configure_protocol(s, study, **settings)
        add_trap(s, study, "test_00.png", 2)


def test_instructions_consent_screen_check_quiz_traps_then_completion(store, tmp_path):
    from toolkit.store.schema import TrapAnswer

    protocol_study(store, tmp_path / "media")
    at = rate_page(invite(store, trained=False))
    assert at.title[0].value == "Instructions" and "**sharpness**" in texts(at)
    assert "Each image is shown on a grey background at its true size" in texts(at)
    at.button(key="instructions_done").click().run()
    assert at.title[0].value == "Consent" and "*anonymous*" in texts(at)
    at.button(key="consent_yes").click().run()
    assert at.title[0].value == "Screen check"
    send_measurement(at, width=1024, height=600)  # too small: the rater is told why
    assert "did not pass" in texts(at) and "1024x600" in texts(at)
    send_measurement(at, width=1366, height=768)
    assert "Your screen suits this study" in texts(at)
    at.button(key="train_done").click().run()  # no training examples: how to answer, then the quiz
    data = screen_data(at)
    assert data["caption"] == "Qualification: question 1 of 2."
    send_vote(at, 5)  # gold items expect Excellent (5), tolerance 1
    assert "Right" in screen_message(at)
    send_vote(at, 5)
    assert ratings(store) == []  # quiz answers are not votes
    assert "passed the qualification" in screen_message(at)
    # Rating: after two test votes the trap, which tells the rater what to press; it is no vote.
    levels = []
    while (data := screen_data(at)) is not None:
        if data["trap"]:
            assert "Poor" in data["trap"]
            send_vote(at, 2)
        else:
            levels.append(4)
            send_vote(at, 4)
    assert [r.level for r in ratings(store)] == levels and len(levels) == 4
    with store.session() as s:
        assert [(a.level, a.passed) for a in s.scalars(select(TrapAnswer))] == [(2, True)]
    assert at.title[0].value == "Thank you!" and at.code[0].value == "C0MPL3TE"


def test_a_failed_quiz_ends_the_study_for_the_rater(store, tmp_path):
    protocol_study(store, tmp_path / "media", quiz_pass=2, min_viewport_width=0, min_viewport_height=0)
    with store.session() as s:
        from toolkit.store.study_settings import set_study_texts

        set_study_texts(s, get_study(s, "pilot"), instructions="", consent="")
    at = rate_page(invite(store))
    send_vote(at, 1)
    send_vote(at, 1)
    assert "not passed" in " ".join(e.value for e in at.error) and screen_data(at) is None
    assert ratings(store) == []


def test_declining_consent_records_nothing_and_signs_out(store, tmp_path):
    protocol_study(store, tmp_path / "media")
    at = rate_page(invite(store))
    at.button(key="instructions_done").click().run()
    at.button(key="consent_no").click().run()
    assert "did not agree" in texts(at) and [b.label for b in at.button] == ["Join"]
    with store.session() as s:
        assert s.scalar(select(Rater.consent_given_at)) is None


def prolific_page(params):
    at = AppTest.from_file(RATE, default_timeout=60)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def test_prolific_link_creates_then_resumes_the_rater_and_leaves_the_address_bar(store, tmp_path):
    protocol_study(store, tmp_path / "media")
    link = {"PROLIFIC_PID": "5f0c1a2b3c", "STUDY_ID": "s-1", "SESSION_ID": "x-9", "study": "pilot"}
    at = prolific_page(link)
    assert not at.exception and at.title[0].value == "Instructions"
    assert not set(link) & set(at.query_params)  # the worker's ids leave the address bar
    at.button(key="instructions_done").click().run()
    again = prolific_page(link)  # the link opened again (another tab, later): the same rater
    assert again.title[0].value == "Consent"
    with store.session() as s:
        raters = s.execute(select(Rater.platform, Rater.external_id, Rater.external_session)).all()
    assert raters == [("prolific", "5f0c1a2b3c", "x-9")]


def test_mturk_preview_shows_the_task_and_records_nothing(store, tmp_path):
    protocol_study(store, tmp_path / "media")
    at = prolific_page({"workerId": "A1", "assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "H1"})
    assert "preview" in texts(at) and screen_data(at) is None
    with store.session() as s:
        assert s.scalar(select(Rater)) is None


def test_a_crowd_link_to_a_study_without_that_platform_is_refused_in_one_line(store, tmp_path):
    protocol_study(store, tmp_path / "media", crowd_platforms=("mturk",))
    at = prolific_page({"PROLIFIC_PID": "abc", "STUDY_ID": "s", "SESSION_ID": "t"})
    assert not at.exception
    assert [e.value for e in at.error] == ["this prolific link does not lead to one study that takes prolific workers"]


def test_mturk_worker_finishes_with_the_submit_form_back_to_mturk(store, tmp_path):
    import json

    make_study(store, tmp_path / "media", n_test=2)
    from toolkit.store.study_settings import configure_protocol

    with store.session() as s:
        configure_protocol(s, get_study(s, "pilot"), crowd_platforms=("mturk",), completion_code="MT-OK")
    link = {"workerId": "A2XYZ", "assignmentId": "3ABC", "hitId": "H7"}
    at = prolific_page({**link, "turkSubmitTo": "https://workersandbox.mturk.com"})
    at.button(key="train_done").click().run()
    send_vote(at, 3)
    send_vote(at, 4)
    assert at.title[0].value == "Thank you!" and at.code[0].value == "MT-OK"
    [tool] = [e for e in at.get("bidi_component") if e.proto.id.endswith("-page_tool")]
    form = json.loads(tool.proto.json)
    # The HIT's own submit address (here MTurk's sandbox), kept after the parameters left the address bar.
    assert form["tool"] == "post" and form["url"] == "https://workersandbox.mturk.com/mturk/externalSubmit"
    assert form["fields"] == {"assignmentId": "3ABC", "completionCode": "MT-OK"}


def test_the_screen_follows_the_study_presentation_settings(store, tmp_path):
    from toolkit.store.study_settings import configure_protocol

    make_study(store, tmp_path / "media", n_test=2)
    with store.session() as s:
        configure_protocol(s, get_study(s, "pilot"), video_replay="none", audio="sound", oversize="refuse")
    data = screen_data(rate_page(invite(store)))
    assert (data["replay"], data["audio"], data["oversize"]) == ("none", "sound", "refuse")
