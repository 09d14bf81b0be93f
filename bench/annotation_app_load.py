"""Server work per vote in the annotation app: one rater voting through the rate page in-process.

The page runs under ``streamlit.testing`` (no browser, no network). Two figures per vote:

* page run: the whole page run for a click, timed from the click to the end of the run
  (``streamlit.testing`` always runs the whole page);
* fragment: what the server runs for a vote in the app, where only the rating part runs again
  (the vote's callback and the rating fragment), timed inside that run, split into the store
  calls (token check, storing the vote, choosing the next item) and the app's own work.
 Stimuli are 1024x768 noisy photos (JPEG or PNG) on a SQLite store.

    python bench/annotation_app_load.py [--votes 60] [--items 80] [--size 1024x768] [--format jpg|png]

Target from the study app's requirements: median server work per vote <= 20 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RATE_PAGE = ROOT / "annotation_ui" / "views" / "rate.py"


def make_photos(folder: Path, n: int, size: tuple[int, int], suffix: str) -> None:
    """Noisy photos (about 0.5 MB as JPEG, 2.3 MB as PNG at 1024x768): the bytes a real one would cost."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo_{k:04d}.{suffix}", quality=90)


class FragmentClock:
    """Times the vote callback and the rating fragment of ``annotation_ui.rating`` within each run,
    and the store calls they make (the rest is the app's own work)."""

    FRAGMENT = ("_on_vote", "rating_body")
    STORE = ("rater_for_token", "submit_vote", "next_step", "can_undo")

    def __init__(self) -> None:
        self.ms = 0.0
        self.store_ms = 0.0
        try:
            import annotation_ui.rating as rating
        except ImportError:  # an app without the rating fragment: page runs only
            return
        for name in self.FRAGMENT:
            setattr(rating, name, self._timed(getattr(rating, name), "ms"))
        for name in self.STORE:
            setattr(rating, name, self._timed(getattr(rating, name), "store_ms"))

    def _timed(self, function: Callable[..., object], total: str) -> Callable[..., object]:
        def timed(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                setattr(self, total, getattr(self, total) + (time.perf_counter() - t0) * 1000)

        return timed


def vote_once(at, level: int):
    """Click level ``level`` the way the page offers it (its rating component, or older buttons)."""
    buttons = [b for b in at.button if b.key == f"vote-{level}"]
    if buttons:
        return buttons[0].click().run()
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures_ui import send_vote

    return send_vote(at, level)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=60)
    parser.add_argument("--items", type=int, default=80)
    parser.add_argument("--size", default="1024x768", help="stimulus size WxH")
    parser.add_argument("--format", default="jpg", choices=["jpg", "png"], help="stimulus file format")
    parser.add_argument("--warmup", type=int, default=5, help="votes not timed (imports, caches)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from streamlit.testing.v1 import AppTest

    from toolkit.store import Store, add_rater, get_study, upgrade
    from toolkit.store.schema import utcnow
    from toolkit.store.setup import StudySetup, setup_study

    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "media"
        make_photos(media, args.items, (width, height), args.format)
        url = f"sqlite:///{Path(tmp) / 'app.db'}"
        upgrade(url)
        store = Store(url)
        with store.session() as s:
            setup_study(s, StudySetup(name="bench", media_root=media, gold_every=0, items_per_session=10_000))
            rater, token = add_rater(s, get_study(s, "bench"), "rater")
            rater.trained_at = utcnow()
        os.environ["QALIGN_DB_URL"] = url
        os.environ["QALIGN_UI_SAMPLE"] = "0"

        sys.path.insert(0, str(ROOT))
        clock = FragmentClock()
        at = AppTest.from_file(str(RATE_PAGE), default_timeout=120)
        at.query_params["token"] = token
        at.run()
        times: list[float] = []
        fragment: list[float] = []
        store_part: list[float] = []
        for k in range(args.warmup + args.votes):
            clock.ms = clock.store_ms = 0.0
            t0 = time.perf_counter()
            vote_once(at, 1 + k % 5)
            elapsed = (time.perf_counter() - t0) * 1000
            if at.exception:
                print(f"the page failed: {at.exception[0].message}")
                return 1
            if k >= args.warmup:
                times.append(elapsed)
                fragment.append(clock.ms)
                store_part.append(clock.store_ms)
        store.dispose()
    ms, part = np.asarray(times), np.asarray(fragment)
    print(f"{len(ms)} votes on {width}x{height} {args.format.upper()} stimuli, SQLite, {os.cpu_count()} CPUs")
    print(f"page run per vote: median {np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms")
    if part.any():
        print(f"fragment per vote: median {np.median(part):.1f} ms, p95 {np.percentile(part, 95):.1f} ms")
        own = part - np.asarray(store_part)
        print(
            f"  of which store calls: median {np.median(store_part):.1f} ms; "
            f"the app's own work: median {np.median(own):.1f} ms, p95 {np.percentile(own, 95):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
