"""Option metadata on dataclass fields: help text, choices, deprecated aliases, nested sections.

Floor-neutral (plain dataclasses), so that a model's options can be declared where the model
is; :mod:`rnnkit.train.config` turns them into flags and TOML keys.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

__all__ = ["option", "section", "is_section", "leaf_fields", "section_leaf_names"]


def option(default: Any, help_text: str, choices: tuple | None = None,
           aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field with its flag's help text (and allowed values, and deprecated old
    names), as :func:`add_dataclass_flags` and :func:`build_config` read them."""
    metadata: dict[str, Any] = {"help": help_text}
    if choices:
        metadata["choices"] = choices
    if aliases:
        metadata["aliases"] = tuple(aliases)
    return dataclasses.field(default=default, metadata=metadata)


def section(cls: type, help_text: str = "") -> Any:
    """A nested dataclass field (e.g. an application's model options), default ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={"help": help_text, "section": True})


def is_section(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("section"))


def leaf_fields(cls: type) -> list[tuple[type, dataclasses.Field]]:
    """(owning dataclass, field) of every settable scalar field, nested sections flattened."""
    leaves = []
    for f in dataclasses.fields(cls):
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
