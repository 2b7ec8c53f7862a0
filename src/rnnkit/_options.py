"""Option metadata on dataclass fields: help text, choices, deprecated aliases, nested sections.

Floor-neutral (plain dataclasses), so that a model's options can be declared where the model
is; :mod:`rnnkit.train.config` turns them into flags and TOML keys.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

__all__ = ["option", "section", "is_section", "leaf_fields", "section_leaf_names", "Bounds",
           "option_group"]


def option(default: Any, help_text: str, choices: tuple | None = None,
           aliases: tuple[str, ...] = (), bounds: str | None = None,
           positional: bool = False) -> Any:
    """A dataclass field with its flag's help text, and optionally its allowed values, its
    deprecated old names and its interval (``bounds="[0, 1)"``, ``"(0, inf)"``: checked with
    every other option in one place, :func:`rnnkit.train.config.build_config`).

    A ``tuple[str, ...]`` field (default ``()``) takes several values: ``--name A B``, or, with
    ``positional``, the command's bare arguments (``rnnkit speech transcribe a.wav b.wav``)."""
    metadata: dict[str, Any] = {"help": help_text}
    if positional:
        metadata["positional"] = True
    if isinstance(default, list):
        raise TypeError("option: a list default is shared between instances; use a tuple")
    if choices:
        metadata["choices"] = choices
    if aliases:
        metadata["aliases"] = tuple(aliases)
    if bounds:
        metadata["bounds"] = Bounds.parse(bounds)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """An interval such as ``[0, 1)``; ``inf`` for an open end."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> Bounds:
        text = text.strip()
        if text[0] not in "[(" or text[-1] not in "])" or "," not in text:
            raise ValueError(f"bounds: expected e.g. '[0, 1)', got {text!r}")
        low, high = (float(part) for part in text[1:-1].split(","))
        return cls(low, high, text[0] == "[", text[-1] == "]", text)

    def __contains__(self, value: float) -> bool:
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below


def section(cls: type, help_text: str = "") -> Any:
    """A nested dataclass field (e.g. an application's model options), default ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={"help": help_text, "section": True})


def is_section(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("section"))


def option_group(cls: type) -> type:
    """Mark a dataclass of options that other option classes inherit as a group (the cell
    options): its fields follow the inheriting class's own in ``--help``."""
    cls.__option_group__ = cls
    return cls


def _in_group(cls: type, name: str) -> bool:
    return any(getattr(base, "__option_group__", None) is base
               and name in {f.name for f in dataclasses.fields(base)} for base in cls.__mro__)


def leaf_fields(cls: type) -> list[tuple[type, dataclasses.Field]]:
    """(owning dataclass, field) of every settable scalar field, nested sections flattened;
    the fields of inherited option groups (:func:`option_group`, such as the cell options)
    after the class's own, so that ``--help`` lists them after the options they refine."""
    leaves = []
    fields = dataclasses.fields(cls)
    own = [f for f in fields if not _in_group(cls, f.name)]
    for f in [*own, *(f for f in fields if f not in own)]:
        if not f.init:
            continue
        if is_section(f):
            leaves.extend(leaf_fields(typing.get_type_hints(cls)[f.name]))
        else:
            leaves.append((cls, f))
    return leaves


def section_leaf_names(cls: type) -> list[str]:
    """Names of the leaf fields inside the sections of ``cls`` (its model options)."""
    hints = typing.get_type_hints(cls)
    return [f.name for s in dataclasses.fields(cls) if is_section(s)
            for _, f in leaf_fields(hints[s.name])]
