"""``qalign ui``: the annotation app (Streamlit) over the study database."""

from __future__ import annotations

from typing import Optional

import typer
from rich.markup import escape

from toolkit.cli.common import DbOption, console


def ui_command(
    port: int = typer.Option(8501, "--port", help="Port to serve the app on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0 to reach it from other machines)."
    ),
    db: Optional[str] = DbOption,
    admin_secret: Optional[str] = typer.Option(
        None,
        "--admin-secret",
        envvar="QALIGN_ADMIN_SECRET",
        help="Set the admin page's secret (at least 8 characters); default: keep the stored one or make one.",
    ),
    sample: bool = typer.Option(
        True, "--sample/--no-sample", help="Add the bundled sample study to an empty database."
    ),
    prepare_only: bool = typer.Option(
        False, "--prepare-only", help="Migrate the database and set it up, then exit without serving."
    ),
) -> None:
    """Start the rating app: migrates the database, adds the sample study when empty, serves on HOST:PORT."""
    from toolkit.store import resolve_db_url, safe_url
    from toolkit.store.setup import prepare_database

    url = resolve_db_url(db)
    report = prepare_database(url, sample=sample, admin_secret=admin_secret)
    console.print(
        f"database {escape(safe_url(url))} at revision [bold]{report.revision}[/]"
        + (" (migrated)" if report.upgraded else "")
    )
    if report.sample_created:
        console.print("added the sample study [bold]sample-study[/] (raters may register themselves)")
    if report.generated_admin_secret:
        console.print(f"admin secret (shown once, stored hashed): [bold]{report.generated_admin_secret}[/]")
    if prepare_only:
        return
    from annotation_ui.launch import run_app

    console.print(f"rating app on http://{host}:{port}/  (admin page: /admin; stop with Ctrl-C)", markup=False)
    raise typer.Exit(run_app(url, port=port, host=host, sample=sample))


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
