"""The everyday study-store commands at scale: import, re-import, list and export of N votes.

Generates a study of ``--items`` x ``--raters`` votes (default 20,000 x 100 = 2,000,000) in a
temporary SQLite file, and in a scratch database on the PostgreSQL server of
``$QALIGN_TEST_PG_URL`` when that is set (created and dropped here, so the test database is left
alone). Each stage runs the real ``qalign`` command in its own process; the table gives its wall
time and that process's peak resident memory (its VmHWM, read as it exits):

- ``startup``: ``qalign --version``, the interpreter and CLI start every command pays
- ``import``: ``qalign study import`` of the votes table into the empty study
- ``re-import``: the same table again (every vote a duplicate, nothing added)
- ``list``: ``qalign study list``
- ``export csv`` / ``export parquet``: ``qalign study export`` of the raw votes
- ``list, query``: the list's counting query alone, timed in this process

    python bench/store_scale.py                    # 2 M votes
    python bench/store_scale.py --items 5000       # 500 k votes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from toolkit.io import write_table
from toolkit.store import Store, create_study, upgrade
from toolkit.store.schema import Item

# The command reports its own peak (VmHWM, which exec resets): ru_maxrss of a child also counts
# the memory of this process it was forked from, which holds the generated table.
PEAK_FILE_ENV = "QALIGN_BENCH_PEAK_FILE"
QALIGN = [
    sys.executable,
    "-c",
    "import atexit, os\n"
    "def peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    f"            open(os.environ['{PEAK_FILE_ENV}'], 'w').write(line.split()[1])\n"
    "atexit.register(peak)\n"
    "from toolkit.cli import main\n"
    "main()",
]


def make_votes(n_items: int, n_raters: int, path: Path, seed: int = 0) -> int:
    """Every rater votes on every item; written as the ``item,rater,vote`` table import reads."""
    rng = np.random.default_rng(seed)
    items = np.array([f"content_{k // 10:05d}/img_{k:06d}.jpg" for k in range(n_items)], dtype=object)
    raters = np.array([f"rater_{r:04d}" for r in range(n_raters)], dtype=object)
    frame = pd.DataFrame(
        {
            "item": np.tile(items, n_raters),
            "rater": np.repeat(raters, n_items),
            "vote": rng.integers(1, 6, size=n_items * n_raters),
        }
    )
    write_table(frame, path)
    return len(frame)


def make_study(url: str, n_items: int, media: Path) -> None:
    """The study and its items, inserted directly (no media files to hash at this size)."""
    upgrade(url)
    store = Store(url)
    with store.session() as session:
        study = create_study(session, "scale", media)
        session.flush()
        rows = [
            dict(
                study_id=study.id,
                path=f"content_{k // 10:05d}/img_{k:06d}.jpg",
                kind="image",
                sha256=f"{k:064x}",
                content_group=f"content_{k // 10:05d}",
                role="test",
                tolerance=1,
                priority=0,
            )
            for k in range(n_items)
        ]
        session.execute(insert(Item), rows)
    store.dispose()


def run_stage(args: list[str], url: str) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and the last output line of one ``qalign`` command."""
    peak_file = Path(tempfile.mkstemp(prefix="qalign-peak-")[1])
    env = {**os.environ, "COLUMNS": "200", PEAK_FILE_ENV: str(peak_file)}
    start = time.perf_counter()
    command = [*QALIGN, *args] if args[0].startswith("-") else [*QALIGN, *args, "--db", url]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    proc.wait()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"qalign {' '.join(args)} failed ({proc.returncode}):\n{output}")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    peak = int(peak_file.read_text() or 0) / 1024.0
    peak_file.unlink()
    return seconds, peak, lines[-1] if lines else ""


def bench_backend(label: str, url: str, votes: Path, work: Path, n_items: int) -> list[tuple[str, str, float, float]]:
    make_study(url, n_items, work / "media")
    stages = [
        ("startup", ["--version"]),  # the floor every command pays: interpreter and CLI imports
        ("import", ["study", "import", "scale", str(votes)]),
        ("re-import", ["study", "import", "scale", str(votes)]),
        ("list", ["study", "list"]),
        ("export csv", ["study", "export", "scale", "--out", str(work / f"{label}.csv")]),
        ("export parquet", ["study", "export", "scale", "--out", str(work / f"{label}.parquet")]),
    ]
    rows: list[tuple[str, str, float, float]] = []
    for name, args in stages:
        seconds, peak, last = run_stage(args, url)
        print(f"  {label:10} {name:15} {seconds:8.1f} s {peak:8.0f} MiB   {last[:70]}", flush=True)
        rows.append((label, name, seconds, peak))
    # The list's own query, without the command's start (which the startup and list rows include).
    from toolkit.store.overview import studies_overview

    store = Store(url)
    with store.session() as session:
        start = time.perf_counter()
        studies_overview(session)
        seconds = time.perf_counter() - start
    store.dispose()
    print(f"  {label:10} {'list, query':15} {seconds:8.2f} s", flush=True)
    rows.append((label, "list, query", seconds, float("nan")))
    return rows


def scratch_pg(url: str) -> tuple[str, str]:
    """A new empty database next to the test one, and the server URL to drop it from."""
    server = make_url(url)
    name = f"qalign_bench_scale_{os.getpid()}"
    admin = create_engine(server.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False), name


def drop_pg(url: str, name: str) -> None:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--raters", type=int, default=100)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only, even with $QALIGN_TEST_PG_URL set.")
    parser.add_argument("--no-sqlite", action="store_true")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="qalign-store-scale-") as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        votes = work / "votes.csv"
        n = make_votes(options.items, options.raters, votes)
        size = votes.stat().st_size / 2**20
        print(f"{n:,} votes ({options.items:,} items x {options.raters} raters), {size:.0f} MiB CSV")
        rows = []
        if not options.no_sqlite:
            rows += bench_backend("sqlite", f"sqlite:///{work / 'study.db'}", votes, work, options.items)
        pg = os.environ.get("QALIGN_TEST_PG_URL")
        if pg and not options.no_postgres:
            url, name = scratch_pg(pg)
            try:
                rows += bench_backend("postgresql", url, votes, work, options.items)
            finally:
                drop_pg(pg, name)
    print()
    print(f"{'backend':12}{'stage':16}{'seconds':>10}{'peak MiB':>10}")
    for label, name, seconds, peak in rows:
        print(f"{label:12}{name:16}{seconds:10.2f}{peak:10.0f}")


if __name__ == "__main__":
    main()
