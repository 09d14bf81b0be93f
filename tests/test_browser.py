"""The app in a real browser: `qalign ui` on localhost driven by Debian's Chromium through Playwright.

A rater joins with an invite token, goes through training, rates by click and by keyboard (a video
only once it has played to its end), reloads and resumes, and the votes are checked in the database.
The rating screen is measured as an instrument (ITU-T P.910): a stimulus that fits is drawn at one
image pixel per device pixel on a mid-grey surround, all five identical level buttons are in view at
1366x768, a video cannot be scrubbed. Skipped when /usr/bin/chromium or the playwright package is
missing. With QALIGN_SCREENSHOTS=<folder> the rater screens are saved there as PNG files.
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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from toolkit.store import Store, add_rater, get_study
from toolkit.store.schema import Assignment, Item, Rating
from toolkit.store.setup import SAMPLE_STUDY_NAME, StudySetup, prepare_database, setup_study

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
playwright_api = pytest.importorskip("playwright.sync_api")

LABELS = {5: "Excellent", 4: "Good", 3: "Fair", 2: "Poor", 1: "Bad"}
LAPTOP = {"width": 1366, "height": 768}
SHOTS = os.environ.get("QALIGN_SCREENSHOTS")


# --------------------------------------------------------------------------- stimuli


def write_photo(path: Path, size: tuple[int, int], seed: int) -> None:
    """A photo-like test image: sky gradient, ground, shapes and fine stripes (shows any rescaling)."""
    w, h = size
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - y) + np.array([250, 220, 170]) * y).astype(np.uint8)
    img = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).copy())
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, int(h * 0.7), w, h], fill=(60, 130, 60))
    for _ in range(12):
        size_ = int(rng.integers(w // 20, w // 6))
        x0, y0 = int(rng.integers(0, w - size_)), int(rng.integers(10, int(h * 0.7)))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.ellipse([x0, y0, x0 + size_, y0 + size_], fill=colour, outline=(0, 0, 0), width=3)
    for x in range(0, w, 6):
        draw.line([x, int(h * 0.72), x + 3, h], fill=(240, 240, 240), width=1)
    img.save(path, quality=92)


def write_clip(path: Path, seconds: float = 2.0, size: tuple[int, int] = (320, 240), fps: int = 12) -> None:
    """A short H.264 clip (a slow pan over a test image), made with PyAV."""
    import av

    still = path.with_suffix(".still.png")
    write_photo(still, (size[0] + 60, size[1]), seed=7)
    base = np.asarray(Image.open(still).convert("RGB"))
    still.unlink()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for t in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, t : t + size[0]]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def lab_study(store: Store, media: Path, name: str = "lab", **options) -> None:
    """Test items: 1024x768 photos (they fit 1366x768 at their true size beside the scale)
    and one 1600x1200 photo (it does not: shown scaled down)."""
    media.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        write_photo(media / f"photo_{k}.jpg", (1024, 768), seed=k)
    write_photo(media / "large.jpg", (1600, 1200), seed=9)
    write_photo(media / "training_good.jpg", (1024, 768), seed=11)
    (media / "manifest.csv").write_text(
        "path,role,expected_level,tolerance\n"
        "photo_0.jpg,test,,\nphoto_1.jpg,test,,\nphoto_2.jpg,test,,\nlarge.jpg,test,,\n"
        "training_good.jpg,training,4,1\n"
    )
    options.setdefault("gold_every", 0)
    with store.session() as s:
        setup_study(s, StudySetup(name=name, media_root=media, manifest=media / "manifest.csv", **options))


def video_study(store: Store, media: Path, name: str = "clips") -> None:
    media.mkdir(parents=True, exist_ok=True)
    write_clip(media / "clip_a.mp4")
    write_clip(media / "clip_b.mp4", seconds=1.5)
    with store.session() as s:
        setup_study(s, StudySetup(name=name, media_root=media, gold_every=0))


# --------------------------------------------------------------------------- server and browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp_path: Path, url: str) -> tuple[subprocess.Popen, str]:
    log = open(tmp_path / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "ui", "--port", str(port := free_port()), "--db", url],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return process, base
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.flush()
            stop_server(process)
            pytest.fail("qalign ui did not start:\n" + (tmp_path / "server.log").read_text())
        time.sleep(0.5)


def stop_server(process: subprocess.Popen) -> None:
    # The whole process group: nothing of the server may outlive the test.
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture()
def app(tmp_path) -> Iterator[Callable[..., dict]]:
    """``app(setup)``: `qalign ui` on a fresh SQLite database after ``setup(store, media)``."""
    started: list[tuple[subprocess.Popen, Store]] = []

    def start(setup: Callable[[Store, Path], object] | None = None, sample: bool = False) -> dict:
        url = f"sqlite:///{tmp_path / 'app.db'}"
        prepare_database(url, sample=sample, admin_secret="browser-admin-secret")
        store = Store(url)
        if setup is not None:
            setup(store, tmp_path / "media")
        process, base = start_server(tmp_path, url)
        started.append((process, store))
        return dict(base=base, store=store)

    yield start
    for process, store in started:
        stop_server(process)
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


def invite(store: Store, study: str, name: str = "dana", trained: bool = True) -> str:
    from toolkit.store.schema import utcnow

    with store.session() as s:
        rater, token = add_rater(s, get_study(s, study), name)
        if trained:
            rater.trained_at = utcnow()
    return token


def votes(store: Store) -> list[tuple[str, str, int]]:
    with store.session() as s:
        return [
            (r[0], r[1], r[2])
            for r in s.execute(
                select(Item.path, Item.role, Rating.level).join(Item, Rating.item_id == Item.id).order_by(Rating.id)
            )
        ]


def pending(store: Store) -> tuple[int, object] | None:
    with store.session() as s:
        row = s.execute(select(Assignment.item_id, Assignment.shown_at)).first()
    return (row[0], row[1]) if row else None


def shoot(page, name: str) -> None:
    """Save what the rater sees (only when QALIGN_SCREENSHOTS names a folder); palette PNGs stay small."""
    if not SHOTS:
        return
    folder = Path(SHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / f"{name}.raw.png"
    page.screenshot(path=str(raw))
    image = Image.open(raw).convert("RGB")
    if image.getcolors(256) is not None:  # a text page: its few colours exactly
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(folder / f"{name}.png", optimize=True)
    else:  # a photo on screen: a palette fitted to the shot, dithered onto it (gradients stay smooth)
        palette = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        image.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(folder / f"{name}.png", optimize=True)
    raw.unlink()


# --------------------------------------------------------------------------- the rating screen, measured

# The shadow root of the rating screen on display (a stale copy may linger while a run replaces it).
LIVE_ROOT = (
    "[...document.querySelectorAll('*')].filter(e => e.shadowRoot && e.shadowRoot.querySelector('.qa-screen')"
    " && !e.closest('[data-stale=\"true\"]')).map(e => e.shadowRoot).pop()"
)

SCREEN_JS = """() => {
  const root = LIVE_ROOT;
  if (!root) return null;
  const media = root.querySelector('.qa-stimulus');
  const rect = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const style = (e) => { const s = getComputedStyle(e);
    return [s.backgroundColor, s.color, s.borderTopColor, s.borderTopWidth, s.borderRadius, s.fontSize, s.fontWeight,
            s.height, s.width, s.paddingLeft].join('|'); };
  return {
    key: root.querySelector('.qa-screen').dataset.scale !== undefined ? 1 : 0,
    scale: Number(root.querySelector('.qa-screen').dataset.scale),
    tag: media ? media.tagName : null,
    natural: media ? [media.naturalWidth || media.videoWidth, media.naturalHeight || media.videoHeight] : null,
    client: media ? [media.clientWidth, media.clientHeight] : null,
    mediaRect: media ? rect(media) : null,
    mediaStyle: media
      ? (() => { const s = getComputedStyle(media); return [s.borderTopWidth, s.borderRadius, s.boxShadow]; })()
      : null,
    controls: media && media.tagName === 'VIDEO' ? media.controls : null,
    buttons: [...root.querySelectorAll('.qa-level')].map(b => ({
      text: b.textContent, aria: b.getAttribute('aria-label'), rect: rect(b), style: style(b), disabled: b.disabled })),
    stage: getComputedStyle(root.querySelector('.qa-stage')).backgroundColor,
    app: getComputedStyle(document.querySelector('.stApp')).backgroundColor,
    progress: root.querySelector('.qa-progress-text').textContent,
    overlay: root.querySelector('.qa-overlay').hidden ? '' : root.querySelector('.qa-overlay').textContent,
    hint: root.querySelector('.qa-hint').hidden ? '' : root.querySelector('.qa-hint').textContent,
    viewport: [window.innerWidth, window.innerHeight],
    scrollHeight: document.documentElement.scrollHeight,
  };
}""".replace("LIVE_ROOT", LIVE_ROOT)


def screen(page, settle_ms: int = 300) -> dict:
    """The measured rating screen once a stimulus has loaded and been sized (measured again when a
    run replaced the screen meanwhile)."""
    for _ in range(5):
        page.wait_for_function(
            f"() => {{ const r = {LIVE_ROOT}; const m = r && r.querySelector('.qa-stimulus'); "
            "return !!m && (m.naturalWidth || m.videoWidth) > 0 && m.style.width !== ''; }",
            timeout=60_000,
        )
        page.wait_for_timeout(settle_ms)
        measured = page.evaluate(SCREEN_JS)
        if measured and measured["natural"] and measured["natural"][0]:
            return measured
    raise AssertionError("the rating screen never settled")


def level_button(page, level: int):
    return page.get_by_role("button", name=LABELS[level], exact=True)


def wait_progress(page, done: int) -> None:
    page.get_by_text(re.compile(rf"^{done} of \d+ done$")).first.wait_for(timeout=60_000)


def wait_stored(store: Store, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(votes(store)) < n:
        assert time.monotonic() < deadline, f"expected {n} stored votes, found {len(votes(store))}"
        time.sleep(0.2)


def vote_by_key(page, store: Store, level: int, expected: int) -> None:
    """Press a level's key once its button is open; press again only if nothing was stored."""
    button = level_button(page, level)
    deadline = time.monotonic() + 60
    while not button.is_enabled():
        assert time.monotonic() < deadline, "the level buttons never opened"
        time.sleep(0.2)
    for _ in range(3):
        page.keyboard.press(str(level))
        try:
            wait_stored(store, expected, timeout=10)
            return
        except AssertionError:
            continue
    raise AssertionError(f"key {level} never stored a vote")


