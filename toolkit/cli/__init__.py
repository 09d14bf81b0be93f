"""The ``qalign`` command. Each sub-command lives in its own module and only parses arguments,
calls one library function and prints the result; library errors become one readable line."""

from __future__ import annotations

import importlib
import os
import sys

import typer

from toolkit.errors import ToolkitError

DEBUG_ENV = "QALIGN_DEBUG"

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


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"qalign {version('qalign-toolkit')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", envvar=DEBUG_ENV, help="Show the full traceback of an unexpected error."
    ),
) -> None:
    """Collect five-level ratings, build Q-Align training data, fine-tune and evaluate visual scorers."""
    if debug:
        os.environ[DEBUG_ENV] = "1"  # read by main() when an error reaches it


def main() -> None:
    """Entry point of the console script.

    Usage errors (a typo'd command or option, a missing argument) print click's usual two lines and
    exit with 2; library errors print one line and exit with 2; anything unexpected prints one
    line naming the exception and how to see its traceback, and exits with 1.
    """
    try:
        app()  # standalone mode: click reports its own usage errors
    except ToolkitError as exc:
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes"):
            raise
        message = str(exc).strip().splitlines()
        typer.secho(
            f"error: unexpected {type(exc).__name__}: {message[0] if message else ''}"
            f" (run again with --debug or {DEBUG_ENV}=1 for the traceback)",
            err=True,
            fg="red",
        )
        sys.exit(1)
