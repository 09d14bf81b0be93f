"""Exceptions with messages meant for people: the CLI prints them as one line."""


class ToolkitError(Exception):
    """Base class of every error the toolkit raises on bad input or configuration."""


class InputError(ToolkitError, ValueError):
    """A file, table row, column or value that cannot be used; the message names it."""


class StoreError(ToolkitError):
    """The study database cannot be reached, is not migrated, or refuses an operation."""
