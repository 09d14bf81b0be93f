"""Options and helpers shared by the command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(
    None, "--db", envvar="QALIGN_DB_URL", help="Database URL (default sqlite:///qalign.db; env QALIGN_DB_URL)."
)


def optional_path(value: Optional[str]) -> Optional[Path]:
    return Path(value) if value else None