# --------------------------------------------------------------------------- tests


def test_join_train_rate_reload_resume(app, browser):
    server = app(sample=True)
    base, store = server["base"], server["store"]
    token = invite(store, SAMPLE_STUDY_NAME, trained=False)
    page = browser.new_page(viewport=LAPTOP)
    page.goto(base + "/")
    page.get_by_label("Your invite token").wait_for(timeout=60_000)
    shoot(page, "01-join")
    page.get_by_label("Your invite token").fill(token)
    page.get_by_role("button", name="Join").click()

    # Training: the three examples of the sample study on the same screen, then the rating page.
    for k in range(3):
        page.get_by_text(re.compile(rf"^Example {k + 1} of 3: ")).wait_for(timeout=60_000)
        screen(page)
        if k == 0:
            shoot(page, "02-training-example")
        page.get_by_role("button", name=re.compile("^(Next example|Done with the examples)$")).click()
    page.get_by_role("button", name="Start rating").wait_for(timeout=60_000)
    shoot(page, "03-before-rating")
    page.get_by_role("button", name="Start rating").click()
    wait_progress(page, 0)
    assert "token=" not in page.url  # the session holds the token; the address bar does not

    level_button(page, 5).click()  # by mouse (the buttons open once a video has ended)
    wait_stored(store, 1)
    wait_progress(page, 1)
    vote_by_key(page, store, 3, 2)  # by keyboard
    wait_progress(page, 2)
    assert [v[2] for v in votes(store)] == [5, 3]

    # Reload of the bare address: the token is not in it, so the page asks for it again.
    before = pending(store)
    page.reload()
    page.get_by_label("Your invite token").wait_for(timeout=30_000)
    assert pending(store) == before

    # Browser closed and opened again with the invite link: same rater, same item on screen with
    # the same server-side start time; the token leaves the address bar again.
    page.context.close()
    page = browser.new_page(viewport=LAPTOP)
    page.goto(f"{base}/?token={token}")
    wait_progress(page, 2)
    assert pending(store) == before
    assert page.get_by_label("Your invite token").count() == 0
    page.wait_for_function("() => !window.location.search.includes('token=')", timeout=30_000)

    pressed = [5, 3]
    for k in range(10):
        if page.get_by_text("nothing left for you to rate").count():
            break
        level = 1 + k % 5
        pressed.append(level)
        vote_by_key(page, store, level, len(pressed))
        # The next item's count, or the end of the study.
        page.get_by_text(re.compile(rf"^{len(pressed)} of \d+ done$|nothing left for you to rate")).first.wait_for(
            timeout=60_000
        )
    page.get_by_text("nothing left for you to rate").wait_for(timeout=30_000)
    shoot(page, "09-finished")
    stored = votes(store)
    assert [v[2] for v in stored] == pressed
    roles = [v[1] for v in stored]
    assert roles.count("test") == 5 and roles.count("gold") >= 1  # every test item once, a gold check among them
    assert len({v[0] for v in stored}) == len(stored)
    assert any(path.endswith(".mp4") for path, _, _ in stored)


