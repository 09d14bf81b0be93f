"""The annotation app's pages and flows through streamlit.testing (no browser)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from toolkit.store import Store, add_rater, get_study, rater_for_token
from toolkit.store.admin_secret import set_admin_secret
from toolkit.store.raters import set_rater_access
from toolkit.store.schema import Assignment, Item, Rater, Rating, utcnow

from fixtures_ui import make_study, sqlite_url

ROOT = Path(__file__).resolve().parents[1] / "annotation_ui"
RATE = str(ROOT / "views" / "rate.py")
ADMIN = str(ROOT / "views" / "admin.py")
SECRET = "test-admin-secret"


@pytest.fixture()
def store(tmp_path, monkeypatch):
    url = sqlite_url(tmp_path)
    monkeypatch.setenv("QALIGN_DB_URL", url)
    monkeypatch.setenv("QALIGN_UI_SAMPLE", "0")
    monkeypatch.delenv("QALIGN_ADMIN_SECRET", raising=False)
    s = Store(url)
    with s.session() as session:
        set_admin_secret(session, SECRET)
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


def vote_buttons(at):
    return [b for b in at.button if b.key and b.key.startswith("vote-")]


def texts(at):
    return " ".join(
        str(e.value) for kind in ("markdown", "caption", "info", "success", "warning", "error") for e in at.get(kind)
    )


def test_unknown_token_is_refused_and_nothing_is_shown(store, tmp_path):
    make_study(store, tmp_path / "media")
    at = rate_page("no-such-token")
    assert not at.exception
    assert [e.value for e in at.error] == ["Unknown or revoked token."]
    assert vote_buttons(at) == [] and not at.get("image")
    at = rate_page()
    at.text_input(key="join_token").input("still-wrong")
    at.button(key="FormSubmitter:join-Join").click().run()
    assert [e.value for e in at.error] == ["Unknown or revoked token."]
    assert vote_buttons(at) == []


def test_join_training_then_rate_with_buttons_and_undo(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3, n_training=3)
    token = invite(store, trained=False)
    at = rate_page()
    at.text_input(key="join_token").input(token)
    at.button(key="FormSubmitter:join-Join").click().run()
    assert "token" not in at.query_params  # held by the session, not shown in the address bar
    shown = []
    while any(b.key == "train_next" for b in at.button):
        shown.append(at.info[-1].value)
        at.button(key="train_next").click().run()
    assert [s.split("**")[1] for s in shown] == ["Excellent", "Fair", "Bad"]
    at.button(key="train_done").click().run()
    assert [b.label for b in vote_buttons(at)] == ["Excellent (5)", "Good (4)", "Fair (3)", "Poor (2)", "Bad (1)"]
    assert at.button(key="undo").disabled
    at.button(key="vote-2").click().run()
    assert [(r.name, r.level) for r in ratings(store)] == [("alice", 2)]
    assert "1 rated" in at.get("progress")[0].proto.text
    at.button(key="undo").click().run()
    assert ratings(store) == []
    assert "taken back" in texts(at)
    at.button(key="vote-4").click().run()
    assert [r.level for r in ratings(store)] == [4]


def test_resume_after_reload_shows_the_same_item(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4)
    token = invite(store)
    first = rate_page(token)
    first.button(key="vote-5").click().run()
    with store.session() as s:
        pending = s.scalar(select(Assignment.item_id))
    again = rate_page(token)  # a new browser session, same invite link
    assert "1 rated" in again.get("progress")[0].proto.text
    with store.session() as s:
        assert s.scalar(select(Assignment.item_id)) == pending
    again.button(key="vote-1").click().run()
    assert [r.level for r in ratings(store)] == [5, 1]


def test_gold_feedback_and_session_break(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4, n_gold=1, gold_every=2, items_per_session=3)
    token = invite(store)
    at = rate_page(token)
    at.button(key="vote-3").click().run()
    at.button(key="vote-3").click().run()
    at.button(key="vote-1").click().run()  # the gold item (expected 5, tolerance 1)
    assert [r.path.startswith("gold") for r in ratings(store)] == [False, False, True]
    assert any("expected answer was **Excellent**" in w.value for w in at.warning)
    assert "Session complete" in texts(at) and vote_buttons(at) == []
    at.button(key="next_session").click().run()
    assert len(vote_buttons(at)) == 5


def test_video_buttons_open_only_after_the_clip_has_played(store, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    import shutil

    from toolkit.store.setup import SAMPLE_MEDIA_ROOT, StudySetup, setup_study

    shutil.copy(SAMPLE_MEDIA_ROOT / "clip.mp4", media / "clip.mp4")
    with store.session() as s:
        setup_study(s, StudySetup(name="pilot", media_root=media, gold_every=0))
    token = invite(store)
    at = rate_page(token)
    assert all(b.disabled for b in vote_buttons(at))
    assert "played to the end" in texts(at)
    # The server measures from when it first showed the clip: once its length has passed, voting opens.
    with store.session() as s:
        s.execute(update(Assignment).values(shown_at=utcnow() - timedelta(seconds=5)))
    at.button(key="video_check").click().run()
    assert not any(b.disabled for b in vote_buttons(at))
    at.button(key="vote-4").click().run()
    assert [r.level for r in ratings(store)] == [4]


def test_missing_media_is_skipped_with_a_message(store, tmp_path):
    media = tmp_path / "media"
    make_study(store, media, n_test=3)
    token = invite(store)
    at = rate_page(token)
    with store.session() as s:
        path = s.scalar(select(Item.path).join(Assignment, Assignment.item_id == Item.id))
    (media / path).unlink()
    at = rate_page(token)
    assert any("could not be loaded" in w.value for w in at.warning)
    assert len(vote_buttons(at)) == 5
    with store.session() as s:
        assert s.scalar(select(Item.missing_since).where(Item.path == path)) is not None


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
    caption = at.caption[0].value
    assert "\\<script\\>" in caption and "<script>" not in caption
    assert "Your personal token" in at.info[0].value
    while any(b.key in ("train_next", "train_done") for b in at.button):
        at.button(key="train_next" if any(b.key == "train_next" for b in at.button) else "train_done").click().run()
    assert any("\\<b\\>sharp\\<\\/b\\>" in m.value and "\\(javascript" in m.value for m in at.markdown)


def test_invite_only_study_offers_no_registration(store, tmp_path):
    make_study(store, tmp_path / "media", allow_self_register=False)
    at = rate_page()
    assert [b.label for b in at.button] == ["Join"]


def test_revoked_rater_is_signed_out(store, tmp_path):
    make_study(store, tmp_path / "media")
    token = invite(store)
    at = rate_page(token)
    assert len(vote_buttons(at)) == 5
    with store.session() as s:
        set_rater_access(s, get_study(s, "pilot"), "alice", revoked=True)
    at.button(key="vote-5").click().run()
    assert "Unknown or revoked token." in [e.value for e in at.error]
    assert vote_buttons(at) == [] and ratings(store) == []


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
        rater_at.button(key=f"vote-{level}").click().run()
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


def test_invite_link_token_leaves_the_address_bar_and_the_session_keeps_it(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=3)
    token = invite(store)
    at = rate_page(token)
    assert "token" not in at.query_params
    assert len(vote_buttons(at)) == 5
    at.button(key="vote-4").click().run()  # later runs of the same session: still signed in
    assert "token" not in at.query_params and len(vote_buttons(at)) == 5
    assert [r.level for r in ratings(store)] == [4]
