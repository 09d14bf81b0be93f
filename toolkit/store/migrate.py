"""Schema migrations through Alembic, callable from Python (``qalign db upgrade`` uses these)."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy.exc import OperationalError

from toolkit.errors import StoreError
from toolkit.store.engine import make_engine, resolve_db_url, safe_url, storage_error

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    from alembic.config import Config

    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise StoreError(f"migration scripts not found in {MIGRATIONS_DIR}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", resolve_db_url(url).replace("%", "%%"))
    return cfg


_REVISION_LINE = re.compile(r"^(down_revision|revision)\s*=\s*(None|\"[^\"]*\"|'[^']*')\s*$", re.MULTILINE)


def _head_from_files() -> str | None:
    """The head of the migration chain from the scripts' own ``revision`` / ``down_revision``
    lines, without loading Alembic (a tenth of a second on every command that opens a store);
    None when the scripts say anything this reading does not follow (Alembic decides then)."""
    revisions: dict[str, str | None] = {}
    for script in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = dict((key, ast.literal_eval(value)) for key, value in _REVISION_LINE.findall(script.read_text("utf-8")))
        if "revision" in found:
            if not isinstance(found.get("down_revision"), (str, type(None))):
                return None
            revisions[found["revision"]] = found.get("down_revision")
    heads = set(revisions) - set(revisions.values())
    return heads.pop() if len(heads) == 1 else None


@lru_cache(maxsize=1)
def head_revision() -> str:
    quick = _head_from_files()
    if quick is not None:
        return quick
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise StoreError(f"no migration scripts in {MIGRATIONS_DIR / 'versions'}")
    return head


def _apply(step: Literal["upgrade", "downgrade"], url: str | None, revision: str) -> str:
    from alembic import command

    resolved = resolve_db_url(url)
    # Fails early, with a clear message, on a bad URL. On SQLite the migration's transaction holds
    # the write lock from its start: a second `qalign db upgrade` waits, then finds the schema done.
    engine = make_engine(resolved, write_lock=True)
    try:
        cfg = alembic_config(resolved)
        with engine.begin() as conn:  # one transaction: a failed migration changes nothing
            cfg.attributes["connection"] = conn
            getattr(command, step)(cfg, revision)
    except OperationalError as exc:
        error = storage_error(exc, resolved)
        if error is None:
            raise
        raise error from None
    finally:
        engine.dispose()
    return current_revision(resolved) or "base"


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Bring the database at ``url`` to ``revision``; returns the revision it is at afterwards."""
    return _apply("upgrade", url, revision)


def downgrade(url: str | None, revision: str) -> str:
    """Take the database at ``url`` back to ``revision`` (``base`` removes the schema)."""
    return _apply("downgrade", url, revision)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # noqa: BLE001 - reported with the URL
        raise StoreError(f"cannot read the schema revision of {safe_url(resolve_db_url(url))!r}: {exc}") from None
    finally:
        engine.dispose()
