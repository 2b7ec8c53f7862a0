"""Applications: each classic RNN use the primer names, as one registered object.

:class:`Application` is the contract (``base.py``), :func:`register` the one extension point
(``registry.py``), :mod:`rnnkit.apps.runner` what training and loading share, and each other
module here one application. ``docs/architecture.md`` walks through adding one.
"""

from rnnkit.apps.base import Application, Checkpoint, NoOptions, PrepareContext, Verb
from rnnkit.apps.registry import get, names, register

__all__ = ["Application", "Checkpoint", "NoOptions", "PrepareContext", "Verb", "register", "get",
           "names"]
