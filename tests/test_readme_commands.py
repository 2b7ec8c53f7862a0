"""Every ``rnnkit`` command line in the README's and the docs' code blocks parses: the
commands, verbs and flags they use exist (they are not run; the task tests run them). The old
command lines of the previous README (the retired names) must parse too."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

import pytest

from rnnkit.cli.main import build_parser

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# command lines of the README before the application contract: they must keep working
OLD = [
    "rnnkit lm train --data input.txt --out runs/shakespeare",
    "rnnkit lm train --data corpus/ --glob '*.md' --valid valid.txt --out runs/md --tokenizer bpe",
    "rnnkit tag train --train en-ud-train.conllu --dev en-ud-dev.conllu --out runs/pos",
    "rnnkit tag train --train t.conllu --word-dim 50",
    "rnnkit classify train --train stsa.binary.train --dev stsa.binary.dev --out runs/sst2",
    "rnnkit classify train --train a.txt --embed-dim 200",
    "rnnkit translate train --train a.tsv --embed-dim 64",
    "rnnkit translate run --checkpoint runs/de-en --beam-size 1",
    "rnnkit chat --checkpoint runs/chat --beam-size 1",
    "rnnkit lm train --data corpus.txt --out runs/lm --diagnostics-every 100",
]


def _blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in a shell language or none."""
    blocks, current, language = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def _commands(text: str) -> list[str]:
    """``rnnkit …`` lines of fenced code blocks, continuations joined, pipes and comments cut."""
    found = []
    for block in _blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            if "|" in line:
                line = line.rsplit("|", 1)[1].strip()
            if line.startswith("rnnkit ") and not any(m in line for m in ("...", "…", "[")):
                found.append(line)
    return found


COMMANDS = sorted({c for doc in DOCS for c in _commands(doc.read_text(encoding="utf-8"))})


def test_the_docs_have_commands():
    assert len(COMMANDS) > 20


@functools.lru_cache(maxsize=1)
def _parser():
    """One parser for all the lines (building it takes about 0.4 s; parsing changes nothing in
    it)."""
    return build_parser()


@pytest.mark.parametrize("line", COMMANDS + OLD)
def test_command_line_parses(line):
    words = shlex.split(line.replace("$D", "data"))[1:]
    _parser().parse_args(words)  # SystemExit(2) on an unknown command or flag
