"""Engines and sessions from a database URL, with errors that say what is wrong with the URL.

SQLite is the embedded default (one file, WAL journal so readers never block the writer);
PostgreSQL works unchanged for labs with many concurrent raters.
"""

from __future__ import annotations

import os
import re
import time
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
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
URL_EXAMPLES = "sqlite:///study.db or postgresql+psycopg://user@host/db"


def resolve_db_url(url: str | None = None) -> str:
    """The URL to use: the explicit one, else ``$QALIGN_DB_URL``, else ``sqlite:///qalign.db``."""
    return url or os.environ.get(DB_URL_ENV) or DEFAULT_DB_URL


def _mask_raw(url: str) -> str:
    # A URL SQLAlchemy cannot parse may still hold a password: mask what looks like one.
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def parse_db_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(f"cannot parse database URL {_mask_raw(url)!r}: expected e.g. {URL_EXAMPLES}") from None
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StoreError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
            f"the study store runs on SQLite or PostgreSQL, e.g. {URL_EXAMPLES}"
        )
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password masked, for messages and logs."""
    parsed = url if isinstance(url, URL) else parse_db_url(url)
    return parsed.render_as_string(hide_password=True)


def sqlite_file(parsed: URL) -> Path | None:
    """The database file of a SQLite URL (also a ``file:`` URI with ``uri=true``); None in memory."""
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return None
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
        if database in ("", ":memory:") or "mode=memory" in str(parsed.database):
            return None
    return Path(database).expanduser()


def error_reason(exc: BaseException) -> str:
    """The first line of a driver error, without SQL, parameters or SQLAlchemy's links."""
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def storage_error(exc: BaseException, url: str | URL) -> StoreError | None:
    """A one-line StoreError for a database the server or file system will not let us write (or
    lock), naming the URL; None for any other error."""
    reason = error_reason(exc)
    lowered = reason.lower()
    if "readonly" in lowered or "read-only" in lowered or "unable to open database file" in lowered:
        return StoreError(
            f"database {safe_url(url)!r} cannot be written ({reason}): check the permissions of the file and its folder"
        )
    if "database is locked" in lowered:
        return StoreError(f"database {safe_url(url)!r} is locked by another process ({reason}); try again")
    return None


SQLITE_BUSY_MS = 30_000
"""How long a SQLite connection waits for another process's write lock before giving up."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - exercised through the engine
    cursor = dbapi_connection.cursor()
    # The wait first: switching to WAL needs a lock that a migrating or importing process may hold.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_exclusive(dbapi_connection, _record) -> None:  # pragma: no cover - exercised through the engine
    # The driver's own transaction handling issues no BEGIN before DDL; take over so that the
    # "begin" hook below decides how each transaction starts.
    dbapi_connection.isolation_level = None


def _begin_immediate(conn) -> None:  # pragma: no cover - exercised through the engine
    # Take the write lock when the transaction starts, not at its first write: a second writer
    # waits (busy_timeout) until the first commits instead of failing half-way.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | None = None, check: bool = True, write_lock: bool = False) -> Engine:
    """An engine for ``url``; with ``check`` it connects once so a bad URL fails here, clearly.

    With ``write_lock``, each SQLite transaction holds the database's write lock from its start
    (``BEGIN IMMEDIATE``): concurrent migrations then run one after the other.
    """
    raw = resolve_db_url(url)
    parsed = parse_db_url(raw)
    file = sqlite_file(parsed)
    if file is not None:
        parent = file.resolve().parent
        if not parent.is_dir():
            raise StoreError(f"cannot open SQLite database {str(file)!r}: folder {str(parent)!r} does not exist")
    try:
        sqlite = parsed.get_backend_name() == "sqlite"
        # The driver's own wait applies while it opens the file, before the pragmas run.
        connect_args = {"timeout": SQLITE_BUSY_MS / 1000} if sqlite else {}
        engine = create_engine(parsed, pool_pre_ping=not sqlite, connect_args=connect_args)
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
        if write_lock:
            event.listen(engine, "connect", _sqlite_exclusive)
            event.listen(engine, "begin", _begin_immediate)
    if check:
        _check_connection(engine, parsed)
    return engine


def _check_connection(engine: Engine, url: URL) -> None:
    # Two processes opening a new SQLite file at once can both ask to switch it to WAL; SQLite
    # answers one of them "locked" at once, without waiting (it would be a deadlock otherwise).
    # The other finishes in a moment: try again for as long as a busy lock may be waited for.
    deadline = time.monotonic() + SQLITE_BUSY_MS / 1000
    delay = 0.05
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except OperationalError as exc:
            locked = url.get_backend_name() == "sqlite" and "database is locked" in str(exc).lower()
            if locked and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            engine.dispose()
            raise StoreError(f"cannot connect to database {safe_url(url)!r}: {error_reason(exc)}") from None


class Store:
    """One database: an engine plus a session factory. Cheap to keep for the life of a process."""

    def __init__(self, url: str | None = None, engine: Engine | None = None, check_schema: bool = True) -> None:
        self.url = resolve_db_url(url) if engine is None else str(engine.url)
        if engine is None and check_schema:
            parsed = parse_db_url(self.url)
            file = sqlite_file(parsed)
            if file is not None and not file.is_file():
                # Opening would create an empty file; say what to do instead.
                raise StoreError(f"no database at {str(file)!r}: run `qalign db upgrade --db {safe_url(parsed)}` first")
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
        except OperationalError as exc:
            session.rollback()
            # A read-only file or a lock held too long: one line naming the database, not SQL.
            error = storage_error(exc, self.url)
            if error is None:
                raise
            raise error from None
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
