"""Chat: an encoder–decoder trained on utterance → reply pairs answers each line typed.

Training is translation training on dialogue pairs (``rnnkit translate train --train
dialog.tsv``); this module only runs the conversation loop, which ``rnnkit translate chat``
(:mod:`rnnkit.apps.translate`; also ``rnnkit chat``) runs on stdin and stdout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from rnnkit.tasks.translate import Translator, translate

__all__ = ["chat"]


def chat(translator: Translator, lines: TextIO, write: Callable[[str], None], *,
         prompt: str = "", **decoding) -> int:
    """Answer every non-empty line of ``lines`` until EOF; returns how many were answered.

    Empty lines are skipped (the prompt comes again). ``prompt`` is written before each line is
    read (for a terminal; empty for piped input)."""
    answered = 0
    while True:
        write(prompt)
        line = lines.readline()
        if not line:  # EOF
            return answered
        if not line.strip():
            continue
        reply = translate(translator, [line.rstrip("\n")], batch_size=1, **decoding)[0]
        write(reply + "\n")
        answered += 1
