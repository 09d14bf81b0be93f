"""A study of AVA size through every command that reads or writes all of its votes.

Simulates a study of ``--items`` x ``--votes-per-item`` votes by ``--raters`` raters (default
250,000 x 200 = 50,000,000 votes by 20,000 raters; each item rated by distinct raters, votes
drawn from a subject model so the MLE has something to fit), written as one CSV vote table
(``--format parquet`` for Parquet). It is imported into a temporary SQLite file, and into a
scratch database on the PostgreSQL server of ``$QALIGN_TEST_PG_URL`` when that is set (created
and dropped here). Each stage runs in its own process; the table gives its wall time and that
process's peak resident memory (VmHWM):

- ``import`` / ``re-import``: ``qalign study import`` into the empty study, then again (0 added)
- ``list``: ``qalign study list``
- ``analyze mle_co``: ``qalign analyze --study --model mle_co``
- ``convert --study``: ``qalign convert --study`` (Q-Align conversations, JSON)
- ``export-dataset``: ``qalign export-dataset --format parquet``
- ``export csv``: ``qalign study export`` of the raw votes
- ``item_progress``, ``study_summary``, ``rater_stats``, ``studies_overview``: the admin
  app's library functions, timed inside their process (start-up and connection not counted)
- ``snapshot+mle_co``: ``read_snapshot`` and the ``mle_co`` fit alone (no screening, agreement or
  reliability), timed the same way

    python bench/study_scale.py                                           # 50 M votes, a while
    python bench/study_scale.py --items 2000 --votes-per-item 20 --raters 200   # a quick run
    python bench/study_scale.py --study-db study.db       # the stages after the import, on a study made before
    python bench/study_scale.py --study-url postgresql+psycopg://...   # the same on a PostgreSQL database
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
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_scale import PEAK_FILE_ENV, drop_pg, run_stage, scratch_pg  # noqa: E402

from toolkit.store import Store, create_study, upgrade  # noqa: E402
from toolkit.store.schema import Item  # noqa: E402

BLOCK_ITEMS = 5_000  # items written per block of the vote table


def item_path(k: np.ndarray) -> list[str]:
    return [f"content_{i // 10:06d}/img_{i:07d}.jpg" for i in k.tolist()]


def make_votes(n_items: int, per_item: int, n_raters: int, path: Path, fmt: str, seed: int = 0) -> int:
    """``item, rater, vote``: item k is rated by raters (k + j * step) mod n_raters, j < per_item."""
    if per_item > n_raters:
        raise SystemExit("--votes-per-item cannot exceed --raters (one vote per rater and item)")
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1.5, 4.5, n_items)
    bias = rng.normal(0.0, 0.3, n_raters)
    noise = rng.uniform(0.3, 1.0, n_raters)
    step = max(1, n_raters // per_item)
    raters = pd.Index([f"rater_{r:05d}" for r in range(n_raters)], dtype=object)
    writer = None
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        for start in range(0, n_items, BLOCK_ITEMS):
            k = np.arange(start, min(n_items, start + BLOCK_ITEMS))
            item = np.repeat(k, per_item)
            rater = (item + np.tile(np.arange(per_item), len(k)) * step) % n_raters
            score = quality[item] + bias[rater] + noise[rater] * rng.standard_normal(item.size)
            vote = np.clip(np.rint(score), 1, 5).astype(np.int64)
            frame = pd.DataFrame(
                {
                    "item": pd.Categorical.from_codes(item - start, categories=item_path(k)),
                    "rater": pd.Categorical.from_codes(rater, categories=raters),
                    "vote": vote,
                }
            )
            if fmt == "csv":
                frame.to_csv(handle, header=start == 0, index=False)
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(frame.astype({"item": str, "rater": str}), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
            n += len(frame)
    if writer is not None:
        writer.close()
    return n


def make_media(n_items: int, media: Path) -> None:
    """One small PNG, hard-linked under every item's path (the dataset export reads the files;
    the stored hashes differ, so none counts as a duplicate)."""
    from PIL import Image

    for k, path in enumerate(item_path(np.arange(n_items))):
        if k % 50_000 == 0:  # a file system allows some 65,000 links to one file
            original = media / f"original_{k}.png"
            Image.new("RGB", (8, 8), (90, 120, 150)).save(original)
        target = media / path
        target.parent.mkdir(exist_ok=True)
        os.link(original, target)


def make_study(url: str, n_items: int, media: Path) -> None:
    """The study and its items, inserted directly (no media files to hash at this size)."""
    upgrade(url)
    store = Store(url)
    with store.session() as session:
        study = create_study(session, "scale", media)
        session.flush()
        for start in range(0, n_items, 50_000):
            k = np.arange(start, min(n_items, start + 50_000))
            rows = [
                dict(
                    study_id=study.id,
                    path=path,
                    kind="image",
                    sha256=f"{i:064x}",
                    content_group=f"content_{i // 10:06d}",
                    role="test",
                    tolerance=1,
                    priority=0,
                )
                for i, path in zip(k.tolist(), item_path(k))
            ]
            session.execute(insert(Item), rows)
    store.dispose()


LIBRARY = """
import sys, time
from toolkit.store import Store, get_study
from toolkit.store.overview import studies_overview
from toolkit.store.progress import item_progress, rater_stats, study_summary
name = sys.argv[1]
store = Store({url!r})
if name == "snapshot+mle_co":  # the study read and the subject model, without screening or agreement
    from toolkit.analysis import fit_subject_model, prepare_votes
    from toolkit.store import read_snapshot
    with store.session() as session:
        start = time.perf_counter()
        snapshot = read_snapshot(session, get_study(session, "scale"))
        read = time.perf_counter() - start
        votes = prepare_votes(snapshot.votes, content_col="content_group", items=snapshot.test_items["item"])
        out = fit_subject_model(votes, "mle_co").items
        print(f"{{time.perf_counter() - start:.3f}} s in the calls (read {{read:.1f}} s), {{len(out)}} items")
    sys.exit(0)
