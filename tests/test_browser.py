"""The app in a real browser: `qalign ui` on localhost driven by Debian's Chromium through Playwright.

A rater joins with an invite token, goes through training, rates by click and by keyboard
(the video only once it has played), reloads and resumes, and the votes are checked in the database.
Skipped when /usr/bin/chromium or the playwright package is missing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from toolkit.store import Store, add_rater, get_study
from toolkit.store.schema import Assignment, Item, Rating
from toolkit.store.setup import SAMPLE_STUDY_NAME, prepare_database

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
playwright_api = pytest.importorskip("playwright.sync_api")

LABELS = {5: "Excellent (5)", 4: "Good (4)", 3: "Fair (3)", 2: "Poor (2)", 1: "Bad (1)"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    """`qalign ui` on a fresh SQLite database with the sample study and one invited rater."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    prepare_database(url, admin_secret="browser-admin-secret")
    store = Store(url)
    with store.session() as s:
        token = add_rater(s, get_study(s, SAMPLE_STUDY_NAME), "dana")[1]
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "ui", "--port", str(port), "--db", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("qalign ui did not start:\n" + (tmp_path / "server.log").read_text())
            time.sleep(0.5)
        yield dict(base=base, token=token, store=store)
    finally:
        # The whole process group: nothing of the server may outlive the test.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        store.dispose()


@pytest.fixture()
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def votes(store: Store) -> list[tuple[str, str, int]]:
    with store.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                select(Item.path, Item.role, Rating.level).join(Item, Rating.item_id == Item.id).order_by(Rating.id)
            )
        ]


def pending(store: Store) -> tuple[int, object] | None:
    with store.session() as s:
        row = s.execute(select(Assignment.item_id, Assignment.shown_at)).first()
    return tuple(row) if row else None


def wait_rated(page, n: int) -> None:
    page.get_by_text(re.compile(rf"^{n} rated, \d+ to go$")).wait_for(timeout=30_000)


def vote_button(page, level: int):
    # During a rerun Streamlit keeps the old page's elements beside the new ones for a moment:
    # wait for the rerun to finish, and take the first match if a stale copy is still there.
    wait_idle(page)
    # The accessible name also carries the keyboard hint ("Excellent (5) 5").
    button = page.get_by_role("button", name=re.compile("^" + re.escape(LABELS[level]))).first
    button.wait_for(timeout=30_000)
    # A video keeps the buttons disabled until it has played to the end (a 2 s clip here).
    deadline = time.monotonic() + 30
    while not button.is_enabled():
        assert time.monotonic() < deadline, "vote buttons never opened"
        time.sleep(0.2)
    return button


def wait_idle(page) -> None:
    """Until Streamlit has finished its rerun: its keyboard shortcuts are bound only afterwards."""
    deadline = time.monotonic() + 30
    while page.locator('[data-testid="stStatusWidget"]').count():
        assert time.monotonic() < deadline, "the app never finished running"
        time.sleep(0.1)
    page.wait_for_timeout(300)


def press_until_stored(page, store, key: str, expected: int) -> None:
    """Press a vote key; press again only if nothing was stored (a key sent mid-rerun is lost)."""
    for _ in range(3):
        wait_idle(page)
        page.keyboard.press(key)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(votes(store)) >= expected:
                return
            time.sleep(0.2)
    raise AssertionError(f"key {key} never stored a vote")


def test_join_train_rate_reload_resume(server, browser):
    base, token, store = server["base"], server["token"], server["store"]
    page = browser.new_page()
    page.goto(base + "/")
    page.get_by_label("Your invite token").fill(token)
    page.get_by_role("button", name="Join").click()

    # Training: the three examples of the sample study, then the rating page.
    for _ in range(3):
        page.get_by_role("button", name="Next example").click()
        page.wait_for_timeout(300)
    page.get_by_role("button", name="Start rating").click()
    wait_rated(page, 0)
    assert "token=" not in page.url  # the session holds the token; the address bar does not

    vote_button(page, 5).click()  # by mouse
    wait_rated(page, 1)
    vote_button(page, 3)
    press_until_stored(page, store, "3", 2)  # by keyboard
    wait_rated(page, 2)
    assert [v[2] for v in votes(store)] == [5, 3]

    # Reload of the bare address: the token is not in it, so the page asks for it again.
    before = pending(store)
    page.reload()
    page.get_by_label("Your invite token").wait_for(timeout=30_000)
    assert pending(store) == before

    # Browser closed and opened again with the invite link: same rater, same item on screen with
    # the same server-side start time; the token leaves the address bar again.
    page.context.close()
    page = browser.new_page()
    page.goto(f"{base}/?token={token}")
    wait_rated(page, 2)
    assert pending(store) == before
    assert page.get_by_label("Your invite token").count() == 0
    page.wait_for_function("() => !window.location.search.includes('token=')", timeout=30_000)

    pressed = [5, 3]
    for k in range(10):
        if page.get_by_text("nothing left for you to rate").count():
            break
        level = 1 + k % 5
        vote_button(page, level)
        pressed.append(level)
        press_until_stored(page, store, str(level), len(pressed))
        page.wait_for_timeout(500)
    page.get_by_text("nothing left for you to rate").wait_for(timeout=30_000)
    stored = votes(store)
    assert [v[2] for v in stored] == pressed
    roles = [v[1] for v in stored]
    assert roles.count("test") == 5 and roles.count("gold") >= 1  # every test item once, a gold check among them
    assert len({v[0] for v in stored}) == len(stored)
    assert any(path.endswith(".mp4") for path, _, _ in stored)


def test_unknown_token_shows_nothing(server, browser):
    page = browser.new_page()
    page.goto(server["base"] + "/?token=not-a-token")
    page.get_by_text("Unknown or revoked token.").wait_for(timeout=30_000)
    assert page.get_by_role("button", name=re.compile(re.escape(LABELS[5]))).count() == 0
    assert votes(server["store"]) == []
