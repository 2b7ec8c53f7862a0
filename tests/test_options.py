"""Option dataclasses → flags and TOML keys (rnnkit._options, rnnkit.train.config)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from rnnkit._options import option
from rnnkit.errors import RnnkitError
from rnnkit.train.config import add_dataclass_flags, build_config


@dataclass
class Files:
    files: tuple[str, ...] = option((), "input files", positional=True)
    tags: tuple[str, ...] = option((), "tags to keep")
    beam: int = option(1, "beam size", bounds="[1, inf)")
    rate: float = option(0.5, "a share", bounds="[0, 1)")


def _parse(argv: list[str]) -> Files:
    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, Files)
    return build_config(Files, {}, parser.parse_args(argv))


def test_several_values_bare_and_as_a_flag():
    assert _parse([]) == Files()
    assert _parse(["a.wav", "b.wav", "--beam", "3"]) == Files(("a.wav", "b.wav"), (), 3)
    assert _parse(["--beam", "2", "a", "--tags", "x", "y"]) == Files(("a",), ("x", "y"), 2)


def test_several_values_from_toml():
    assert build_config(Files, {"__source__": "c.toml", "tags": ["p", "q"]}).tags == ("p", "q")
    with pytest.raises(RnnkitError, match=r"c.toml: tags: expected a list of strings"):
        build_config(Files, {"__source__": "c.toml", "tags": "p"})


def test_bounds_name_the_flag():
    with pytest.raises(RnnkitError, match=r"--beam: expected a value in \[1, inf\), got 0"):
        _parse(["--beam", "0"])
    with pytest.raises(RnnkitError, match=r"--rate: expected a value in \[0, 1\), got 1.0"):
        build_config(Files, {"__source__": "c.toml", "rate": 1.0})


def test_list_defaults_are_refused():
    with pytest.raises(TypeError, match="use a tuple"):
        option([], "shared between instances")
