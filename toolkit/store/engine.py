"""Engines and sessions from a database URL, with errors that say what is wrong with the URL.

SQLite is the embedded default (one file, WAL journal so readers never block the writer);
PostgreSQL works unchanged for labs with many concurrent raters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from toolkit.errors import StoreError

DB_URL_ENV = "QALIGN_DB_URL"
DEFAULT_DB_URL = "sqlite:///qalign.db"


def resolve_db_url(url: str | None = None) -> str:
    """The URL to use: the explicit one, else ``$QALIGN_DB_URL``, else ``sqlite:///qalign.db``."""
    return url or os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL


def parse_db_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"cannot parse database URL {url!r}: expected e.g. sqlite:///study.db or postgresql+psycopg://user@host/db"
        ) from None
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    parsed = url if isinstance(url, URL) else parse_db_url(url)
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - exercised through the engine
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | None = None, check: bool = True) -> Engine:
    """An engine for ``url``; with ``check`` it connects once so a bad URL fails here, clearly."""
    raw = resolve_db_url(url)
    parsed = parse_db_url(raw)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parent = Path(parsed.database).expanduser().resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot open SQLite database {parsed.database!r}: folder {str(parent)!r} does not exist")
    try:
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except NoSuchModuleError:
        raise StoreError(
            f"unsupported database URL {safe_url(parsed)!r}: no SQLAlchemy dialect {parsed.drivername!r}"
        ) from None
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"database driver for {safe_url(parsed)!r} is not installed ({exc.name}); "
            "for PostgreSQL: pip install 'qalign-toolkit[postgres]'"
        ) from None
    except (ArgumentError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot use database URL {safe_url(parsed)!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if check:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"cannot connect to database {safe_url(parsed)!r}: {reason}") from None
    return engine


class Store:
    """One database: an engine plus a session factory. Cheap to keep for the life of a process."""

    def __init__(self, url: str | None = None, engine: Engine | None = None, check_schema: bool = True) -> None:
        self.url = resolve_db_url(url) if engine is None else str(engine.url)
        if engine is None and check_schema:
            parsed = parse_db_url(self.url)
            if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
                if not Path(parsed.database).expanduser().is_file():
                    # Opening would create an empty file; say what to do instead.
                    raise StoreError(
                        f"no database at {parsed.database!r}: run `qalign db upgrade --db {safe_url(parsed)}` first"
                    )
        self.engine = engine or make_engine(self.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if check_schema:
            self.require_schema()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back (nothing written) on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def require_schema(self) -> None:
        """Fail clearly when the database was never migrated or is behind the code."""
        from toolkit.store.migrate import head_revision

        try:
            tables = set(inspect(self.engine).get_table_names())
            current = None
            if "alembic_version" in tables:
                with self.engine.connect() as conn:
                    current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read database {safe_url(self.url)!r}: {exc}") from None
        head = head_revision()
        if current != head:
            state = (
                "has no study schema" if current is None else f"is at schema revision {current}, the code needs {head}"
            )
            raise StoreError(
                f"database {safe_url(self.url)!r} {state}: run `qalign db upgrade --db {safe_url(self.url)}`"
            )

    def dispose(self) -> None:
        self.engine.dispose()
