"""The one place that knows which applications exist.

An application registers itself with ``@register("name")`` on its :class:`Application` subclass;
the built-in ones are imported from :data:`BUILTIN` (module names under ``rnnkit.apps``), and
packages outside rnnkit add theirs through the ``rnnkit.applications`` entry-point group
(``name = "package.module"``). Nothing else in rnnkit lists applications.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from rnnkit.apps.base import Application
from rnnkit.errors import RnnkitError

__all__ = ["BUILTIN", "register", "get", "names", "load_all"]

# Module under rnnkit.apps of each built-in application (one line per application).
BUILTIN: tuple[str, ...] = (
    "lm",
    "tag",
    "classify",
    "translate",
    "music",
    "speech",
    "forecast",
    "recommend",
    "frames",
    "vectors",
    "caption",
)

_APPS: dict[str, type[Application]] = {}
_loaded = False


def register(name: str):
    """Class decorator: make ``cls`` the application ``rnnkit NAME``."""
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"application name: expected a lower-case identifier, got {name!r}")

    def decorate(cls: type[Application]) -> type[Application]:
        if not (isinstance(cls, type) and issubclass(cls, Application)):
            raise TypeError(f"@register({name!r}): expected an Application subclass, got {cls!r}")
        other = _APPS.get(name)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"application {name!r} is registered twice ({other.__module__} "
                             f"and {cls.__module__})")
        cls.name = name
        _APPS[name] = cls
        return cls

    return decorate


def load_all() -> None:
    """Import the built-in applications and those of installed plug-in packages (once).
    A built-in whose optional dependencies are missing stays out of the list."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN:
        _import(f"rnnkit.apps.{module}")
    for entry in metadata.entry_points(group="rnnkit.applications"):
        _import(entry.value)


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            raise
        # an optional dependency of this application is not installed: it is left out


def names() -> list[str]:
    """Registered application names, in registration order."""
    load_all()
    return list(_APPS)


def get(name: str) -> Application:
    """A fresh instance of application ``name``."""
    load_all()
    if name not in _APPS:
        raise RnnkitError(f"unknown application {name!r}; known: {', '.join(_APPS)}")
    return _APPS[name]()
