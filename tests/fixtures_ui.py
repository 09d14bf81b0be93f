"""Shared helpers for the annotation app, assignment and PostgreSQL tests (imported, not a conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.store import Store, upgrade
from toolkit.store.schema import Study
from toolkit.store.setup import StudySetup, setup_study

PG_URL_ENV = "QALIGN_TEST_PG_URL"
PG_URL_FILE = Path(os.environ.get("QALIGN_TEST_PG_URL_FILE", "/tmp/qalign-test-pg.url"))


def pg_test_url() -> str | None:
    """The test server's URL from $QALIGN_TEST_PG_URL or the file `.ci/setup-services` writes."""
    url = os.environ.get(PG_URL_ENV)
    if not url and PG_URL_FILE.is_file():
        url = PG_URL_FILE.read_text().strip()
    return url or None


def fresh_pg_url() -> str:
    """A live, empty, migrated PostgreSQL test database, or skip the test."""
    url = pg_test_url()
    if not url:
        pytest.skip("no PostgreSQL test server (run .ci/setup-services or set QALIGN_TEST_PG_URL)")
    try:
        import psycopg  # noqa: F401
        from sqlalchemy import text

        from toolkit.store.engine import make_engine

        engine = make_engine(url)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "skip"
        pytest.skip(f"PostgreSQL test server not reachable: {exc}")
    with engine.begin() as conn:
        # A clean slate per test: other tests' tables and alembic_version go with the schema.
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    upgrade(url)
    return url


ADMIN_SECRET = "test-admin-secret"


