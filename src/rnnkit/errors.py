"""The one exception type the command line turns into a clean message."""

from __future__ import annotations

__all__ = ["RnnkitError", "LayerError"]


class RnnkitError(Exception):
    """A problem with the user's input (a file, an option, a checkpoint).

    The CLI prints ``rnnkit: error: <message>`` and exits with status 2, without a traceback.
    The message should name the file and line, or the option, that is wrong.
    """


class LayerError(ValueError, RuntimeError):
    """A wrong shape, size or dtype given to a layer (input, ``hx``, ``lengths``).

    A ``ValueError``, as rnnkit documents, and a ``RuntimeError``, which is what ``torch.nn``
    raises for these and what code written for ``torch.nn`` catches.
    """
