"""Typed dataclass configs, settable from a TOML file and overridden by command-line flags.

Every task's CLI does the same three things, with these helpers:

1. ``add_dataclass_flags(parser, MyConfig)`` adds one ``--field-name`` flag per dataclass field
   (type from the annotation, help from ``field(metadata={"help": ...})``). Flags default to
   "not given", so a given flag can be told apart from a default.
2. ``load_toml(path)`` reads ``--config run.toml``: keys are the field names (``lr = 3e-3``,
   ``hidden_size = 512``); tables (``[train]``, ``[model]``) are only for grouping and are
   flattened.
3. ``build_config(MyConfig, toml_values, args)`` = defaults ← TOML ← flags, with every value
   checked against the field's type. An unknown key or a wrong type raises ``RnnkitError``
   naming the file and key, or the flag.

Several dataclasses can share one parser and one TOML file (e.g. a task config and
:class:`~rnnkit.train.TrainConfig`); :func:`check_unknown_keys` then reports keys that none of
them has.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from rnnkit.errors import RnnkitError

__all__ = ["option", "add_dataclass_flags", "load_toml", "build_config", "check_unknown_keys"]

T = TypeVar("T")
_SCALARS = (bool, int, float, str)


def option(default: Any, help_text: str, choices: tuple | None = None) -> Any:
    """A dataclass field with its flag's help text (and allowed values), as
    :func:`add_dataclass_flags` and :func:`build_config` read them."""
    metadata: dict[str, Any] = {"help": help_text}
    if choices:
        metadata["choices"] = choices
    return dataclasses.field(default=default, metadata=metadata)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of an annotation like ``int``, ``float | None``, ``str``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in _SCALARS:
            return args[0], True
    if annotation in _SCALARS:
        return annotation, False
    raise TypeError(f"unsupported config field type {annotation!r}")


def _field_types(cls: type) -> dict[str, tuple[type, bool]]:
    hints = typing.get_type_hints(cls)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: tuple[str, ...] = (),
) -> None:
    """Add a ``--field-name`` flag for each field of dataclass ``cls`` (not in ``exclude``)."""
    defaults = cls()
    for f in dataclasses.fields(cls):
        if not f.init or f.name in exclude:
            continue
        kind, optional = _base_type(typing.get_type_hints(cls)[f.name])
        default = getattr(defaults, f.name)
        text = f.metadata.get("help", "")
        if default != "" and "default" not in text:
            text = f"{text} (default: {default})" if text else f"default: {default}"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": text}
        if kind is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        choices = f.metadata.get("choices")
        metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
        parser.add_argument(
            _flag(f.name), type=_parser_for(kind, optional), metavar=metavar, **kwargs
        )


def _parser_for(kind: type, optional: bool):
    def parse(text: str):
        if optional and text.lower() in ("none", ""):
            return None
        return kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return parse


def load_toml(path: str | os.PathLike | None) -> dict[str, Any]:
    """Flattened key → value mapping of a TOML file; ``{}`` for ``None``."""
    if path is None:
        return {}
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise RnnkitError(f"--config {path}: file not found") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise RnnkitError(f"{path}: not a valid TOML file: {err}") from None
    flat: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for name, item in items:
            if isinstance(item, dict):
                raise RnnkitError(f"{path}: [{key}.{name}]: tables nest one level at most")
            flat[name.replace("-", "_")] = item
    return {"__source__": str(path), **flat}


def _coerce(value: Any, kind: type, optional: bool, where: str) -> Any:
    if value is None and optional:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    expected = kind.__name__ + (" or none" if optional else "")
    raise RnnkitError(f"{where}: expected {expected}, got {value!r}")


def build_config(cls: type[T], toml_values: dict[str, Any], args: Any = None) -> T:
    """Instance of dataclass ``cls``: defaults ← ``toml_values`` ← flags given in ``args``.

    Choices (``field(metadata={"choices": (...)})``) are checked here, for TOML and flags alike.
    The dataclass's own ``__post_init__`` may raise ``ValueError``; it is turned into
    ``RnnkitError`` (its message should name the option).
    """
    source = toml_values.get("__source__", "config")
    given = vars(args) if args is not None else {}
    values: dict[str, Any] = {}
    for name, (kind, optional) in _field_types(cls).items():
        if name in given:
            values[name] = given[name]
        elif name in toml_values:
            values[name] = _coerce(toml_values[name], kind, optional, f"{source}: {name}")
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and f.name in values and values[f.name] not in choices:
            raise RnnkitError(
                f"{_flag(f.name)}: expected one of {', '.join(choices)}, got {values[f.name]!r}"
            )
    try:
        return cls(**values)
    except ValueError as err:
        raise RnnkitError(str(err)) from None


def check_unknown_keys(toml_values: dict[str, Any], *classes: type, extra: tuple = ()) -> None:
    """Raise ``RnnkitError`` for a TOML key that is no field of ``classes`` nor in ``extra``."""
    known = set(extra) | {"__source__"}
    for cls in classes:
        known |= set(_field_types(cls))
    unknown = sorted(set(toml_values) - known)
    if unknown:
        source = toml_values.get("__source__", "config")
        raise RnnkitError(f"{source}: unknown option(s): {', '.join(unknown)}")
