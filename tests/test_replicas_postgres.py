"""Several app processes (replicas) serving one study from one database act as one.

Each rater is served by two processes at once (two tabs on two replicas), every vote is sent
twice, the processes start together, and the items have room for fewer votes than the raters would
give: at the end no item is past its target (each is exactly at it), every vote a process stored is
in the database once, and no process saw an error. Run on PostgreSQL (skipped without a server) and
on SQLite. Without the item locks of ``toolkit.store.assignment`` one of the two fails in most runs.
"""

from __future__ import annotations

import multiprocessing
import random
from collections import Counter

import pytest
from sqlalchemy import func, select

from toolkit.store import Store, add_rater, get_study

from fixtures_ui import fresh_pg_url, make_study, sqlite_url

N_PROCESSES = 3
N_RATERS = 9
N_ITEMS = 5
TARGET = 3  # room for 15 votes; the raters would give 45


def replica(url: str, tokens: list[str], seed: int, start, results) -> None:  # runs in a child process
    from toolkit.store import Store, rater_for_token
    from toolkit.store.assignment import next_step, submit_vote

    store = Store(url)
    start.wait(timeout=120)  # every replica is up: now they race
    rng = random.Random(seed)
    created: list[tuple[str, int, int]] = []
    repeats = refused = 0
    errors: list[str] = []
    active = list(tokens)
    while active:
        token = rng.choice(active)
        try:
            with store.session() as s:
                step = next_step(s, rater_for_token(s, token))
                if step.status != "rate":
                    active.remove(token)
                    continue
                assert step.item is not None
                item_id = step.item.item_id
            level = rng.randint(1, 5)
            for _click in range(2):  # a double click: the second must not count
                with store.session() as s:
                    result = submit_vote(s, rater_for_token(s, token), item_id, level)
                if not result.accepted:
                    refused += 1
                elif result.created:
                    created.append((token, item_id, result.level))
                else:
                    repeats += 1
        except Exception as exc:  # noqa: BLE001 - reported to the test
            errors.append(f"{type(exc).__name__}: {exc}")
            break
    store.dispose()
    results.put(dict(created=created, repeats=repeats, refused=refused, errors=errors))


def hammer(url: str, media) -> None:
    from toolkit.store.schema import Rater, Rating
    from toolkit.store.studies import hash_token

    setup = Store(url)
    make_study(setup, media, n_test=N_ITEMS, target_votes=TARGET, items_per_session=100, name="replicas")
    with setup.session() as s:
        study = get_study(s, "replicas")
        tokens = [add_rater(s, study, f"r{k}")[1] for k in range(N_RATERS)]
    setup.dispose()

    # Rater k is served by processes k and k+1: two replicas answer the same rater at once.
    shares = [[t for k, t in enumerate(tokens) if p in (k % N_PROCESSES, (k + 1) % N_PROCESSES)] for p in range(3)]
    context = multiprocessing.get_context("spawn")  # fresh interpreters, like separate servers
    results, start = context.Queue(), context.Barrier(N_PROCESSES)
    processes = [
        context.Process(target=replica, args=(url, share, seed, start, results)) for seed, share in enumerate(shares)
    ]
    for p in processes:
        p.start()
    outcomes = [results.get(timeout=300) for _ in processes]
    for p in processes:
        p.join(timeout=60)

    assert [o["errors"] for o in outcomes] == [[]] * N_PROCESSES
    created = [vote for o in outcomes for vote in o["created"]]
    check = Store(url)
    with check.session() as s:
        by_hash = {hash_token(t): t for t in tokens}
        stored = [
            (by_hash[h], item, level)
            for h, item, level in s.execute(
                select(Rater.token_hash, Rating.item_id, Rating.level).join(Rater, Rating.rater_id == Rater.id)
            )
        ]
        per_item = dict(s.execute(select(Rating.item_id, func.count()).group_by(Rating.item_id)).all())
    check.dispose()
    # No vote lost or doubled: what the processes stored is exactly what the database holds.
    assert Counter(created) == Counter(stored) and len(set(stored)) == len(stored)
    assert len({(t, i) for t, i, _ in stored}) == len(stored)
    # No item past its target, and every item reached it (nothing left half-served).
    assert sorted(per_item.values()) == [TARGET] * N_ITEMS
    assert sum(o["repeats"] for o in outcomes) >= len(created)  # every double click answered, not stored


def own_pg_database() -> str:
    """A database of this test's own on the test server (other test files reset the shared one
    while they run); the shared one where the server does not let us create databases."""
    url = fresh_pg_url()  # skips without a server
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from toolkit.store import upgrade

    shared = make_url(url)
    own = shared.set(database=f"{shared.database}_replicas")
    try:
        engine = create_engine(shared, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{own.database}"'))
            conn.execute(text(f'CREATE DATABASE "{own.database}"'))
        engine.dispose()
    except Exception:  # noqa: BLE001 - no right to create databases: use the shared one
        return url
    own_url = own.render_as_string(hide_password=False)
    upgrade(own_url)
    return own_url


@pytest.mark.postgres
def test_replicas_on_postgresql(tmp_path):
    hammer(own_pg_database(), tmp_path / "media")


def test_replicas_on_sqlite(tmp_path):
    hammer(sqlite_url(tmp_path), tmp_path / "media")
