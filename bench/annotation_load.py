"""Vote-submission load on the study store: latency p50/p95 and votes/s for N concurrent raters.

Each simulated rater is a thread that asks for its next item and submits a vote, as the app does
for each click, through one shared ``Store`` (one engine and connection pool, like one app server).
Timed: the submit transaction (token check + ``submit_vote`` + commit), and the next-item
transaction separately. Runs on SQLite (a temporary file) and, when a server is given or found,
on PostgreSQL (its public schema is dropped and recreated: use a scratch database).

    python bench/annotation_load.py [--raters 20] [--votes 30] [--think-ms 0] [--pg-url URL | --no-pg]

Target from the study app's requirements: p95 submit latency < 50 ms at 20 raters.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from toolkit.store import Store, add_rater, get_study, rater_for_token, upgrade
from toolkit.store.assignment import next_step, submit_vote
from toolkit.store.setup import StudySetup, setup_study

PG_URL_FILE = Path(os.environ.get("QALIGN_TEST_PG_URL_FILE", "/tmp/qalign-test-pg.url"))


def make_media(folder: Path, n_items: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_items):
        Image.fromarray(np.full((8, 8, 3), k % 256, dtype=np.uint8)).save(folder / f"item_{k:04d}.png")


def reset_postgres(url: str) -> None:
    from sqlalchemy import text

    from toolkit.store.engine import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def run(url: str, media: Path, raters: int, votes: int, think_ms: float) -> dict[str, float]:
    upgrade(url)
    store = Store(url)
    with store.session() as s:
        study, _ = setup_study(
            s, StudySetup(name="load", media_root=media, target_votes=raters, gold_every=0, items_per_session=10_000)
        )
        tokens = [add_rater(s, get_study(s, "load"), f"rater{k:03d}")[1] for k in range(raters)]

    submit_ms: list[float] = []
    next_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(raters + 1)

    def rater(token: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        mine_submit, mine_next = [], []
        try:
            start.wait()
            for _ in range(votes):
                t0 = time.perf_counter()
                with store.session() as s:
                    step = next_step(s, rater_for_token(s, token))
                t1 = time.perf_counter()
                mine_next.append((t1 - t0) * 1000)
                if step.status != "rate":
                    break
                if think_ms:
                    time.sleep(rng.exponential(think_ms) / 1000)
                t2 = time.perf_counter()
                with store.session() as s:
                    submit_vote(s, rater_for_token(s, token), step.item.item_id, int(rng.integers(1, 6)))
                mine_submit.append((time.perf_counter() - t2) * 1000)
        except Exception as exc:  # noqa: BLE001 - counted and printed
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            submit_ms.extend(mine_submit)
            next_ms.extend(mine_next)

    threads = [threading.Thread(target=rater, args=(t, k)) for k, t in enumerate(tokens)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    store.dispose()
    sub, nxt = np.asarray(submit_ms), np.asarray(next_ms)
    return {
        "votes": float(sub.size),
        "errors": float(len(errors)),
        "submit_p50_ms": float(np.percentile(sub, 50)) if sub.size else float("nan"),
        "submit_p95_ms": float(np.percentile(sub, 95)) if sub.size else float("nan"),
        "next_p50_ms": float(np.percentile(nxt, 50)) if nxt.size else float("nan"),
        "next_p95_ms": float(np.percentile(nxt, 95)) if nxt.size else float("nan"),
        "votes_per_s": sub.size / wall if wall else float("nan"),
        "wall_s": wall,
        "first_error": errors[0] if errors else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=20)
    parser.add_argument("--votes", type=int, default=30, help="votes per rater")
    parser.add_argument("--think-ms", type=float, default=0.0, help="mean pause between seeing an item and voting")
    parser.add_argument(
        "--pg-url", default=None, help="PostgreSQL scratch database (default: $QALIGN_TEST_PG_URL or the CI file)"
    )
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)

    pg = (
        None
        if args.no_pg
        else (
            args.pg_url
            or os.environ.get("QALIGN_TEST_PG_URL")
            or (PG_URL_FILE.read_text().strip() if PG_URL_FILE.is_file() else None)
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        media = Path(tmp) / "media"
        make_media(media, args.votes * 2)
        backends = [("sqlite", f"sqlite:///{Path(tmp) / 'load.db'}")]
        if pg:
            backends.append(("postgresql", pg))
        print(f"{args.raters} raters x {args.votes} votes, think time {args.think_ms:g} ms, {os.cpu_count()} CPUs")
        print(
            f"{'backend':<11} {'votes':>6} {'err':>4} {'submit p50':>11} {'submit p95':>11} "
            f"{'next p50':>9} {'next p95':>9} {'votes/s':>8}"
        )
        for name, url in backends:
            if name == "postgresql":
                try:
                    reset_postgres(url)
                except Exception as exc:  # noqa: BLE001 - no server: say so and go on
                    print(f"{name:<11} skipped: {exc}")
                    continue
            r = run(url, media, args.raters, args.votes, args.think_ms)
            print(
                f"{name:<11} {int(r['votes']):>6} {int(r['errors']):>4} "
                f"{r['submit_p50_ms']:>9.1f}ms {r['submit_p95_ms']:>9.1f}ms "
                f"{r['next_p50_ms']:>7.1f}ms {r['next_p95_ms']:>7.1f}ms {r['votes_per_s']:>8.0f}"
            )
            if r["first_error"]:
                print(f"  first error: {r['first_error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
