"""Alembic environment: runs on a connection handed over by ``toolkit.store.migrate`` or on the
URL from ``alembic.ini`` / ``$QALIGN_DB_URL`` when called through the ``alembic`` command."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from toolkit.store.engine import resolve_db_url
from toolkit.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    # SQLite cannot ALTER most things in place: batch mode recreates tables where needed.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url") or resolve_db_url()
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    section = config.get_section(config.config_ini_section, {})
    section.setdefault("sqlalchemy.url", resolve_db_url())
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        run_migrations(conn)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
