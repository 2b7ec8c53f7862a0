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

A field whose type is itself a dataclass is a nested section (an application's ``model``
options inside its config): its fields become flags and TOML keys of their own, by their own
names, so every name must be unique across the sections (checked when the flags are added).
``option(..., aliases=("dev",))`` keeps an old name working: its flag and TOML key still set the
field, with one warning line naming the new flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from rnnkit._options import is_section, leaf_fields, option, section
from rnnkit.errors import RnnkitError

__all__ = ["option", "section", "leaf_fields", "add_dataclass_flags", "load_toml",
           "build_config", "flat_options", "check_unknown_keys", "deprecated"]

T = TypeVar("T")
_SCALARS = (bool, int, float, str)


def deprecated(old: str, new: str) -> None:
    """The one warning line of an old option name."""
    print(f"rnnkit: warning: {old} is deprecated; use {new}", file=sys.stderr)


class _Alias(argparse.Action):
    """An old flag name: sets the new field and warns once."""

    def __init__(self, *args, new: str = "", kind: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.new, self.kind = new, kind

    def __call__(self, parser, namespace, values, option_string=None):
        deprecated(option_string or "", self.new)
        setattr(namespace, self.dest, values)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, optional?) of an annotation like ``int``, ``float | None``, ``str``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in _SCALARS:
            return args[0], True
    if annotation in _SCALARS:
        return annotation, False
    if origin is tuple and typing.get_args(annotation) == (str, ...):
        return tuple, False  # several strings: --name A B, or the bare arguments
    raise TypeError(f"unsupported config field type {annotation!r}")


def _field_types(cls: type) -> dict[str, tuple[type, bool]]:
    """Flat name → (scalar type, optional?) of every leaf field, sections included."""
    return {f.name: _base_type(typing.get_type_hints(owner)[f.name])
            for owner, f in leaf_fields(cls)}


def _aliases(cls: type) -> dict[str, str]:
    """Old name (underscores) → field name, for every leaf field with aliases."""
    return {alias.replace("-", "_"): f.name for _, f in leaf_fields(cls)
            for alias in f.metadata.get("aliases", ())}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    exclude: tuple[str, ...] = (),
) -> None:
    """Add a ``--field-name`` flag for each leaf field of dataclass ``cls`` (not in
    ``exclude``), nested sections included, and a warning flag for each of its aliases."""
    names = [f.name for _, f in leaf_fields(cls)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TypeError(f"{cls.__name__}: option names repeated across sections: {repeated}")
    for owner, f in leaf_fields(cls):
        if f.name not in exclude:
            _add_flag(parser, owner, f)


def _add_flag(parser, owner: type, f: dataclasses.Field) -> None:
    kind, optional = _base_type(typing.get_type_hints(owner)[f.name])
    default = getattr(owner(), f.name)
    text = f.metadata.get("help", "")
    if default not in ("", ()) and "default" not in text:
        text = f"{text} (default: {default})" if text else f"default: {default}"
    text = text.replace("%", "%%")  # argparse %-formats help texts; ours are plain text
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
    aliases = [_flag(a) for a in f.metadata.get("aliases", ())]
    if kind is bool:
        parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, help=text,
                            **kwargs)
        for alias in aliases:
            parser.add_argument(alias, action=_Alias, nargs=0, const=True, new=_flag(f.name),
                                help=argparse.SUPPRESS, **kwargs)
        return
    if kind is tuple:
        if f.metadata.get("positional"):
            del kwargs["dest"]
            parser.add_argument(f.name, nargs="*", metavar=f.name.upper(), help=text, **kwargs)
        else:
            parser.add_argument(_flag(f.name), nargs="+", metavar=f.name.upper(), help=text,
                                **kwargs)
        return
    choices = f.metadata.get("choices")
    metavar = "{" + ",".join(choices) + "}" if choices else f.name.upper()
    parse = _parser_for(kind, optional)
    parser.add_argument(_flag(f.name), type=parse, metavar=metavar, help=text, **kwargs)
    for alias in aliases:
        parser.add_argument(alias, type=parse, action=_Alias, new=_flag(f.name),
                            help=argparse.SUPPRESS, **kwargs)


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
    if kind is tuple and isinstance(value, list | tuple) and all(
            isinstance(item, str) for item in value):
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    expected = ("a list of strings" if kind is tuple else kind.__name__) + (
        " or none" if optional else "")
    raise RnnkitError(f"{where}: expected {expected}, got {value!r}")


