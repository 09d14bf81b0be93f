"""Crowd workers: joining from Prolific and MTurk links (race-safe), completion codes and URLs,
and the per-rater payment export (library and `qalign study export --raters`)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError, StoreError
from toolkit.store import Store, get_study, rater_for_token
from toolkit.store.assignment import next_step, submit_answer
from toolkit.store.crowd import completion, crowd_join
from toolkit.store.payments import PAYMENT_COLUMNS, rater_payments
from toolkit.store.protocol import add_trap
from toolkit.store.schema import Rater, utcnow
from toolkit.store.study_settings import configure_protocol

from fixtures_ui import make_study, sqlite_url

PROLIFIC = {"PROLIFIC_PID": "5f1a2b3c4d5e6f7a8b9c0d1e", "STUDY_ID": "s-1", "SESSION_ID": "sess-1"}
MTURK = {"workerId": "A1B2C3D4E5", "assignmentId": "3XYZ", "hitId": "HIT9", "turkSubmitTo": "https://www.mturk.com"}


@pytest.fixture()
def crowd_store(tmp_path):
    url = sqlite_url(tmp_path)
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=4, target_votes=3)
    with store.session() as s:
        configure_protocol(s, get_study(s, "pilot"), crowd_platforms=("prolific", "mturk"), completion_code="C0DE42")
    yield store
    store.dispose()


def _finish(store, token, level=3):
    now = utcnow()
    with store.session() as s:
        rater = rater_for_token(s, token)
        while (step := next_step(s, rater, now)).status == "rate":
            now += timedelta(seconds=5)
            submit_answer(s, rater, step.item, step.item.trap.instructed_level if step.item.trap else level, now)


def test_prolific_worker_joins_resumes_and_completes(crowd_store):
    with crowd_store.session() as s:
        study = get_study(s, "pilot")
        first = crowd_join(s, study, PROLIFIC)
        assert not first.preview and not first.resumed and first.rater.name == "prolific:" + PROLIFIC["PROLIFIC_PID"]
        token = first.token
    with crowd_store.session() as s:
        again = crowd_join(s, get_study(s, "pilot"), {**PROLIFIC, "SESSION_ID": "sess-2"})
        assert again.resumed and again.token == token and again.rater.external_session == "sess-2"
        with pytest.raises(StoreError, match="has not finished"):
            completion(s, again.rater)
    _finish(crowd_store, token)
    with crowd_store.session() as s:
        done = completion(s, rater_for_token(s, token))
        assert done.code == "C0DE42"
        assert done.redirect_url == "https://app.prolific.com/submissions/complete?cc=C0DE42"


def test_mturk_preview_records_nothing_and_submission_posts_the_assignment(crowd_store):
    with crowd_store.session() as s:
        study = get_study(s, "pilot")
        preview = crowd_join(s, study, {"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "hitId": "HIT9"})
        assert preview.preview and preview.token is None
        assert s.scalar(select(func.count()).select_from(Rater)) == 0
        token = crowd_join(s, study, MTURK).token
    _finish(crowd_store, token)
    with crowd_store.session() as s:
        configure_protocol(
            s, get_study(s, "pilot"), mturk_submit_url="https://workersandbox.mturk.com/mturk/externalSubmit"
        )
        done = completion(s, rater_for_token(s, token))
        assert done.form_action == "https://workersandbox.mturk.com/mturk/externalSubmit"
        assert done.form_fields == {"assignmentId": "3XYZ", "completionCode": "C0DE42"}
        # The HIT's own turkSubmitTo (production here) wins over the study's setting ...
        production = completion(
            s, rater_for_token(s, token), params={**MTURK, "turkSubmitTo": "https://www.mturk.com/"}
        )
        assert production.form_action == "https://www.mturk.com/mturk/externalSubmit"
        # ... unless it names another host: a forged link cannot send the completion code elsewhere.
        forged = completion(s, rater_for_token(s, token), params={**MTURK, "turkSubmitTo": "https://evil.example"})
        assert forged.form_action == "https://workersandbox.mturk.com/mturk/externalSubmit"


def test_joining_is_refused_where_the_study_does_not_allow_it(crowd_store):
    with crowd_store.session() as s:
        study = get_study(s, "pilot")
        configure_protocol(s, study, crowd_platforms=("mturk",))
        with pytest.raises(StoreError, match="does not take workers from prolific"):
            crowd_join(s, study, PROLIFIC)
        with pytest.raises(InputError, match="no Prolific"):
            crowd_join(s, study, {"foo": "bar"})
        with pytest.raises(InputError, match="workerId parameter is not a platform id"):
            crowd_join(s, study, {**MTURK, "workerId": "<script>"})
        with pytest.raises(InputError, match="missing its assignmentId"):
            crowd_join(s, study, {"workerId": "A1"})


def test_simultaneous_joins_make_one_rater(crowd_store):
    url = crowd_store.url
    start = threading.Barrier(8)
    tokens: list[str | None] = []
    errors: list[str] = []

    def join() -> None:
        store = Store(url)  # its own engine, like another app server
        try:
            start.wait()
            with store.session() as s:
                tokens.append(crowd_join(s, get_study(s, "pilot"), PROLIFIC).token)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            store.dispose()

    threads = [threading.Thread(target=join) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(set(tokens)) == 1 and len(tokens) == 8
    with crowd_store.session() as s:
        assert s.scalar(select(func.count()).select_from(Rater)) == 1


def test_payment_export_library_and_cli(crowd_store, tmp_path):
    with crowd_store.session() as s:
        study = get_study(s, "pilot")
        add_trap(s, study, "test_00.png", 1)
        configure_protocol(s, study, trap_every=2, max_items_per_rater=3)
        done = crowd_join(s, study, PROLIFIC).token
        crowd_join(s, study, MTURK)  # joined, never rated
    _finish(crowd_store, done)
    with crowd_store.session() as s:
        rows = {p.rater: p for p in rater_payments(s, get_study(s, "pilot"))}
    paid = rows["prolific:" + PROLIFIC["PROLIFIC_PID"]]
    assert (paid.platform, paid.external_id, paid.external_session) == ("prolific", PROLIFIC["PROLIFIC_PID"], "sess-1")
    assert (paid.votes, paid.traps_passed, paid.traps_failed) == (3, 1, 0)
    assert paid.completed and paid.completion_code == "C0DE42"
    assert paid.time_on_task_s == pytest.approx(20.0)  # four answers, five seconds apart
    idle = rows["mturk:" + MTURK["workerId"]]
    assert (idle.votes, idle.completed, idle.completion_code, idle.time_on_task_s) == (0, False, "", 0.0)

    out = tmp_path / "raters.csv"
    result = CliRunner().invoke(
        app, ["study", "export", "pilot", "--raters", "--out", str(out), "--db", crowd_store.url]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert tuple(table.columns) == PAYMENT_COLUMNS
    assert table.set_index("rater").loc[paid.rater, "completion_code"] == "C0DE42"
    both = CliRunner().invoke(
        app, ["study", "export", "pilot", "--raters", "--aggregate", "--out", str(out), "--db", crowd_store.url]
    )
    assert isinstance(both.exception, InputError) and "not both" in str(both.exception)


def test_configure_command_sets_the_protocol(crowd_store, tmp_path):
    instructions = tmp_path / "instructions.md"
    instructions.write_text("# Rate the images\n", encoding="utf-8")
    args = ["study", "configure", "pilot", "--instructions", str(instructions), "--min-viewport", "1280x720"]
    args += ["--trap-every", "5", "--max-same-run", "8", "--crowd", "prolific", "--admin-secret", "per-study-secret"]
    result = CliRunner().invoke(app, [*args, "--db", crowd_store.url])
    assert result.exit_code == 0, result.output
    with crowd_store.session() as s:
        study = get_study(s, "pilot")
        from toolkit.store.study_settings import study_protocol

        protocol = study_protocol(study)
        assert (protocol.min_viewport_width, protocol.min_viewport_height, protocol.trap_every) == (1280, 720, 5)
        assert protocol.max_same_run == 8 and protocol.crowd_platforms == ("prolific",)
        assert study.instructions == "# Rate the images" and study.admin_secret_hash
    bad = CliRunner().invoke(app, ["study", "configure", "pilot", "--min-viewport", "wide", "--db", crowd_store.url])
    assert isinstance(bad.exception, InputError) and "WIDTHxHEIGHT" in str(bad.exception)
