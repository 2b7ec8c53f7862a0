"""Putting trained models to work: ``rnnkit export`` (ONNX, TorchScript) and ``rnnkit serve``
(a JSON HTTP API and a page to try each model).

Both go through the application contract only (:meth:`~rnnkit.apps.base.Application.export_graphs`,
:meth:`~rnnkit.apps.base.Application.predict_text`); nothing here names an application. The
third-party packages (onnx, onnxruntime, starlette, uvicorn) are imported when used; a missing
one is an :class:`~rnnkit.errors.RnnkitError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from rnnkit.errors import RnnkitError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise
        raise RnnkitError(f"{module} is not installed: pip install 'rnnkit[{extra}]'") from None