def test_stimulus_at_true_size_with_the_whole_scale_in_view(app, browser):
    server = app(lambda store, media: lab_study(store, media))
    store = server["store"]
    token = invite(store, "lab")
    # On a screen with two device pixels per CSS pixel, one image pixel per device pixel is half
    # the CSS size; the factor stays 1.
    # The browser asks for a dark theme here: the screen looks the same (grey surround, dark text).
    retina = browser.new_page(viewport=LAPTOP, device_scale_factor=2, color_scheme="dark")
    retina.goto(f"{server['base']}/?token={token}")
    measured = screen(retina)
    assert measured["client"] == [measured["natural"][0] // 2, measured["natural"][1] // 2]
    assert measured["scale"] == 1
    assert measured["stage"] == measured["app"] == "rgb(128, 128, 128)"
    assert measured["buttons"][0]["style"].split("|")[:2] == ["rgb(140, 140, 140)", "rgb(17, 17, 17)"]
    retina.context.close()

    page = browser.new_page(viewport=LAPTOP, device_scale_factor=1)
    page.goto(f"{server['base']}/?token={token}")
    seen = []
    for k in range(4):
        measured = screen(page)
        seen.append(measured)
        if measured["natural"] == [1024, 768]:
            # One image pixel per screen pixel, drawn as is: no border, rounding or shadow.
            assert measured["client"] == [1024, 768] and measured["scale"] == 1
            assert measured["mediaStyle"] == ["0px", "0px", "none"]
            left, top, right, bottom = measured["mediaRect"]
            assert left >= 0 and top >= 0 and right <= 1366 and bottom <= 768
            if not any(s["natural"] == [1024, 768] for s in seen[:-1]):
                shoot(page, "04-rating-image")
        else:
            # 1600x1200 cannot fit: scaled down to the stimulus area, the factor measured.
            assert measured["natural"] == [1600, 1200]
            assert measured["client"][1] <= 768 and 0.5 < measured["scale"] < 1
            assert measured["scale"] == pytest.approx(measured["client"][0] / 1600, abs=1e-3)
            shoot(page, "05-rating-large-image")
        # The scale: five buttons, best first, one label each, all inside the viewport, one style.
        buttons = measured["buttons"]
        assert [b["aria"] for b in buttons] == ["Excellent", "Good", "Fair", "Poor", "Bad"]
        assert [b["text"] for b in buttons] == ["Excellent5", "Good4", "Fair3", "Poor2", "Bad1"]
        assert all(0 <= b["rect"][1] and b["rect"][3] <= 768 and b["rect"][2] <= 1366 for b in buttons)
        assert len({b["style"] for b in buttons}) == 1
        # A fixed mid-grey surround, and nothing to scroll.
        assert measured["stage"] == measured["app"] == "rgb(128, 128, 128)"
        assert measured["scrollHeight"] <= 768
        assert measured["progress"] == f"{k} of 4 done"
        level_button(page, 1 + k).click()
        wait_stored(store, k + 1)
        if k < 3:
            wait_progress(page, k + 1)
    # No menu offers raters a theme (or anything else): the toolbar is gone.
    assert page.locator('[data-testid="stMainMenu"]').count() == 0
    assert page.locator('[data-testid="stToolbar"]').evaluate_all("els => els.every(e => e.offsetParent === null)")
    with store.session() as s:
        stored = dict(s.execute(select(Item.path, Rating.scale_factor).join(Item, Rating.item_id == Item.id)).all())
    assert stored["photo_0.jpg"] == 1.0
    assert stored["large.jpg"] == pytest.approx(seen[[s["natural"] for s in seen].index([1600, 1200])]["scale"])


def test_video_plays_once_without_seeking_and_opens_the_vote_when_ended(app, browser):
    server = app(lambda store, media: video_study(store, media))
    store = server["store"]
    token = invite(store, "clips")
    page = browser.new_page(viewport=LAPTOP)
    page.goto(f"{server['base']}/?token={token}")
    measured = screen(page, settle_ms=0)
    assert measured["tag"] == "VIDEO" and measured["controls"] is False
    assert all(b["disabled"] for b in measured["buttons"])
    page.get_by_text("How would you rate the quality of this video?").wait_for()
    # Scrubbing to the end is undone, and does not open the vote.
    jumped = page.evaluate(
        """async () => {
          const v = (LIVE_ROOT).querySelector('video');
          await new Promise(r => { if (!v.paused) r(); else v.addEventListener('playing', r, { once: true }); });
          v.currentTime = v.duration - 0.05;
          await new Promise(r => setTimeout(r, 250));
          return [v.currentTime, v.duration, v.ended];
        }""".replace("LIVE_ROOT", LIVE_ROOT)
    )
    assert jumped[0] < jumped[1] * 0.7 and jumped[2] is False
    assert not level_button(page, 4).is_enabled()
    shoot(page, "06-video-playing")
    page.wait_for_function(
        f"() => {{ const r = {LIVE_ROOT}; const v = r && r.querySelector('video'); return !!v && v.ended; }}",
        timeout=30_000,
    )
    level_button(page, 4).wait_for()
    deadline = time.monotonic() + 10
    while not level_button(page, 4).is_enabled():
        assert time.monotonic() < deadline, "the vote did not open when the video ended"
        time.sleep(0.1)
    assert page.get_by_role("button", name="Play the video again").is_visible()  # the study's default: once
    shoot(page, "07-video-ended")
    level_button(page, 4).click()
    wait_stored(store, 1)
    assert [v[2] for v in votes(store)] == [4]


def test_unknown_token_shows_nothing(app, browser):
    server = app(sample=True)
    page = browser.new_page(viewport=LAPTOP)
    page.goto(server["base"] + "/?token=not-a-token")
    page.get_by_text("Unknown or revoked token.").wait_for(timeout=30_000)
    assert level_button(page, 5).count() == 0
    assert votes(server["store"]) == []


def crowd_study(store: Store, media: Path) -> None:
    """A crowd study in the P.808 order: instructions, consent, a screen check (window at least
    1200x700 at 100 % zoom), a two-question quiz, a trap after every two votes, a completion code."""
    from toolkit.store.protocol import add_trap
    from toolkit.store.study_settings import configure_protocol, set_study_texts

    media.mkdir(parents=True, exist_ok=True)
    for k in range(3):
        write_photo(media / f"photo_{k}.jpg", (1024, 768), seed=k)
    for k in range(2):
        write_photo(media / f"gold_{k}.jpg", (1024, 768), seed=20 + k)
    (media / "manifest.csv").write_text(
        "path,role,expected_level,tolerance\nphoto_0.jpg,test,,\nphoto_1.jpg,test,,\nphoto_2.jpg,test,,\n"
        "gold_0.jpg,gold,5,1\ngold_1.jpg,gold,5,1\n"
    )
    with store.session() as s:
        study, _ = setup_study(
            s, StudySetup(name="crowd", media_root=media, manifest=media / "manifest.csv", gold_every=0)
        )
        set_study_texts(
            s,
            study,
            instructions="You will see photos one at a time. Judge the **quality** of each: sharpness, noise, "
            "compression artefacts. Ignore what the photo shows.",
            consent="Your answers are stored with a pseudonymous id and used for research only. "
            "You may stop at any time.",
        )
        configure_protocol(
            s,
            study,
            crowd_platforms=("prolific",),
            completion_code="C0MPL3TE",
            min_viewport_width=1200,
            min_viewport_height=700,
            max_zoom_deviation=0.05,
            quiz_items=2,
            quiz_pass=1,
            trap_every=2,
        )
        add_trap(s, study, "photo_0.jpg", 2)


def test_prolific_worker_goes_from_instructions_to_the_completion_redirect(app, browser):
    server = app(crowd_study)
    base, store = server["base"], server["store"]
    link = f"{base}/?PROLIFIC_PID=5f0c1a2b3c4d&STUDY_ID=st-1&SESSION_ID=se-1&study=crowd"

    # Another worker in a window too small for the study: told why, nothing else offered.
    small = browser.new_page(viewport={"width": 1024, "height": 600})
    small.goto(link.replace("5f0c1a2b3c4d", "60aa0bb1cc2d"))
    small.get_by_role("button", name="I have read the instructions").click()
    small.get_by_role("button", name="I agree").click()
    small.get_by_text(re.compile("The check did not pass")).wait_for(timeout=60_000)
    assert "1024x600" in small.get_by_text(re.compile("The check did not pass")).inner_text()
    shoot(small, "12-screen-check-failed")
    small.context.close()

    page = browser.new_page(viewport=LAPTOP)
    landed: list[str] = []
    page.route(
        "https://app.prolific.com/**", lambda route: (landed.append(route.request.url), route.fulfill(body="ok"))
    )
    page.goto(link)
    page.get_by_role("heading", name="Instructions").wait_for(timeout=60_000)
    page.wait_for_function("() => !window.location.search.includes('PROLIFIC_PID')", timeout=30_000)
    shoot(page, "10-instructions")
    page.get_by_role("button", name="I have read the instructions").click()
    page.get_by_role("heading", name="Consent").wait_for(timeout=60_000)
    page.get_by_role("button", name="I do not agree").wait_for(timeout=30_000)
    page.wait_for_timeout(500)
    shoot(page, "11-consent")
    page.get_by_role("button", name="I agree").click()
    # The screen check passes by itself (1366x768 at 100 %); then how to answer, then the quiz.
    page.get_by_role("button", name="Start the qualification").wait_for(timeout=60_000)
    shoot(page, "13-before-qualification")
    page.get_by_role("button", name="Start the qualification").click()
    page.get_by_text("Qualification: question 1 of 2.").wait_for(timeout=60_000)
    screen(page)
    shoot(page, "14-qualification")
    for answered in range(2):
        page.get_by_text(f"Qualification: question {answered + 1} of 2.").wait_for(timeout=60_000)
        screen(page)
        level_button(page, 5).click()
    # Rating: three photos with the trap after the second.
    answers = 0
    while answers < 4:
        measured = screen(page)
        if measured["overlay"]:
            assert "Poor" in measured["overlay"]
            shoot(page, "15-trap")
            level_button(page, 2).click()
        else:
            level_button(page, 4).click()
        answers += 1
        page.wait_for_function(
            f"(n) => {{ const r = {LIVE_ROOT}; "
            "return !r || r.querySelector('.qa-progress-text').textContent.startsWith(n + ' of'); }",
            arg=answers,
            timeout=60_000,
        )
        assert measured["progress"] == f"{answers - 1} of 4 done"
    page.get_by_role("heading", name="Thank you!").wait_for(timeout=60_000)
    page.get_by_text("C0MPL3TE").wait_for(timeout=30_000)
    page.get_by_role("link", name="Return to Prolific").wait_for(timeout=30_000)
    shoot(page, "16-completion")
    page.wait_for_url(re.compile(r"^https://app\.prolific\.com/submissions/complete\?cc=C0MPL3TE$"), timeout=30_000)
    assert landed == ["https://app.prolific.com/submissions/complete?cc=C0MPL3TE"]
    assert sorted(v[2] for v in votes(store)) == [4, 4, 4]
    with store.session() as s:
        from toolkit.store.schema import Rater

        rater = s.scalar(select(Rater).where(Rater.external_id == "5f0c1a2b3c4d"))
        assert (rater.platform, rater.external_id, rater.external_session) == ("prolific", "5f0c1a2b3c4d", "se-1")
        assert rater.completed_at is not None


def test_a_study_that_refuses_scaling_asks_for_a_larger_window(app, browser):
    def large_only(store: Store, media: Path) -> None:
        from toolkit.store.study_settings import configure_protocol

        media.mkdir(parents=True, exist_ok=True)
        write_photo(media / "large.jpg", (1600, 1200), seed=9)
        with store.session() as s:
            study, _ = setup_study(s, StudySetup(name="strict", media_root=media, gold_every=0))
            configure_protocol(s, study, oversize="refuse")

    server = app(large_only)
    page = browser.new_page(viewport=LAPTOP)
    page.goto(f"{server['base']}/?token={invite(server['store'], 'strict')}")
    measured = screen(page)
    assert measured["natural"] == [1600, 1200]
    assert "too small to show the image at its true size" in measured["hint"]
    assert all(b["disabled"] for b in measured["buttons"])
    assert page.evaluate(f"() => getComputedStyle(({LIVE_ROOT}).querySelector('.qa-frame')).visibility") == "hidden"