def build_config(cls: type[T], toml_values: dict[str, Any], args: Any = None) -> T:
    """Instance of dataclass ``cls``: defaults ← ``toml_values`` ← flags given in ``args``.

    Choices (``field(metadata={"choices": (...)})``) are checked here, for TOML and flags alike.
    The dataclass's own ``__post_init__`` may raise ``ValueError``; it is turned into
    ``RnnkitError`` (its message should name the option).
    """
    source = toml_values.get("__source__", "config")
    toml_values = _rename_aliases(toml_values, cls, source)
    given = vars(args) if args is not None else {}
    types_ = _field_types(cls)
    values: dict[str, Any] = {}
    for name, (kind, optional) in types_.items():
        if name in given:
            values[name] = tuple(given[name]) if kind is tuple else given[name]
        elif name in toml_values:
            values[name] = _coerce(toml_values[name], kind, optional, f"{source}: {name}")
    for _, f in leaf_fields(cls):
        _check_number(f, values.get(f.name))
        choices = f.metadata.get("choices")
        value = values.get(f.name)
        if choices and f.name in values and value not in choices and not (
                value is None and _field_types(cls)[f.name][1]):
            raise RnnkitError(
                f"{_flag(f.name)}: expected one of {', '.join(choices)}, got {values[f.name]!r}"
            )
    try:
        return _construct(cls, values)
    except ValueError as err:
        raise RnnkitError(str(err)) from None


def _check_number(f: dataclasses.Field, value: Any) -> None:
    """Every float option is finite, and inside its ``bounds`` if it has some."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise RnnkitError(f"{_flag(f.name)}: expected a finite number, got {value}")
    bounds = f.metadata.get("bounds")
    if bounds is not None and value not in bounds:
        raise RnnkitError(f"{_flag(f.name)}: expected a value in {bounds.text}, got {value}")


def _construct(cls: type[T], values: dict[str, Any]) -> T:
    """``cls(**values)`` with each section built from the same flat ``values``."""
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if is_section(f):
            kwargs[f.name] = _construct(hints[f.name], values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def _rename_aliases(toml_values: dict[str, Any], cls: type, source: str) -> dict[str, Any]:
    aliases = _aliases(cls)
    if not any(key in aliases for key in toml_values):
        return toml_values
    renamed = dict(toml_values)
    for old, new in aliases.items():
        if old in renamed:
            deprecated(f"{source}: {old}", new)
            renamed.setdefault(new, renamed.pop(old))
    return renamed


def flat_options(config: Any) -> dict[str, Any]:
    """Leaf field name → value of a config instance, sections flattened (what resume reuses)."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_section(f):
            flat.update(flat_options(value))
        elif f.init:
            flat[f.name] = value
    return flat


def check_unknown_keys(toml_values: dict[str, Any], *classes: type, extra: tuple = ()) -> None:
    """Raise ``RnnkitError`` for a TOML key that is no field of ``classes`` nor in ``extra``."""
    known = set(extra) | {"__source__"}
    for cls in classes:
        known |= set(_field_types(cls)) | set(_aliases(cls))
    unknown = sorted(set(toml_values) - known)
    if unknown:
        source = toml_values.get("__source__", "config")
        raise RnnkitError(f"{source}: unknown option(s): {', '.join(unknown)}")