def app_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A fresh SQLite study store that the app (AppTest) opens, without the sample study, with
    ``ADMIN_SECRET`` as its admin secret (the caller disposes of it)."""
    from toolkit.store.admin_secret import set_admin_secret

    url = sqlite_url(tmp_path)
    monkeypatch.setenv("QALIGN_DB_URL", url)
    monkeypatch.setenv("QALIGN_UI_SAMPLE", "0")
    monkeypatch.delenv("QALIGN_ADMIN_SECRET", raising=False)
    store = Store(url)
    with store.session() as session:
        set_admin_secret(session, ADMIN_SECRET)
    return store


def write_images(folder: Path, names: list[str], size: int = 16) -> None:
    """Small valid images, each with its own flat colour (so their hashes differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        shade = np.full((size, size, 3), (37 * k) % 256, dtype=np.uint8)
        Image.fromarray(shade).save(folder / name)


def make_study(
    store: Store,
    media: Path,
    n_test: int = 6,
    n_gold: int = 0,
    n_training: int = 0,
    name: str = "pilot",
    **options,
) -> Study:
    """A study over freshly written images: test_XX.png, gold_XX.png (expected level 5) and
    training_XX.png (levels 5, 3, 1, ...), created through the same call the admin page uses."""
    tests = [f"test_{k:02d}.png" for k in range(n_test)]
    golds = [f"gold_{k:02d}.png" for k in range(n_gold)]
    trains = [f"training_{k:02d}.png" for k in range(n_training)]
    write_images(media, tests + golds + trains)
    lines = ["path,role,expected_level,tolerance"]
    lines += [f"{p},test,," for p in tests]
    lines += [f"{p},gold,5,1" for p in golds]
    lines += [f"{p},training,{5 - 2 * (k % 3)},1" for k, p in enumerate(trains)]
    manifest = media / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    options.setdefault("gold_every", 0 if n_gold == 0 else 2)
    with store.session() as session:
        study, _ = setup_study(session, StudySetup(name=name, media_root=media, manifest=manifest, **options))
    return study


def simulate_raters(url: str, media: Path, n_raters: int = 24, votes_each: int = 5) -> dict:
    """``n_raters`` raters voting at once, each from two tabs that click the same button together.

    Returns what the threads saw and what the database holds, for the caller to compare.
    """
    import threading

    from sqlalchemy import func, select

    from toolkit.store import add_rater, get_study, rater_for_token
    from toolkit.store.assignment import next_step, submit_vote
    from toolkit.store.schema import Rating

    setup = Store(url)
    make_study(setup, media, n_test=n_raters + 6, target_votes=8, name="load")
    tokens = []
    with setup.session() as s:
        study = get_study(s, "load")
        tokens = [add_rater(s, study, f"rater{k:02d}")[1] for k in range(n_raters)]
    setup.dispose()

    start = threading.Barrier(2 * n_raters)
    lock = threading.Lock()
    created: list[tuple[str, int, int]] = []  # (token, item id, level) of each submission that stored a vote
    repeats: list[tuple[str, int, int]] = []
    errors: list[str] = []

    def tab(token: str, pair: threading.Barrier, level_offset: int) -> None:
        store = Store(url)  # its own engine and connections, like a separate app server process
        try:
            start.wait()
            for k in range(votes_each):
                with store.session() as s:
                    step = next_step(s, rater_for_token(s, token))
                pair.wait()  # both tabs have the page; now both click
                if step.status != "rate" or step.item is None:
                    continue
                level = 1 + (k + level_offset) % 5
                with store.session() as s:
                    result = submit_vote(s, rater_for_token(s, token), step.item.item_id, level)
                with lock:
                    (created if result.created else repeats).append((token, step.item.item_id, result.level))
                pair.wait()
        except Exception as exc:  # noqa: BLE001 - reported to the test
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
            pair.abort()
        finally:
            store.dispose()

    threads = []
    for token in tokens:
        pair = threading.Barrier(2)
        threads += [
            threading.Thread(target=tab, args=(token, pair, 0)),
            threading.Thread(target=tab, args=(token, pair, 0)),
        ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)

    check = Store(url)
    with check.session() as s:
        from toolkit.store.schema import Rater
        from toolkit.store.studies import hash_token

        rows = s.execute(
            select(Rater.token_hash, Rating.item_id, Rating.level).join(Rater, Rating.rater_id == Rater.id)
        ).all()
        duplicates = s.execute(
            select(Rating.rater_id, Rating.item_id, func.count())
            .group_by(Rating.rater_id, Rating.item_id)
            .having(func.count() > 1)
        ).all()
    check.dispose()
    by_hash = {hash_token(t): t for t in tokens}
    stored = [(by_hash[h], item, level) for h, item, level in rows]
    return dict(
        created=created,
        repeats=repeats,
        errors=errors,
        stored=stored,
        duplicates=duplicates,
        alive=[t for t in threads if t.is_alive()],
    )


# --------------------------------------------------------------------------- the rating screen under AppTest

SCREEN_SUFFIX = "-rating_screen"  # the element id of annotation_ui's rating screen component ends so


def screen_element(at):
    """The rating screen component of the last run, or None when the page shows none."""
    found = [e for e in at.get("bidi_component") if e.proto.id.endswith(SCREEN_SUFFIX)]
    return found[-1] if found else None


def screen_data(at) -> dict | None:
    """What the page gave the rating screen to draw (key, mode, labels, progress, message, ...)."""
    import json

    element = screen_element(at)
    return json.loads(element.proto.json) if element is not None else None


def component_event(at, element, name: str, payload: dict):
    """Send the event ``name`` with ``payload`` from a custom component, as the browser does, and
    run the page (the trigger travels like Streamlit's own: a JSON trigger value of the element)."""
    import json

    from streamlit.proto.WidgetStates_pb2 import WidgetState
    from streamlit.runtime.state.session_state import STREAMLIT_INTERNAL_KEY_PREFIX

    states = at._tree.get_widget_states()
    states.widgets.append(
        WidgetState(
            id=f"{STREAMLIT_INTERNAL_KEY_PREFIX}_{element.proto.id}__events",
            json_trigger_value=json.dumps([{"event": name, "value": payload}]),
        )
    )
    return at._run(states)


def screen_event(at, name: str, **values):
    """Send the event ``name`` from the rating screen, as the browser does after a click or key,
    and run the page. The event carries the key of the stimulus on screen unless ``key`` is given."""
    import json

    element = screen_element(at)
    assert element is not None, "the page shows no rating screen"
    return component_event(at, element, name, {"key": json.loads(element.proto.json)["key"], **values})


def send_measurement(at, width: int = 1366, height: int = 768, dpr: float = 1.0, zoom: float = 1.0):
    """The screen check's measurement of the browser window, as the page sends it."""
    found = [e for e in at.get("bidi_component") if e.proto.id.endswith("-page_tool")]
    assert found, "the page shows no screen check"
    return component_event(at, found[-1], "measured", dict(width=width, height=height, dpr=dpr, zoom=zoom))


def send_vote(at, level: int, scale: float = 1.0, **values):
    """A vote from the rating screen (a click on a level or its key) with the measured scale."""
    values.setdefault("played", True)
    return screen_event(at, "vote", level=level, scale=scale, viewport=[1366, 768], dpr=1, zoom=1, **values)
