"""Wall times of the admin page on a large study, through streamlit.testing (no browser).

A study of ``--items`` test items with ``--votes`` votes each (from ``--raters`` raters) in a fresh
SQLite file, next to ``--studies`` - 1 small studies. Prints the seconds of: the overview, the
Results tab's first run (labels, subject-model fit, split-half, alpha and ICC computed), a click
on it (everything cached), a run after one new vote (the figures kept, with a note), the update
the administrator asks for (everything computed again), the Raters tab first and cached, and the
figures the page draws.

    .venv/bin/python bench/admin_scale.py --items 10000 --votes 15
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import insert, select
from streamlit.testing.v1 import AppTest

from toolkit.store import Store, add_rater, get_study, import_votes, record_rating, upgrade
from toolkit.store.admin_secret import set_admin_secret
from toolkit.store.schema import Item
from toolkit.store.studies import create_study

ADMIN = str(Path(__file__).resolve().parents[1] / "annotation_ui" / "views" / "admin.py")
SECRET = "bench-admin-secret"


def make_study(store: Store, root: Path, name: str, n_items: int, n_raters: int, per_item: int, seed: int) -> None:
    with store.session() as s:
        study = create_study(s, name, media_root=root, target_votes=per_item)
        s.flush()
        s.execute(
            insert(Item),
            [
                dict(
                    study_id=study.id,
                    path=f"img_{k:06d}.jpg",
                    kind="image",
                    sha256=f"{k:064x}",
                    content_group=f"c_{k // 5:06d}",
                    role="test",
                    tolerance=1,
                    priority=0,
                )
                for k in range(n_items)
            ],
        )
    rng = np.random.default_rng(seed)
    quality = rng.uniform(1, 5, n_items)
    raters = np.stack([rng.choice(n_raters, per_item, replace=False) for _ in range(n_items)])
    votes = np.clip(np.rint(quality[:, None] + rng.normal(0, 0.8, raters.shape)), 1, 5).astype(int)
    frame = pd.DataFrame(
        {
            "item": np.repeat([f"img_{k:06d}.jpg" for k in range(n_items)], per_item),
            "rater": [f"rater_{r:03d}" for r in raters.ravel()],
            "vote": votes.ravel(),
        }
    )
    with store.session() as s:
        import_votes(s, get_study(s, name), frame)


def timed(label: str, run) -> AppTest:
    start = time.perf_counter()
    at = run()
    seconds = time.perf_counter() - start
    assert not at.exception, at.exception
    print(f"{label:<48} {seconds:7.2f} s")
    return at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--votes", type=int, default=15)
    parser.add_argument("--raters", type=int, default=60)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument(
        "--db",
        help="Run on this database instead (a URL; e.g. the study bench/study_scale.py made). Its admin "
        "secret is set to the bench's, and one vote is added to --study.",
    )
    parser.add_argument("--study", default="large", help="With --db: the study to open.")
    args = parser.parse_args()

    if args.db:
        url, name = args.db, args.study
        upgrade(url)
        store = Store(url)
        with store.session() as s:
            set_admin_secret(s, SECRET)
        print(f"study {name!r} of {url}")
    else:
        name = "large"
        root = Path(tempfile.mkdtemp(prefix="qalign-admin-bench-"))
        url = f"sqlite:///{root / 'bench.db'}"
        upgrade(url)
        store = Store(url)
        with store.session() as s:
            set_admin_secret(s, SECRET)
        make_study(store, root, name, args.items, args.raters, args.votes, seed=0)
        for k in range(args.studies - 1):
            make_study(store, root, f"small-{k:02d}", 200, 10, 5, seed=k + 1)
        print(f"{args.items:,} items x {args.votes} votes ({args.items * args.votes:,} votes), {args.studies} studies")
    os.environ.update(QALIGN_DB_URL=url, QALIGN_UI_SAMPLE="0")

    at = AppTest.from_file(ADMIN, default_timeout=600).run()
    at.text_input(key="admin_secret").input(SECRET)
    at = timed("sign in + overview", lambda: at.button(key="FormSubmitter:admin_login-Sign in").click().run())
    timed("overview again", at.run)
    at = timed("open the study (Progress tab)", lambda: at.selectbox(key="admin_study").set_value(name).run())
    timed("Progress, again", at.run)

    def tab(name: str) -> AppTest:
        at.session_state["admin_tab"] = name
        return at.run()

    timed("Results, first run (labels, figures, table)", lambda: tab("Results"))
    if any(b.key == "results_fit" for b in at.button):
        timed("Results, reliability on request (fit)", lambda: at.button(key="results_fit").click().run())
    timed("Results, a click (cached)", lambda: at.selectbox(key="results_sort").set_value("Item name").run())
    timed("Results, a search (cached)", lambda: at.text_input(key="results_search").input("img_0001").run())
    with store.session() as s:
        study = get_study(s, name)
        first = s.scalar(select(Item).where(Item.study_id == study.id).order_by(Item.id).limit(1))
        rater, _ = add_rater(s, study, f"bench-rater-{time.time_ns()}")
        record_rating(s, rater, first, 3)
        s.commit()
    timed("Results after one new vote (figures kept)", at.run)
    timed("Results, Update the figures (labels again)", lambda: at.button(key="results_refresh").click().run())
    timed("Raters, first run (stats, screening)", lambda: tab("Raters"))
    timed("Raters, again (cached)", at.run)
    print(f"figures on Results: {len(tab('Results').get('image'))}")
    store.dispose()


if __name__ == "__main__":
    main()
