"""Database URLs and files the store cannot use give one line naming the URL (password masked),
and concurrent migrations of one SQLite file run one after the other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.errors import StoreError
from toolkit.store import Store, get_study
from toolkit.store.migrate import current_revision, head_revision, upgrade
from toolkit.store.raters import invite_rater

from fixtures_ui import make_study, sqlite_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://ann:s3cret@db.example/votes", "unsupported database URL 'mysql://ann:***@db.example/votes'"),
        ("foo", "cannot parse database URL 'foo'"),
        ("postgresql://ann:s3cret@host:port/db", "cannot parse database URL 'postgresql://ann:***@host:port/db'"),
        ("sqlite:////no/such/dir/x.db", "'/no/such/dir"),  # the folder is missing: nothing to open or create
    ],
)
def test_unusable_urls_are_one_line(url, message):
    for use in (upgrade, current_revision, Store):
        with pytest.raises(StoreError) as info:
            use(url)
        text = str(info.value)
        assert message in text and "\n" not in text and "s3cret" not in text


def _read_only_check(url: str, tmp_path: Path) -> None:
    store = Store(url)
    try:
        with pytest.raises(StoreError, match=r"cannot be written \(attempt to write a readonly database\)") as info:
            with store.session() as s:
                invite_rater(s, get_study(s, "pilot"), "zed")
        assert "\n" not in str(info.value) and "INSERT" not in str(info.value)
    finally:
        store.dispose()


def test_read_only_database_is_one_line(tmp_path):
    url = sqlite_url(tmp_path)
    store = Store(url)
    make_study(store, tmp_path / "media")
    store.dispose()
    path = url.removeprefix("sqlite:///")
    _read_only_check(f"sqlite:///file:{path}?mode=ro&uri=true", tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="file permissions do not bind root")
def test_read_only_file_is_one_line(tmp_path):
    url = sqlite_url(tmp_path)
    store = Store(url)
    make_study(store, tmp_path / "media")
    store.dispose()
    path = Path(url.removeprefix("sqlite:///"))
    path.chmod(0o444)
    try:
        _read_only_check(url, tmp_path)
    finally:
        path.chmod(0o644)


def test_concurrent_upgrades_of_one_sqlite_file(tmp_path):
    code = "import sys; from toolkit.store.migrate import upgrade; print(upgrade(sys.argv[1]))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for attempt in range(4):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(2)
        ]
        for run in runs:
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, err.decode()[-2000:]
            assert out.decode().strip() == head_revision()
        assert current_revision(url) == head_revision()


def test_head_revision_read_from_the_scripts_is_alembics():
    from alembic.script import ScriptDirectory

    from toolkit.store.migrate import _head_from_files, alembic_config

    assert _head_from_files() == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