calls = {{"item_progress": item_progress, "study_summary": study_summary, "rater_stats": rater_stats}}
with store.session() as session:
    study = get_study(session, "scale")
    start = time.perf_counter()
    out = studies_overview(session) if name == "studies_overview" else calls[name](session, study)
    print(f"{{time.perf_counter() - start:.3f}} s in the call, {{len(out)}} rows")
store.dispose()
"""


def run_library(name: str, url: str) -> tuple[float, float, str]:
    """A store function in its own process: (seconds inside the call, peak MiB, its line)."""
    peak_file = Path(tempfile.mkstemp(prefix="qalign-peak-")[1])
    code = (
        "import atexit, os\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        f"            open(os.environ['{PEAK_FILE_ENV}'], 'w').write(line.split()[1])\n"
        "atexit.register(peak)\n" + LIBRARY.format(url=url)
    )
    env = {**os.environ, PEAK_FILE_ENV: str(peak_file)}
    proc = subprocess.run([sys.executable, "-c", code, name], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout}{proc.stderr}")
    line = proc.stdout.strip().splitlines()[-1]
    peak = int(peak_file.read_text() or 0) / 1024.0
    peak_file.unlink()
    return float(line.split()[0]), peak, line


def bench_backend(
    label: str,
    url: str,
    votes: Path,
    work: Path,
    n_items: int,
    imported: bool = False,
    skip: frozenset[str] = frozenset(),
) -> list[tuple[str, str, float, float]]:
    """Every stage on the back-end at ``url`` but those in ``skip``; ``imported``: the study is
    there already (no set-up, no import stages)."""
    if not imported:
        start = time.perf_counter()
        make_study(url, n_items, work / "media")
        print(f"  {label:10} {'items':17} {time.perf_counter() - start:8.1f} s  (set-up, not a stage)", flush=True)
    out = work / label
    out.mkdir()
    imports = (
        []
        if imported
        else [
            ("import", ["study", "import", "scale", str(votes)]),
            ("re-import", ["study", "import", "scale", str(votes)]),
        ]
    )
    stages = [
        *imports,
        ("list", ["study", "list"]),
        ("analyze mle_co", ["analyze", "--study", "scale", "--model", "mle_co", "--out", str(out / "scores.csv")]),
        ("convert --study", ["convert", "--study", "scale", "--out", str(out / "convert"), "--format", "json"]),
        ("export-dataset", ["export-dataset", "scale", "--out", str(out / "dataset"), "--format", "parquet"]),
        ("export csv", ["study", "export", "scale", "--out", str(out / "votes.csv")]),
    ]
    rows: list[tuple[str, str, float, float]] = []
    for name, args in stages:
        if name in skip:
            continue
        try:
            seconds, peak, last = run_stage(args, url)
        except SystemExit as failed:  # reported, and the later stages still run
            seconds, peak, last = float("nan"), float("nan"), str(failed).splitlines()[-1]
        print(f"  {label:10} {name:17} {seconds:8.1f} s {peak:8.0f} MiB   {last[:70]}", flush=True)
        rows.append((label, name, seconds, peak))
    for name in ("studies_overview", "study_summary", "item_progress", "rater_stats", "snapshot+mle_co"):
        if name in skip:
            continue
        try:
            seconds, peak, last = run_library(name, url)
        except SystemExit as failed:
            seconds, peak, last = float("nan"), float("nan"), str(failed).splitlines()[-1]
        print(f"  {label:10} {name:17} {seconds:8.2f} s {peak:8.0f} MiB   {last[:70]}", flush=True)
        rows.append((label, name, seconds, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=250_000)
    parser.add_argument("--votes-per-item", type=int, default=200)
    parser.add_argument("--raters", type=int, default=20_000)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="The vote table's format.")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the files (default: a temporary one).")
    parser.add_argument(
        "--votes", type=Path, default=None, help="Use this vote table (made by an earlier run) instead of a new one."
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only, even with $QALIGN_TEST_PG_URL set.")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--study-db",
        type=Path,
        default=None,
        help="A SQLite file holding the study 'scale' already (made by an earlier run or an import of the same"
        " table): run the stages after the import on it, nothing generated or imported.",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="Stages to leave out, comma-separated as the table names them (e.g. 'export csv,rater_stats').",
    )
    parser.add_argument(
        "--study-url",
        default=None,
        help="Like --study-db, for a database URL (e.g. a PostgreSQL database an earlier import filled).",
    )
    options = parser.parse_args()
    skip = frozenset(name.strip() for name in options.skip.split(",") if name.strip())
    if options.study_db is not None or options.study_url is not None:
        db = options.study_url or f"sqlite:///{options.study_db.resolve()}"
        label = "postgresql" if db.startswith("postgresql") else "sqlite"
        with tempfile.TemporaryDirectory(prefix="qalign-study-scale-", dir=options.work) as tmp:
            rows = bench_backend(label, db, Path(), Path(tmp), 0, True, skip)
        print_rows(rows)
        return

    with tempfile.TemporaryDirectory(prefix="qalign-study-scale-", dir=options.work) as tmp:
        work = Path(tmp)
        (work / "media").mkdir()
        votes = options.votes or work / f"votes.{options.format}"
        start = time.perf_counter()
        make_media(options.items, work / "media")
        if options.votes is None:
            n = make_votes(options.items, options.votes_per_item, options.raters, votes, options.format)
        else:
            n = options.items * options.votes_per_item
        size = votes.stat().st_size / 2**20
        print(
            f"{n:,} votes ({options.items:,} items x {options.votes_per_item} votes, {options.raters:,} raters), "
            f"{size:.0f} MiB {options.format}, written in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        rows = []
        if not options.no_sqlite:
            rows += bench_backend("sqlite", f"sqlite:///{work / 'study.db'}", votes, work, options.items, skip=skip)
        pg = os.environ.get("QALIGN_TEST_PG_URL")
        if pg and not options.no_postgres:
            url, name = scratch_pg(pg)
            try:
                rows += bench_backend("postgresql", url, votes, work, options.items, skip=skip)
            finally:
                drop_pg(pg, name)
    print_rows(rows)


def print_rows(rows: list[tuple[str, str, float, float]]) -> None:
    print()
    print(f"{'backend':12}{'stage':18}{'seconds':>10}{'peak MiB':>10}")
    for label, name, seconds, peak in rows:
        print(f"{label:12}{name:18}{seconds:10.2f}{peak:10.0f}")


if __name__ == "__main__":
    main()
