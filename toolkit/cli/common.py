"""Options and helpers shared by the command modules."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(
    None, "--db", envvar="QALIGN_DB_URL", help="Database URL (default sqlite:///qalign.db; env QALIGN_DB_URL)."
)
