"""The one exception type the command line turns into a clean message."""

from __future__ import annotations

__all__ = ["RnnkitError"]


class RnnkitError(Exception):
    """A problem with the user's input (a file, an option, a checkpoint).

    The CLI prints ``rnnkit: error: <message>`` and exits with status 2, without a traceback.
    The message should name the file and line, or the option, that is wrong.
    """
