"""``qalign db``: create or update the study database schema."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from toolkit.cli.common import DbOption, console

db_app = typer.Typer(help="Create or update the study database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_command(
    db: Optional[str] = DbOption,
    revision: str = typer.Argument("head", help="Target revision."),
) -> None:
    """Apply the migrations up to REVISION (creates the database file for SQLite)."""
    from toolkit.store import resolve_db_url, safe_url, upgrade

    at = upgrade(db, revision)
    console.print(f"database {escape(safe_url(resolve_db_url(db)))} at revision [bold]{at}[/]")


@db_app.command("current")
def current_command(db: Optional[str] = DbOption) -> None:
    """Show the schema revision of the database and the one this code needs."""
    from toolkit.store import current_revision, head_revision

    console.print(f"database: {current_revision(db) or 'empty (run qalign db upgrade)'}; code: {head_revision()}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
