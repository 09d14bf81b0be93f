"""The ``qalign`` command. Each sub-command lives in its own module and only parses arguments,
calls one library function and prints the result; library errors become one readable line."""

from __future__ import annotations

import importlib
import sys

import typer

from toolkit.errors import ToolkitError

app = typer.Typer(
    name="qalign",
    help="Collect five-level ratings, build Q-Align training data, fine-tune and evaluate visual scorers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Markdown joins the hard-wrapped lines of docstrings into paragraphs in --help.
    rich_markup_mode="markdown",
)

# Modules under toolkit.cli that define ``register(app)``; imported lazily by name so one
# broken optional dependency never hides the other commands.
COMMAND_MODULES: list[str] = [
    "db",
    "study",
    "score",
    "convert",
    "eval",
    "ui",
    "analyze",
    "train",
    "ablate",
    "merge",
    "demo",
    "suggest",
    "export_dataset",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"toolkit.cli.{_name}").register(app)


def main() -> None:
    """Entry point of the console script: library errors print as one line, exit code 2."""
    try:
        app(standalone_mode=False)
    except ToolkitError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            typer.echo("Aborted.", err=True)
            sys.exit(1)
        raise
