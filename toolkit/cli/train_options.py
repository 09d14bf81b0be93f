"""Command-line options of the training settings, built from the fields of ``TrainConfig``.

``qalign train`` and ``qalign ablate`` take their training options from here, so a setting added
to ``TrainConfig`` (with its plain default and help text in the field metadata) is an option of
both without further typing. Every option defaults to ``None``: "not given", so that the config
file, then the recipe, then the plain default decide.

How a field's type becomes an option:

* ``bool``: a ``--name/--no-name`` switch;
* ``int``, ``float``, ``str``: one value; ``path`` in the metadata makes it a path (``str`` in the
  config); a ``Literal`` of strings: one of its values, listed in ``--help``;
* a list of strings: the option repeated; where the field also takes a single string, one
  value gives that string;
* a list of numbers: one value, comma-separated (``--weights 2,1``).
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Optional, Union

import typer

from toolkit.errors import InputError


@dataclass(frozen=True)
class ConfigOption:
    """One option: the config field it sets and how its value turns into the field's."""

    name: str  # the TrainConfig field, also the parameter name of the command
    flag: str  # --batch-size
    kind: str  # "one", "repeat" or "comma"
    item: type  # the type of one value
    single: bool = False  # "repeat" only: one value stands for itself, not for a list of one


def config_options(exclude: typing.Iterable[str] = (), rename: dict[str, str] | None = None) -> list[ConfigOption]:
    """The options of every ``TrainConfig`` field but ``exclude``, in field order; ``rename``
    maps a field to another option name (without the dashes)."""
    from toolkit.training.config import TrainConfig

    rename = rename or {}
    hints = typing.get_type_hints(TrainConfig)
    options = []
    for f in fields(TrainConfig):
        if f.name in exclude:
            continue
        flag = "--" + rename.get(f.name, f.name).replace("_", "-")
        options.append(ConfigOption(f.name, flag, *_kind(hints[f.name], f.metadata)))
    return options


def _kind(annotation: Any, metadata: Any) -> tuple[str, type, bool]:
    args = _union_args(annotation)
    lists = [a for a in args if typing.get_origin(a) is list]
    if lists:
        (item,) = typing.get_args(lists[0])
        if item in (int, float):
            return "comma", item, False
        return "repeat", Path if metadata.get("path") else item, len(args) > len(lists)
    (base,) = args
    if typing.get_origin(base) is Literal:
        # Kept as the Literal: the option then lists its choices and refuses others, click's way.
        return "one", base, False
    if base is str and metadata.get("path"):
        base = Path
    return "one", base, False


def _union_args(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def parameters(options: list[ConfigOption]) -> list[inspect.Parameter]:
    """The keyword parameters typer reads the options from (it inspects the command's signature)."""
    from toolkit.training.config import TrainConfig

    meta = {f.name: f.metadata for f in fields(TrainConfig)}
    params = []
    for option in options:
        m = meta[option.name]
        limits = {k: m[k] for k in ("min", "max") if k in m}
        if option.kind == "repeat":
            # list[option.item], spelled so that a type checker does not read it as a type expression
            annotation: Any = Optional[types.GenericAlias(list, (option.item,))]
        elif option.kind == "comma":
            annotation = Optional[str]
        else:
            annotation = Optional[option.item]
        flags = f"{option.flag}/--no-{option.flag[2:]}" if option.item is bool else option.flag
        default = typer.Option(None, flags, help=m["help"], **limits)
        params.append(
            inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    return params


def with_options(command: Any, options: list[ConfigOption], before: int = 0) -> Any:
    """Give ``command`` (which takes ``**kwargs``) a signature with the options of ``options``
    inserted after its first ``before`` parameters."""
    own = list(inspect.signature(command).parameters.values())
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(own[:before] + parameters(options) + own[before:])
    return command


def config_values(options: list[ConfigOption], values: dict[str, Any]) -> dict[str, Any]:
    """The settings given on the command line (not None), as the config takes them."""
    settings = {}
    for option in options:
        value = _convert(option, values.get(option.name))
        if value is not None:
            settings[option.name] = value
    return settings


def _convert(option: ConfigOption, value: Any) -> Any:
    if value is None:
        return None
    if option.kind == "comma":
        try:
            return [option.item(v) for v in value.split(",")]
        except ValueError:
            raise InputError(f"{option.flag} must be numbers separated by commas, e.g. 2,1; got {value!r}") from None
    if option.kind == "repeat":
        if not value:
            return None
        items = [str(v) if isinstance(v, Path) else v for v in value]
        return items[0] if option.single and len(items) == 1 else items
    return str(value) if isinstance(value, Path) else value
