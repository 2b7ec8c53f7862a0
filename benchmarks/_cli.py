"""What the benchmark scripts share: running an ``rnnkit`` command in-process."""

from __future__ import annotations

import contextlib
import io

from rnnkit.cli.main import main


def run(argv: list[str]) -> str:
    """``rnnkit ARGV`` in this process; its standard output. A non-zero exit stops the script
    with the command line in the message."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 0:
        raise SystemExit(f"rnnkit {' '.join(argv)}: exit {code}")
    return out.getvalue()
