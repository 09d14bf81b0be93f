"""Two app servers (``qalign ui``) on one PostgreSQL database serve one study as one, driven over the
app's own websocket protocol as browsers drive it.

Three raters, each kept on one replica (as a sticky reverse proxy keeps them), vote until nothing is
left; the items have room for fewer votes than the raters would give, so the replicas compete for the
last places. One rater's every vote reaches the server twice (a double click that got through). At the
end every vote a rater saw acknowledged is in the database once, every item is at its target (none
past it), and the database holds no vote that was not sent. Skipped without a PostgreSQL test server.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from toolkit.store import Store, add_rater, get_study
from toolkit.store.assignment import mark_trained
from toolkit.store.schema import Rating

from fixtures_ui import make_study, pg_test_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

e2e = pytest.importorskip("annotation_e2e")
from st_ws_client import AppSession, Screen  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DATABASE = "qalign_test_replicas_ws"  # its own database: the servers outlive any one test's schema reset
N_ITEMS = 6
TARGET = 2  # room for 12 votes; three raters would give 18
VOTE = {"scale": 1.0, "viewport": [1366, 768], "dpr": 1, "zoom": 1, "played": False}


async def open_page(port: int, token: str, log) -> tuple[AppSession, Screen]:
    """The rater opens their invite link: the first stimulus, served by the same replica."""
    session = AppSession("127.0.0.1", port, timeout=60)
    run = await session.open(f"token={token}")
    assert run.screen is not None, f"{log.name} sees no rating screen: {run.texts}"
    await session.fetch(str(run.screen.data["src"]))
    return session, run.screen


async def rate_until_done(session: AppSession, screen: Screen | None, log, twice: bool) -> None:
    """Vote on every stimulus shown until the page has none left, as a rater's browser would."""
    level = 1
    try:
        while screen is not None:
            level = level % 5 + 1
            run = await session.send_event(screen, "vote", {"level": level, **VOTE})
            if twice and run.screen is not None:  # the same click again, for the screen already answered
                run = await session.send_event(screen, "vote", {"level": level, **VOTE})
            if run.screen is None:  # the end page does not say whether the last vote counted
                log.unconfirmed += 1
            acked = run.screen is not None and e2e.counted(screen, run.screen)
            log.votes.append(e2e.Vote(log.name, screen.item_id, level, run.seconds * 1000, None, acked, False))
            screen = run.screen  # None: the page says there is nothing left to rate
    finally:
        await session.close()


async def rate_all(ports: list[int], tokens: list[str], logs) -> None:
    # Every page first, then the votes: a rater whose page opened late would find nothing left.
    pages = await asyncio.gather(*(open_page(ports[log.replica], token, log) for token, log in zip(tokens, logs)))
    await asyncio.gather(
        *(
            rate_until_done(session, screen, log, twice=k == 0)
            for k, ((session, screen), log) in enumerate(zip(pages, logs))
        )
    )


def test_two_replicas_serve_one_study_over_websockets(tmp_path):
    server = pg_test_url()
    if not server:
        pytest.skip("no PostgreSQL test server (run .ci/setup-services or set QALIGN_TEST_PG_URL)")
    try:
        url = e2e.fresh_database(server, DATABASE)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "skip"
        pytest.skip(f"PostgreSQL test server not usable: {exc}")
    store = Store(url)
    make_study(store, tmp_path / "media", n_test=N_ITEMS, target_votes=TARGET, items_per_session=100, name=e2e.STUDY)
    with store.session() as s:
        study = get_study(s, e2e.STUDY)
        raters = [add_rater(s, study, f"r{k}") for k in range(3)]
        for rater, _ in raters:
            mark_trained(s, rater)
        tokens = [token for _, token in raters]
    logs = [e2e.RaterLog(f"r{k}", replica=k % 2, browser=False) for k in range(3)]
    ports = e2e.free_port_block(8751, 2)
    processes = e2e.start_replicas(url, ports, tmp_path)  # as qalign ui runs (docs/deployment.md)
    try:
        asyncio.run(rate_all(ports, tokens, logs))
    except BaseException:
        for port in ports:  # what the servers said, shown with the failure
            print(f"--- replica {port}:", (tmp_path / f"replica-{port}.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        e2e.stop_replicas(processes)
    try:
        lost, doubled = e2e.check_votes(url, logs)
        with store.session() as s:
            per_item = Counter(s.scalars(select(Rating.item_id)))
        assert (lost, doubled) == (0, 0)  # every vote the page took is stored once; nothing else is stored
        assert sorted(per_item.values()) == [TARGET] * N_ITEMS  # every item filled, none past its target
        assert all(log.votes for log in logs)  # both replicas served votes
    finally:
        store.dispose()
        e2e.drop_database(server, DATABASE)
