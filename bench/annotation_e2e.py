"""End-to-end load on the annotation app: replicas of ``qalign ui`` on one PostgreSQL, raters driving
them over the network as browsers do.

For each configuration (R replicas x N raters) the benchmark makes a fresh database with a study of
1024x768 JPEG stimuli, starts R app servers (``qalign ui`` on ports 8601.., headless, the same
``QALIGN_DB_URL``), gives each rater an invite token (or lets it join from a Prolific link with
``--join crowd``) and keeps each rater on one replica (sticky, as the reverse proxy of
``deploy/nginx.conf`` does). A few raters are headless Chromium pages (Playwright, keys 1-5); the others
speak the app's websocket protocol (``st_ws_client.py``). Every rater waits a think time (exponential,
mean 2 s), votes, and times the vote:

* ws raters: from sending the vote to the end of the run that draws the next stimulus (the rating
  screen's delta, then ``script_finished``), and with the stimulus's bytes loaded after it;
* browser raters: from the key press to the next stimulus drawn (new image loaded, buttons open).

Per configuration it prints p50 / p95 of those times, votes/s, the app servers' CPU per vote (and the
PostgreSQL backends' of this database), and the lost and doubled votes: every vote a client saw
acknowledged must be in the database once, and the database must hold no vote a client did not send.

    python bench/annotation_e2e.py                                  # short: 50 raters on 2 replicas, 20 s
    python bench/annotation_e2e.py --raters 50,100,200 --replicas 1,2,4 --duration 60

PostgreSQL: ``bash .ci/setup-services`` then ``set -a; . .ci/services.env; set +a``; the benchmark
creates (and drops again) its own database, ``qalign_e2e_bench``, on the server of
``$QALIGN_TEST_PG_URL`` (or ``--db``). Target on a 2-core machine: p95 < 300 ms at 100 raters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from st_ws_client import AppError, AppSession, Run, Screen  # noqa: E402

from toolkit.store import Store, add_rater, get_study  # noqa: E402
from toolkit.store.assignment import mark_trained  # noqa: E402
from toolkit.store.schema import Rater, Rating  # noqa: E402
from toolkit.store.setup import StudySetup, prepare_database, setup_study  # noqa: E402

STUDY = "e2e"
ADMIN_SECRET = "e2e-bench-admin-secret"
PG_URL_FILE = Path(os.environ.get("QALIGN_TEST_PG_URL_FILE", "/tmp/qalign-test-pg.url"))
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = {"width": 1366, "height": 768}
VOTE_VALUES = {"scale": 1.0, "viewport": [1366, 768], "dpr": 1, "zoom": 1, "played": False}


# --------------------------------------------------------------------------- records


@dataclass
class Vote:
    rater: str
    item_id: int | None  # None: a browser rater whose page does not show the item
    level: int
    ms: float  # vote -> next stimulus (ws: its run finished; browser: drawn)
    image_ms: float | None  # ws: ... and its bytes loaded
    acked: bool  # the page moved on to another stimulus (or to the end)
    browser: bool


@dataclass
class RaterLog:
    name: str
    replica: int
    browser: bool
    open_ms: float = 0.0
    votes: list[Vote] = field(default_factory=list)
    unconfirmed: int = 0  # sent but no answer (timeout, error): may or may not be stored
    ended: bool = False  # reached the end page (nothing left to rate)
    app_errors: list[str] = field(default_factory=list)  # error pages shown instead of the next stimulus
    error: str | None = None  # why the rater stopped early


@dataclass
class Result:
    replicas: int
    raters: int
    browsers: int
    seconds: float
    votes: int
    votes_per_s: float
    p50_ms: float
    p95_ms: float
    p95_image_ms: float
    browser_p50_ms: float | None
    browser_p95_ms: float | None
    open_p95_ms: float
    app_cpu_ms_per_vote: float
    pg_cpu_ms_per_vote: float
    client_cpu_s: float
    client_lag_p95_ms: float
    lost: int
    doubled: int
    refused: int
    unconfirmed: int
    error_pages: int
    errors: dict[str, int]  # why raters stopped early: message -> raters
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


# --------------------------------------------------------------------------- database and study


def server_url(db: str | None) -> str:
    url = (
        db or os.environ.get("QALIGN_TEST_PG_URL") or (PG_URL_FILE.read_text().strip() if PG_URL_FILE.is_file() else "")
    )
    if not url.startswith("postgresql"):
        sys.exit("annotation_e2e: needs a PostgreSQL server: run .ci/setup-services and load .ci/services.env, or --db")
    return url


def fresh_database(server: str, name: str) -> str:
    """Drop and create database ``name`` on the server of ``server``; returns its URL (migrated)."""
    admin = create_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    prepare_database(url, sample=False, admin_secret=ADMIN_SECRET)
    return url


def drop_database(server: str, name: str) -> None:
    admin = create_engine(make_url(server).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_stimuli(n: int, size: tuple[int, int]) -> Path:
    """``n`` distinct photo-like JPEGs (gradients, shapes, mild noise: about 200 kB at 1024x768),
    kept in the temp folder between runs."""
    w, h = size
    folder = Path(tempfile.gettempdir()) / f"qalign-e2e-stimuli-{w}x{h}"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w]
    for k in range(n):
        path = folder / f"s{k:04d}.jpg"
        if path.exists():
            continue
        base = np.stack(
            [(x * 255 // w + 13 * k) % 256, (y * 255 // h + 7 * k) % 256, np.full_like(x, 37 * k % 256)], -1
        )
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(h // 10, h // 3)
        base[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        partial = path.with_suffix(".part")
        Image.fromarray(noisy).save(partial, format="JPEG", quality=90)
        partial.rename(path)  # a run stopped midway leaves no broken stimulus behind
    return folder


def make_study(url: str, media: Path, items: int, target_votes: int, raters: int, join: str) -> list[str]:
    """The study and its raters; returns what each rater opens the app with (its query string)."""
    from toolkit.store.study_settings import configure_protocol

    manifest = media / f"manifest-{items}.csv"
    manifest.write_text("path,role\n" + "".join(f"s{k:04d}.jpg,test\n" for k in range(items)))
    store = Store(url)
    queries: list[str] = []
    with store.session() as s:
        study, _ = setup_study(
            s,
            StudySetup(
                name=STUDY,
                media_root=media,
                manifest=manifest,
                target_votes=target_votes,
                items_per_session=items,  # no break between sessions during the run
                gold_every=0,
            ),
        )
        if join == "crowd":
            configure_protocol(s, study, crowd_platforms=("prolific",))
        for k in range(raters):
            if join == "crowd":
                queries.append(f"PROLIFIC_PID=worker{k:04d}&STUDY_ID=bench&SESSION_ID=s{k:04d}")
                continue
            rater, token = add_rater(s, study, rater_name(k, join))
            mark_trained(s, rater)  # the benchmark times rating, not the examples
            queries.append(f"token={token}")
    store.dispose()
    return queries


def rater_name(k: int, join: str) -> str:
    return f"prolific:worker{k:04d}" if join == "crowd" else f"r{k:04d}"


def check_votes(url: str, logs: list[RaterLog]) -> tuple[int, int]:
    """(lost, doubled): acknowledged votes missing from the database; votes stored twice for one item
    or stored without having been sent."""
    store = Store(url)
    with store.session() as s:
        rows = s.execute(
            select(Rater.name, Rating.item_id, Rating.level)
            .join(Rater, Rating.rater_id == Rater.id)
            .where(Rater.study_id == get_study(s, STUDY).id)
        ).all()
        twice = s.scalar(
            select(func.count()).select_from(
                select(Rating.rater_id, Rating.item_id)
                .group_by(Rating.rater_id, Rating.item_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    store.dispose()
    stored: dict[str, Counter[tuple[int | None, int]]] = {}
    for name, item, level in rows:
        stored.setdefault(name, Counter())[(item, level)] += 1
    lost, doubled = 0, int(twice or 0)
    for log in logs:
        mine = stored.pop(log.name, Counter())
        acked = [v for v in log.votes if v.acked]
        if log.browser and any(v.item_id is None for v in acked):  # the page does not show its item: count
            lost += max(0, len(acked) - sum(mine.values()))
            doubled += max(0, sum(mine.values()) - len(acked) - log.unconfirmed - _unacked(log))
            continue
        sent = Counter((v.item_id, v.level) for v in log.votes)
        lost += sum(1 for v in acked if mine[(v.item_id, v.level)] == 0)
        extra = sum((mine - sent).values(), 0)  # stored but never sent with that item and level
        doubled += max(0, extra - log.unconfirmed)
    doubled += sum(sum(c.values()) for c in stored.values())  # votes of raters nobody drove
    return lost, doubled


def _unacked(log: RaterLog) -> int:
    return sum(1 for v in log.votes if not v.acked)


# --------------------------------------------------------------------------- replicas


def start_replicas(
    url: str, ports: list[int], logs: Path, xsrf: bool = True, post_script_gc: bool = False
) -> list[subprocess.Popen[bytes]]:
    """``qalign ui`` on each port (it becomes the Streamlit server: its pid is the server's)."""
    qalign = Path(sys.executable).with_name("qalign")
    command = [str(qalign)] if qalign.exists() else [sys.executable, "-m", "toolkit.cli"]
    env = dict(os.environ, QALIGN_DB_URL=url, QALIGN_ADMIN_SECRET=ADMIN_SECRET)
    if not xsrf:
        env["STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION"] = "false"
    if post_script_gc:
        # qalign ui turns Streamlit's full gc.collect(2) after every run (every vote) off unless the
        # environment says otherwise: back on, for comparison with Streamlit's default.
        env["STREAMLIT_RUNNER_POST_SCRIPT_GC"] = "true"
    processes = []
    for port in ports:
        log = open(logs / f"replica-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        processes.append(
            subprocess.Popen(
                [*command, "ui", "--port", str(port), "--no-sample"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
        )
    deadline = time.monotonic() + 180
    for port, process in zip(ports, processes):
        while not _healthy(port):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_replicas(processes)
                tail = (logs / f"replica-{port}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"annotation_e2e: the app on port {port} did not start:\n{tail}")
            time.sleep(0.3)
    return processes


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def stop_replicas(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port_block(first: int, count: int) -> list[int]:
    """``count`` consecutive ports from ``first`` on that no one listens (skipping taken ones)."""
    import socket

    port = first
    while True:
        ports = list(range(port, port + count))
        try:
            for p in ports:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", p))
            return ports
        except OSError:
            port += count


# --------------------------------------------------------------------------- CPU


class CpuMeter:
    """CPU seconds of the app servers and of this database's PostgreSQL backends over a window."""

    def __init__(self, server_pids: list[int], url: str) -> None:
        self.server_pids = server_pids
        self.url = url
        self.engine = create_engine(url)

    def _backends(self) -> dict[int, float]:
        name = make_url(self.url).database
        with self.engine.connect() as conn:
            pids = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name}
            ).scalars()
            return {pid: _cpu(pid) for pid in pids}

    def snapshot(self) -> tuple[float, dict[int, float]]:
        return sum(_cpu(pid) for pid in self.server_pids), self._backends()

    @staticmethod
    def spent(before: tuple[float, dict[int, float]], after: tuple[float, dict[int, float]]) -> tuple[float, float]:
        # A backend opened during the window counts from zero; one closed during it is missed (pools keep theirs).
        pg = sum(max(0.0, t - before[1].get(pid, 0.0)) for pid, t in after[1].items())
        return after[0] - before[0], pg

    def close(self) -> None:
        self.engine.dispose()


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


# --------------------------------------------------------------------------- raters


async def ws_rater(
    log: RaterLog, port: int, query: str, start: asyncio.Event, stop_at: list[float], think: float, seed: int
) -> None:
    rng = random.Random(seed)
    session = AppSession("127.0.0.1", port)
    screen: Screen | None = None
    try:
        screen = await _open(session, log, query)
        log.open_ms = session.opened_ms
        await start.wait()
        failures = 0
        while screen is not None:
            await asyncio.sleep(rng.expovariate(1 / think))
            if time.monotonic() >= stop_at[0]:
                break
            level = rng.randint(1, 5)
            try:
                run = await session.send_event(screen, "vote", {"level": level, **VOTE_VALUES})
            except AppError as exc:
                # The page showed an error instead of the next stimulus. The vote may or may not be
                # stored; the rater opens the invite link again, as a person would, and goes on.
                log.unconfirmed += 1
                log.app_errors.append(str(exc))
                failures += 1
                if failures > 3:
                    raise
                await session.close()
                session = AppSession("127.0.0.1", port)
                screen = await _open(session, log, query)
                continue
            except Exception:
                log.unconfirmed += 1  # sent, never answered: it may or may not be stored
                raise
            failures = 0
            ms = run.seconds * 1000
            image_ms = None
            if run.screen is not None and run.screen.key != screen.key:
                t0 = time.perf_counter()
                await session.fetch(str(run.screen.data["src"]))
                image_ms = ms + (time.perf_counter() - t0) * 1000
            if run.screen is None:  # the end page: it does not say whether this last vote counted
                log.unconfirmed += 1
                log.ended = True
            acked = run.screen is not None and counted(screen, run.screen)
            log.votes.append(Vote(log.name, screen.item_id, level, ms, image_ms, acked, False))
            screen = run.screen
    except Exception as exc:  # noqa: BLE001 - reported with the figures
        log.error = f"{type(exc).__name__}: {exc}"
    finally:
        await session.close()


def done_count(progress_text: str) -> int | None:
    """The rater's answers so far, from the screen's progress line ("12 of 40 done")."""
    head = progress_text.strip().split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def counted(before: Screen, after: Screen) -> bool:
    """Whether the page took the vote: another stimulus, and one more answer in the progress line
    (a vote refused because the item filled up meanwhile moves on without counting)."""
    if after.key == before.key:
        return False  # the same stimulus again: refused
    old = done_count(str((before.data.get("progress") or {}).get("text", "")))
    new = done_count(str((after.data.get("progress") or {}).get("text", "")))
    return old is None or new is None or new > old


async def _open(session: AppSession, log: RaterLog, query: str) -> Screen:
    """Open the page with the rater's link and load the first stimulus."""
    run = await session.open(query)
    session.opened_ms = run.seconds * 1000
    run = await _reach_screen(session, run)
    if run.screen is None:
        raise AppError(f"no rating screen for {log.name}: {' | '.join(run.texts)[:200]}")
    await session.fetch(str(run.screen.data["src"]))
    return run.screen


async def _reach_screen(session: AppSession, run: Run) -> Run:
    """A rater who joined from a crowd link may first see a page with one button (start rating)."""
    for _ in range(3):
        if run.screen is not None or not run.buttons:
            return run
        run = await session.click(run.buttons[0])
    return run


READY_JS = """() => { const s = window.__qaFind(); if (!s) return false;
  const m = s.querySelector('.qa-stimulus'), b = s.querySelector('.qa-level');
  return !!(m && (m.naturalWidth || m.videoWidth) && b && !b.disabled); }"""

FIND_JS = """() => { window.__qaFind = () => {
    if (window.__qaHost && window.__qaHost.isConnected) return window.__qaHost.shadowRoot.querySelector('.qa-screen');
    for (const e of document.querySelectorAll('*')) {
      const found = e.shadowRoot && e.shadowRoot.querySelector('.qa-screen');
      if (found) { window.__qaHost = e; return found; }
    }
    return null; };
  if (!window.__qaArmed) { window.__qaArmed = true;
    document.addEventListener('keydown', () => { window.__qaT0 = performance.now(); }, true); } }"""

ARM_JS = """() => { const s = window.__qaFind(); window.__qaT0 = null;
  window.__qaOld = s.querySelector('.qa-stimulus').src;
  return [s.dataset.key || null, s.querySelector('.qa-progress-text').textContent]; }"""

# Resolves when the next stimulus is drawn (a new source, loaded, the level buttons open), when the
# same stimulus is offered again (refused), or when the screen is gone (nothing left to rate).
WAIT_JS = """(limit) => new Promise((resolve) => {
  const begin = performance.now(); let srcAt = null;
  const tick = () => {
    const now = performance.now(), s = window.__qaFind(), t0 = window.__qaT0;
    if (s && t0 !== null) {
      const m = s.querySelector('.qa-stimulus'), b = s.querySelector('.qa-level');
      if (m && m.src !== window.__qaOld) {
        if (srcAt === null) srcAt = now;
        if (m.complete && m.naturalWidth > 0 && b && !b.disabled) {
          resolve({ms: now - t0, dataMs: srcAt - t0, progress: s.querySelector('.qa-progress-text').textContent});
          return; }
      } else if (b && !b.disabled) { resolve({refused: true, ms: now - t0}); return; }
    } else if (!s && t0 !== null) { resolve({done: true, ms: now - t0}); return; }
    if (now - begin > limit) { resolve({timeout: true}); return; }
    setTimeout(tick, 4);
  };
  tick(); })"""


async def browser_rater(
    log: RaterLog,
    browser: Any,
    port: int,
    query: str,
    start: asyncio.Event,
    stop_at: list[float],
    think: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        t0 = time.perf_counter()
        await page.goto(f"http://127.0.0.1:{port}/?{query}")
        await page.evaluate(FIND_JS)
        await page.wait_for_function(READY_JS, timeout=120_000)
        log.open_ms = (time.perf_counter() - t0) * 1000
        await start.wait()
        while True:
            await asyncio.sleep(rng.expovariate(1 / think))
            if time.monotonic() >= stop_at[0]:
                break
            level = rng.randint(1, 5)
            key, progress = await page.evaluate(ARM_JS)
            await page.keyboard.press(str(level))
            answer = await page.evaluate(WAIT_JS, 120_000)
            if answer.get("timeout"):
                log.unconfirmed += 1
                raise TimeoutError("the next stimulus did not appear within 120 s")
            item = Screen("", "", {"key": key}).item_id if key else None
            if answer.get("done"):  # the end page: it does not say whether this last vote counted
                log.unconfirmed += 1
                log.ended = True
                log.votes.append(Vote(log.name, item, level, float(answer["ms"]), None, False, True))
                break
            old, new = done_count(progress), done_count(str(answer.get("progress", "")))
            acked = not answer.get("refused") and (old is None or new is None or new > old)
            log.votes.append(Vote(log.name, item, level, float(answer["ms"]), None, acked, True))
    except Exception as exc:  # noqa: BLE001 - reported with the figures
        log.error = f"(browser) {type(exc).__name__}: {exc}"
    finally:
        await context.close()


async def lag_probe(stop: asyncio.Event, lags: list[float]) -> None:
    """How late this process's event loop wakes up: client-side delay inside every measured time."""
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.05)
        lags.append((time.perf_counter() - t0 - 0.05) * 1000)


async def drive(
    url: str, ports: list[int], pids: list[int], queries: list[str], names: list[str], args: argparse.Namespace
) -> tuple[list[RaterLog], float, tuple[float, float], float, list[float]]:
    """Connect every rater, then let them rate for ``args.duration`` seconds; returns the rater logs,
    the window's length, the CPU spent in it (app servers, PostgreSQL) and the client's CPU and lags."""
    start, stop_probe = asyncio.Event(), asyncio.Event()
    stop_at = [math.inf]
    n = len(queries)
    browsers = min(args.browsers, n) if CHROMIUM.exists() else 0
    logs = [RaterLog(names[k], k % len(ports), k < browsers) for k in range(n)]
    gate = asyncio.Semaphore(args.connect_concurrency)

    playwright = browser = None
    if browsers:
        from playwright.async_api import async_playwright

        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
    tasks = []
    connected = asyncio.Event()
    opened = [0]

    async def one(k: int) -> None:
        async with gate:
            port, log = ports[logs[k].replica], logs[k]
            ready = asyncio.Event()

            async def signal_ready() -> None:
                # The rater is connected once its first page is drawn; then the gate lets the next one in.
                while log.open_ms == 0 and log.error is None:
                    await asyncio.sleep(0.01)
                ready.set()

            if log.browser:
                body = browser_rater(log, browser, port, queries[k], start, stop_at, args.think, args.seed + k)
            else:
                body = ws_rater(log, port, queries[k], start, stop_at, args.think, args.seed + k)
            task = asyncio.ensure_future(body)
            tasks.append(task)
            await signal_ready()
        opened[0] += 1
        if opened[0] == n:
            connected.set()

    await asyncio.gather(*(one(k) for k in range(n)))
    await connected.wait()
    meter = CpuMeter(pids, url)
    lags: list[float] = []
    probe = asyncio.ensure_future(lag_probe(stop_probe, lags))
    client0 = _client_cpu()
    before = meter.snapshot()
    began = time.monotonic()
    stop_at[0] = began + args.duration
    start.set()
    await asyncio.gather(*tasks)
    seconds = time.monotonic() - began
    spent = CpuMeter.spent(before, meter.snapshot())
    client = _client_cpu() - client0
    stop_probe.set()
    await probe
    meter.close()
    if browser is not None:
        await browser.close()
    if playwright is not None:
        await playwright.stop()
    return logs, seconds, spent, client, lags


def _client_cpu() -> float:
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):  # Chromium's processes
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return float(total)


# --------------------------------------------------------------------------- one configuration


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def run_config(server: str, replicas: int, raters: int, media: Path, work: Path, args: argparse.Namespace) -> Result:
    url = fresh_database(server, args.database)
    per_rater = args.duration / args.think * 2 + 10
    items = max(args.items, int(per_rater))
    target = max(5, math.ceil(1.5 * raters * per_rater / items))
    queries = make_study(url, media, items, target, raters, args.join)
    names = [rater_name(k, args.join) for k in range(raters)]
    ports = free_port_block(args.port, replicas)
    load_before = os.getloadavg()
    processes = start_replicas(url, ports, work, xsrf=not args.no_xsrf, post_script_gc=args.post_script_gc)
    try:
        logs, seconds, (app_cpu, pg_cpu), client_cpu, lags = asyncio.run(
            drive(url, ports, [p.pid for p in processes], queries, names, args)
        )
    finally:
        stop_replicas(processes)
    load_after = os.getloadavg()
    lost, doubled = check_votes(url, logs)
    if not args.keep:
        drop_database(server, args.database)
    ws = [v for log in logs for v in log.votes if not v.browser]
    br = [v for log in logs for v in log.votes if v.browser]
    done = [v for log in logs for v in log.votes if v.acked]
    return Result(
        replicas=replicas,
        raters=raters,
        browsers=sum(1 for log in logs if log.browser),
        seconds=round(seconds, 1),
        votes=len(done),
        votes_per_s=round(len(done) / seconds, 1),
        p50_ms=round(percentile([v.ms for v in ws], 50), 1),
        p95_ms=round(percentile([v.ms for v in ws], 95), 1),
        p95_image_ms=round(percentile([v.image_ms for v in ws if v.image_ms is not None], 95), 1),
        browser_p50_ms=round(percentile([v.ms for v in br], 50), 1) if br else None,
        browser_p95_ms=round(percentile([v.ms for v in br], 95), 1) if br else None,
        open_p95_ms=round(percentile([log.open_ms for log in logs if log.open_ms], 95), 1),
        app_cpu_ms_per_vote=round(app_cpu * 1000 / max(1, len(done)), 1),
        pg_cpu_ms_per_vote=round(pg_cpu * 1000 / max(1, len(done)), 1),
        client_cpu_s=round(client_cpu, 1),
        client_lag_p95_ms=round(percentile(lags, 95), 1),
        lost=lost,
        doubled=doubled,
        refused=sum(1 for log in logs for v in log.votes if not v.acked) - sum(log.ended for log in logs),
        unconfirmed=sum(log.unconfirmed for log in logs),
        error_pages=sum(len(log.app_errors) for log in logs),
        errors=dict(Counter(log.error for log in logs if log.error)),
        load_before=tuple(round(x, 2) for x in load_before),  # type: ignore[arg-type]
        load_after=tuple(round(x, 2) for x in load_after),  # type: ignore[arg-type]
    )


def print_result(r: Result) -> None:
    browser = f"{r.browser_p50_ms:.0f} / {r.browser_p95_ms:.0f}" if r.browser_p50_ms is not None else "-"
    print(
        f"{r.replicas:>3} {r.raters:>5} | {r.votes:>5} {r.votes_per_s:>6.1f} | {r.p50_ms:>6.0f} {r.p95_ms:>6.0f} "
        f"{r.p95_image_ms:>7.0f} | {browser:>11} | {r.app_cpu_ms_per_vote:>6.1f} {r.pg_cpu_ms_per_vote:>5.1f} | "
        f"{r.lost:>4} {r.doubled:>7} {r.refused:>4} {r.unconfirmed:>5} | {r.client_lag_p95_ms:>5.0f} "
        f"{r.load_before[0]:>5.1f} {r.load_after[0]:>5.1f}",
        flush=True,
    )
    if r.error_pages:
        print(f"      {r.error_pages} vote(s) answered by an error page (the rater reopened the link)", flush=True)
    for error, count in sorted(r.errors.items(), key=lambda e: -e[1]):
        print(f"      {count} rater(s) stopped: {error[:160]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", default="50", help="comma-separated rater counts (e.g. 50,100,200)")
    parser.add_argument("--replicas", default="2", help="comma-separated replica counts (e.g. 1,2,4)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of rating per configuration")
    parser.add_argument("--think", type=float, default=2.0, help="mean think time between votes (exponential)")
    parser.add_argument("--browsers", type=int, default=1, help="raters driven by headless Chromium (of --raters)")
    parser.add_argument("--items", type=int, default=300, help="stimuli in the study (at least enough per rater)")
    parser.add_argument("--size", default="1024x768", help="stimulus size WxH")
    parser.add_argument("--join", choices=["token", "crowd"], default="token", help="invite tokens or Prolific links")
    parser.add_argument("--db", default=None, help="PostgreSQL URL of the server (default $QALIGN_TEST_PG_URL)")
    parser.add_argument("--database", default="qalign_e2e_bench", help="database created (and dropped) for the run")
    parser.add_argument("--port", type=int, default=8601, help="first replica's port")
    parser.add_argument("--connect-concurrency", type=int, default=8, help="raters opening the page at once")
    parser.add_argument("--no-xsrf", action="store_true", help="start the servers with enableXsrfProtection=false")
    parser.add_argument(
        "--post-script-gc",
        action="store_true",
        help="start the servers with Streamlit's default runner.postScriptGC=true (a full garbage collection after "
        "every run; qalign ui turns it off)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the last configuration's database")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    # A stop by SIGTERM unwinds like Ctrl-C, so the replicas this run started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    w, h = (int(v) for v in args.size.lower().split("x"))
    server = server_url(args.db)
    rater_counts = [int(v) for v in args.raters.split(",")]
    replica_counts = [int(v) for v in args.replicas.split(",")]
    import streamlit

    media = make_stimuli(max(args.items, int(args.duration / args.think * 2 + 10)), (w, h))
    print(
        f"annotation_e2e: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
        f"streamlit {streamlit.__version__}, "
        f"XSRF protection {'off' if args.no_xsrf else 'on'}, "
        f"runner.postScriptGC {'true' if args.post_script_gc else 'false (as qalign ui runs)'}, {w}x{h} JPEG stimuli "
        f"(~{statistics.mean(p.stat().st_size for p in sorted(media.glob('*.jpg'))[:20]) / 1024:.0f} kB), "
        f"think time exp. mean {args.think:g} s, {args.duration:g} s per configuration, "
        f"{args.browsers} Chromium rater(s)",
        flush=True,
    )
    print(
        "  R     N | votes  vot/s | p50 ms p95 ms +img p95 | browser p50/p95 | app ms/vote pg | "
        "lost doubled refu unconf | lag95 load0 load1",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="qalign-e2e-") as folder:
        for replicas in replica_counts:
            for raters in rater_counts:
                result = run_config(server, replicas, raters, media, Path(folder), args)
                print_result(result)
                results.append(result)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    bad = [r for r in results if r.lost or r.doubled]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
