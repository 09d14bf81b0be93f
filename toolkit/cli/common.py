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


class TaskChoice(str, Enum):
    """``--task``: what a Q-Align model rates."""

    quality = "quality"
    aesthetics = "aesthetics"


class SubjectModelChoice(str, Enum):
    """``--model`` / ``--subject-model``: how votes become item scores."""

    mos = "mos"
    mle = "mle"
    mle_co = "mle_co"
    bt500 = "bt500"
    p913 = "p913"


# The members are spelled out so that a type checker sees them; a task or subject model added to
# the library's lists without its choice here stops the command line at import, not silently.
def _check_in_step(choice: type[Enum], names: tuple[str, ...]) -> None:
    if tuple(member.value for member in choice) != names:
        raise RuntimeError(f"{choice.__name__} is out of step with the library's list {names}")


_check_in_step(TaskChoice, TASKS)
_check_in_step(SubjectModelChoice, SUBJECT_MODELS)
