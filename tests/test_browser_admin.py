"""The admin pages in a real browser (Debian's Chromium through Playwright) on a lab-sized store:
four studies, one of 2,500 items with 30,000 votes over the last hours, flagged raters.

The administrator signs in, reads the overview, opens the large study by clicking its row, then
its Results and Raters tabs;
a screenshot of each (1366x900) is written to $QALIGN_SCREENSHOT_DIR when set (the README's
``docs/screenshots``), else next to the test's database. Skipped when /usr/bin/chromium or the
playwright package is missing.
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
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select, update

from toolkit.store import Store, get_study, import_votes, load_snapshot
from toolkit.store.exclusion import run_exclusion
from toolkit.store.schema import Item, Rating, RatingSession, utcnow
from toolkit.store.setup import prepare_database
from toolkit.store.studies import create_study
from toolkit.store.study_settings import configure_protocol

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
playwright_api = pytest.importorskip("playwright.sync_api")

SECRET = "browser-admin-secret"
VIEWPORT = {"width": 1366, "height": 900}
SCREENSHOT_ENV = "QALIGN_SCREENSHOT_DIR"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_study(store: Store, root: Path, name: str, n_items: int, target: int, task: str = "quality") -> list[str]:
    """A study whose items are inserted directly (no media files to hash at this size)."""
    paths = [f"{name}/img_{k:05d}.jpg" for k in range(n_items)]
    with store.session() as s:
        study = create_study(s, name, media_root=root, task=task, target_votes=target)
        s.flush()
        s.execute(
            insert(Item),
            [
                dict(
                    study_id=study.id,
                    path=p,
                    kind="image",
                    sha256=f"{hash(p) & (2**63 - 1):064x}",
                    content_group=p.rsplit("_", 1)[0] + f"_{k // 5:04d}",
                    role="test",
                    tolerance=1,
                    priority=0,
                )
                for k, p in enumerate(paths)
            ],
        )
    return paths


def add_votes(store: Store, name: str, paths: list[str], n_raters: int, per_item: int, hours: float, seed: int) -> None:
    """``per_item`` votes per item from ``n_raters`` raters (a bias and a noise each), spread over
    the last ``hours``; rater 07 gives one level throughout and rater 11 answers at random."""
    rng = np.random.default_rng(seed)
    quality = np.clip(rng.normal(3.2, 0.9, len(paths)), 1.0, 5.0)
    bias = rng.normal(0.0, 0.3, n_raters)
    noise = rng.uniform(0.4, 0.9, n_raters)
    rows = []
    for k, path in enumerate(paths):
        for r in rng.choice(n_raters, size=min(per_item, n_raters), replace=False):
            level = int(np.clip(np.rint(quality[k] + bias[r] + rng.normal(0.0, noise[r])), 1, 5))
            if r == 7:
                level = 4
            elif r == 11:
                level = int(rng.integers(1, 6))
            rows.append((path, f"rater_{r:02d}", level))
    with store.session() as s:
        study = get_study(s, name)
        import_votes(s, study, pd.DataFrame(rows, columns=["item", "rater", "vote"]))
        ids, raters = zip(
            *s.execute(select(Rating.id, Rating.rater_id).where(Rating.study_id == study.id).order_by(Rating.id)).all()
        )
        now = utcnow()
        ages = np.sort(rng.uniform(0.0, hours * 3600.0, len(ids)))[::-1]
        moments = [now - timedelta(seconds=float(a)) for a in ages]
        # Given in the app: each rater's votes in one sitting, last seen at their newest vote.
        last = dict(zip(raters, moments))
        first = dict(zip(reversed(raters), reversed(moments)))
        sittings = {}
        for rater_id in last:
            sitting = RatingSession(
                rater_id=rater_id, started_at=first[rater_id], last_seen_at=last[rater_id], n_votes=0
            )
            s.add(sitting)
            s.flush()
            sittings[rater_id] = sitting.id
        s.execute(
            update(Rating),
            [{"id": i, "answered_at": moment, "session_id": sittings[r]} for i, r, moment in zip(ids, raters, moments)],
        )


def lab_database(url: str, root: Path) -> None:
    prepare_database(url, admin_secret=SECRET)  # the sample study, and the admin secret
    store = Store(url)
    large = add_study(store, root, "koniq-pilot", 2500, target=15)
    add_votes(store, "koniq-pilot", large, n_raters=40, per_item=12, hours=6.0, seed=1)
    done = add_study(store, root, "spaq-aesthetics", 800, target=8, task="aesthetics")
    add_votes(store, "spaq-aesthetics", done, n_raters=20, per_item=8, hours=30.0, seed=2)
    fresh = add_study(store, root, "video-pilot", 120, target=15)
    add_votes(store, "video-pilot", fresh[:40], n_raters=6, per_item=3, hours=0.8, seed=3)
    with store.session() as s:
        study = get_study(s, "koniq-pilot")
        configure_protocol(s, study, max_level_share=0.9)
        run_exclusion(s, study)
    store.dispose()


@pytest.fixture()
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'lab.db'}"
    lab_database(url, tmp_path)
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "ui", "--port", str(port), "--db", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
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
        yield {"base": base, "url": url}
    finally:
        # The whole process group: nothing of the server may outlive the test.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture()
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def wait_idle(page, timeout_s: float = 120) -> None:
    """Until Streamlit has finished its rerun (no running indicator, no spinner of a cached fit)."""
    deadline = time.monotonic() + timeout_s
    page.wait_for_timeout(500)
    while page.locator('[data-testid="stStatusWidget"], [data-testid="stSpinner"]').count():
        assert time.monotonic() < deadline, "the app never finished running"
        time.sleep(0.2)
    page.wait_for_timeout(800)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    wait_idle(page)


def test_overview_results_and_raters_in_a_browser(server, browser, tmp_path):
    shots = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(server["base"] + "/admin")
    page.get_by_label(re.compile("^Admin secret")).fill(SECRET)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Flagged raters").wait_for(timeout=60_000)
    wait_idle(page)
    page.screenshot(path=shots / "admin-overview.png")

    # Clicking a study's row opens it: the grid is a canvas, so click where the second row's
    # selection box is (header and rows 35 px high).
    grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    assert grid is not None
    page.mouse.click(grid["x"] + 16, grid["y"] + 35 + 35 + 17)
    page.get_by_role("tab", name="Results").wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_role("tab").all_inner_texts() == ["Progress", "Raters", "Results", "Export", "Tokens"]
    open_tab(page, "Results")
    # The table's caption is drawn last: the page is complete once it shows.
    page.get_by_text(re.compile(r"items 1–25 of 2,500 matching")).wait_for(timeout=120_000)
    wait_idle(page)
    page.screenshot(path=shots / "admin-results.png")
    # Three figures (histogram, worst, best) whatever the item count, and one page of the table.
    assert page.locator('[data-testid="stImage"]').count() == 3
    page.get_by_text("Items", exact=True).scroll_into_view_if_needed()
    wait_idle(page)
    page.screenshot(path=shots / "admin-results-table.png")

    open_tab(page, "Raters")
    page.get_by_text(re.compile(r"rater\(s\) flagged")).wait_for(timeout=60_000)
    wait_idle(page)
    assert page.get_by_text("rater_07").count() >= 1
    page.screenshot(path=shots / "admin-raters.png")

    # A model's scores of the items (the valid-vote MOS plus noise), uploaded for the rater QA.
    votes = load_snapshot("koniq-pilot", server["url"]).votes
    mos = votes.groupby("item")["vote"].mean()
    noise = np.random.default_rng(5).normal(0.0, 0.3, len(mos))
    scores = tmp_path / "scores.csv"
    pd.DataFrame({"path": mos.index, "score": mos.to_numpy() + noise}).to_csv(scores, index=False)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(scores))
    page.get_by_text("Items matched").wait_for(timeout=120_000)
    wait_idle(page)
    page.get_by_text("Raters against a model").scroll_into_view_if_needed()
    wait_idle(page)
    page.screenshot(path=shots / "admin-raters-model.png")
