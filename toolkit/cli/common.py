"""Options and helpers shared by the command modules."""

from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console

from toolkit.analysis.names import SUBJECT_MODELS
from toolkit.qalign import TASKS

console = Console()
err_console = Console(stderr=True)

DbOption = typer.Option(
    None, "--db", envvar="QALIGN_DB_URL", help="Database URL (default sqlite:///qalign.db; env QALIGN_DB_URL)."
)

# Choices built from the library's own lists, so a task or subject model added there is offered
# on the command line without a second list to keep in step.
TaskChoice = Enum("TaskChoice", {name: name for name in TASKS}, type=str)
"""``--task``: what a Q-Align model rates."""

SubjectModelChoice = Enum("SubjectModelChoice", {name: name for name in SUBJECT_MODELS}, type=str)
"""``--model`` / ``--subject-model``: how votes become item scores."""
