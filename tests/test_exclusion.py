"""Automatic exclusion rules: flags with reasons, votes kept but left out of every label, and the
administrator's override respected by later runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from toolkit.errors import InputError
from toolkit.store import Store, add_rater, get_study, load_snapshot, rater_for_token
from toolkit.store.assignment import next_step, submit_answer
from toolkit.store.exclusion import list_flags, longest_run, override_exclusion, run_exclusion
from toolkit.store.protocol import add_trap
from toolkit.store.raters import set_rater_excluded
from toolkit.store.schema import Rating, utcnow
from toolkit.store.study_settings import configure_protocol

from fixtures_ui import make_study, sqlite_url


@pytest.fixture()
def store(tmp_path):
    store = Store(sqlite_url(tmp_path))
    yield store
    store.dispose()


def _rate(store, token, levels, seconds=3.0, trap_level=None):
    """Answer what the rater is served: the next of ``levels`` for items, ``trap_level`` (default:
    as instructed) for traps; each answer ``seconds`` after the screen was shown."""
    now = utcnow()
    levels = list(levels)
    while levels:
        with store.session() as s:
            rater = rater_for_token(s, token)
            step = next_step(s, rater, now)
            if step.status != "rate":
                return
            now += timedelta(seconds=seconds)
            if step.item.role == "trap":
                level = step.item.trap.instructed_level if trap_level is None else trap_level
            else:
                level = levels.pop(0)
            submit_answer(s, rater, step.item, level, now)


def test_longest_run():
    assert longest_run([]) == 0
    assert longest_run([3, 3, 1, 1, 1, 2]) == 3
    assert longest_run([5]) == 1


def test_rules_flag_and_exclude_and_the_votes_stay(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=12, n_gold=2, target_votes=5, gold_every=5)
    with store.session() as s:
        study = get_study(s, "pilot")
        tokens = {name: add_rater(s, study, name)[1] for name in ("careful", "flat", "fast")}
    _rate(store, tokens["careful"], [1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 5, 5], seconds=4)
    _rate(store, tokens["flat"], [3] * 12, seconds=4)
    _rate(store, tokens["fast"], [1, 2, 3, 4, 5, 4, 3, 2, 1, 2, 5, 5], seconds=0.3)
    with store.session() as s:
        study = get_study(s, "pilot")
        configure_protocol(s, study, max_same_run=8, max_level_share=0.8, min_median_ms=1000, rule_min_votes=10)
        screening = {r.rater: r for r in run_exclusion(s, study)}
        assert screening["careful"].flags == [] and not screening["careful"].excluded
        assert {f.rule for f in screening["flat"].flags} == {"same_run", "level_share"}
        assert screening["flat"].excluded
        fast = screening["fast"].flags
        assert [f.rule for f in fast] == ["too_fast"] and fast[0].value == pytest.approx(300)
        assert "median response time 300 ms" in fast[0].reason
        rows = list_flags(s, study)
        assert {(r.rater, r.rule) for r in rows} == {
            ("flat", "same_run"),
            ("flat", "level_share"),
            ("fast", "too_fast"),
        }
        assert s.scalar(select(func.count()).select_from(Rating)) == 3 * 12  # every vote kept (10 test + 2 gold each)
    snapshot = load_snapshot("pilot", store.url)
    assert snapshot.excluded_raters == ("fast", "flat")
    assert set(snapshot.votes["rater"]) == {"careful"}


def test_gold_and_trap_rules(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=6, n_gold=2, target_votes=5, gold_every=3)
    with store.session() as s:
        study = get_study(s, "pilot")
        add_trap(s, study, "test_00.png", 2)
        add_trap(s, study, "test_01.png", 4)
        configure_protocol(s, study, trap_every=2, max_failed_traps=2, min_gold_accuracy=0.5)
        good, bad = add_rater(s, study, "good")[1], add_rater(s, study, "bad")[1]
    _rate(store, good, [5] * 6)  # gold items expect 5
    _rate(store, bad, [1] * 6, trap_level=3)
    with store.session() as s:
        study = get_study(s, "pilot")
        # The rules ran after every answer: no explicit run needed.
        assert not rater_for_token(s, good).excluded and rater_for_token(s, bad).excluded
        reasons = {r.rule: r for r in list_flags(s, study) if r.rater == "bad"}
        assert reasons["failed_traps"].value == 2 and "failed 2 trapping questions" in reasons["failed_traps"].reason
        assert reasons["gold_accuracy"].value == 0.0


def test_override_wins_over_the_rules_until_cleared(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=10, target_votes=5)
    with store.session() as s:
        token = add_rater(s, get_study(s, "pilot"), "flat")[1]
    _rate(store, token, [3] * 10)
    with store.session() as s:
        study = get_study(s, "pilot")
        configure_protocol(s, study, max_level_share=0.9)
        assert run_exclusion(s, study)[0].excluded
        with pytest.raises(InputError, match="needs a reason"):
            override_exclusion(s, study, "flat", "keep")
        override_exclusion(s, study, "flat", "keep", reason="lab rater, images were all similar", by="admin")
        again = run_exclusion(s, study)[0]
        assert not again.excluded and again.override == "keep" and again.flags  # flagged, but kept
        row = list_flags(s, study)[0]
        assert row.override == "keep" and row.override_by == "admin" and row.override_at is not None
        override_exclusion(s, study, "flat", None)
        assert rater_for_token(s, token).excluded  # the rules decide again
        # Excluding or restoring on the raters page is an override too.
        set_rater_excluded(s, study, "flat", False, reason="spoke to the rater")
        assert not run_exclusion(s, study)[0].excluded
        configure_protocol(s, study, max_level_share=None)
        override_exclusion(s, study, "flat", None)
        assert not rater_for_token(s, token).excluded and list_flags(s, study) == []


def test_vote_pattern_rules_wait_for_enough_votes(store, tmp_path):
    make_study(store, tmp_path / "media", n_test=4, target_votes=5)
    with store.session() as s:
        token = add_rater(s, get_study(s, "pilot"), "new")[1]
        configure_protocol(s, get_study(s, "pilot"), max_same_run=3, rule_min_votes=10)
    _rate(store, token, [2, 2, 2, 2])
    with store.session() as s:
        assert not rater_for_token(s, token).excluded
