"""Checkpoint directories: safetensors weights, JSON config/vocabulary, ``weights_only`` state.

Layout of one checkpoint directory (``RUN/best`` or ``RUN/last``)::

    model.safetensors    the model's state_dict (tied weights stored once)
    config.json          {"task": ..., "step": ..., ...}: what the task needs to rebuild the model
    <name>.json          any further JSON the task supplies (vocabularies, tokenizers)
    trainer_state.pt     optimizer, schedule, counters, RNG (``last/`` only), loaded with
                         ``torch.load(weights_only=True)``: no code from the file ever runs

Writes are atomic for the directory as a whole: everything goes to a hidden temporary directory
beside the target, which then replaces the target by renames. A crash leaves either the old or the
new checkpoint, never a mix; :func:`resolve_checkpoint` also recovers the old one if a crash fell
between the two renames.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit._io import atomic_write_json, default_mode
from rnnkit.errors import RnnkitError

__all__ = [
    "WEIGHTS",
    "CONFIG",
    "TRAINER_STATE",
    "save_checkpoint",
    "resolve_checkpoint",
    "read_config",
    "read_json",
    "load_weights",
    "load_trainer_state",
    "saved_model",
]

WEIGHTS, CONFIG, TRAINER_STATE = "model.safetensors", "config.json", "trainer_state.pt"


def save_checkpoint(
    target: str | os.PathLike,
    model: nn.Module,
    files: Mapping[str, Any],
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights, each ``files[name]`` as JSON, and ``trainer_state``, atomically.

    ``files`` must hold ``config.json``. Returns the final directory.
    """
    from safetensors.torch import save_model

    if CONFIG not in files:
        raise ValueError(f"files: must contain {CONFIG!r}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, default_mode(directory=True))
        save_model(model, str(tmp / WEIGHTS))  # handles shared (tied) tensors
        for name, obj in files.items():
            atomic_write_json(tmp / name, obj)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        os.chmod(tmp / WEIGHTS, default_mode())
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace ``target`` by ``tmp``: rename old away, rename new in, delete old."""
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike, *, prefer: str = "best") -> Path:
    """Checkpoint directory for ``path``: the directory itself, or its ``best/`` / ``last/``.

    A run directory resolves to ``prefer`` ("best" or "last") if present, else the other one.
    Raises ``RnnkitError`` if there is no checkpoint there.
    """
    path = Path(path)
    if not path.exists():
        raise RnnkitError(f"checkpoint {path}: directory not found")
    if (path / CONFIG).exists() or (path / WEIGHTS).exists():
        return path
    order = (prefer, "last" if prefer == "best" else "best")
    for name in order:
        if (path / name / CONFIG).exists():
            return path / name
    for name in order:  # a crash between the two renames of _swap_in left only the old copy
        for old in sorted(path.glob(f".{name}.old-*")):
            if (old / CONFIG).exists():
                return old
    raise RnnkitError(f"checkpoint {path}: no {CONFIG} here nor in {path}/best or {path}/last")


def read_json(path: Path) -> Any:
    """JSON content of ``path``; ``RnnkitError`` naming the file if missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RnnkitError(f"checkpoint {path.parent}: {path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RnnkitError(f"checkpoint {path.parent}: {path.name} is damaged: {err}") from None


def read_config(directory: Path, task: str) -> dict[str, Any]:
    """``config.json`` of ``directory``, checked to belong to ``task``."""
    config = read_json(directory / CONFIG)
    if not isinstance(config, dict) or config.get("task") != task:
        found = config.get("task") if isinstance(config, dict) else None
        raise RnnkitError(
            f"checkpoint {directory}: made by task {found!r}, expected a {task!r} checkpoint"
        )
    return config


def saved_model(cls: type, directory: Path, saved: dict[str, Any], sizes: dict | None = None,
                rename=None) -> Any:
    """``cls(**saved["model"])``, each value checked against the field's type first (``32.0``
    is no int, ``true`` no number), and each ``sizes`` entry ``{field: (file, entries)}``
    checked: a vocabulary file whose size does not match the model's is named, instead of an
    ``IndexError`` or ``TypeError`` later."""
    where = f"checkpoint {directory}: {CONFIG}"
    model = saved.get("model") if isinstance(saved, dict) else None
    if not isinstance(model, dict):
        raise RnnkitError(f"{where}: no \"model\" description")
    model = rename(model) if rename else model
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in model and not _fits(model[f.name], hints[f.name]):
            raise RnnkitError(f"{where}: model.{f.name}: expected {hints[f.name]}, got "
                              f"{model[f.name]!r}")
    try:
        config = cls(**model)
    except (TypeError, ValueError) as err:
        raise RnnkitError(f"{where}: bad model description: {err}") from None
    for name, (file, entries) in (sizes or {}).items():
        if getattr(config, name) != entries:
            raise RnnkitError(f"checkpoint {directory}: {file} holds {entries} entries, but the "
                              f"model was built for {getattr(config, name)} ({name})")
    return config


def _fits(value: Any, annotation: Any) -> bool:
    """Whether a JSON value is of a field's scalar type (other annotations: not checked)."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else (annotation,)
    for kind in options:
        if kind is type(None) and value is None:
            return True
        if kind is bool and isinstance(value, bool):
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return True
        if kind is str and isinstance(value, str):
            return True
        if kind not in (bool, int, float, str, type(None)):
            return True
    return False


def load_weights(directory: Path, model: nn.Module) -> None:
    """Load ``model.safetensors`` into ``model``, requiring exactly matching names and shapes."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    if not path.exists():
        raise RnnkitError(f"checkpoint {directory}: {WEIGHTS} is missing")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise RnnkitError(f"checkpoint {directory}: {WEIGHTS} is truncated or damaged: {err}") \
            from None
    _check_compatible(directory, model, tensors)
    # strict=False: tied weights are stored once; every stored name was checked above
    model.load_state_dict(tensors, strict=False)


def _check_compatible(directory: Path, model: nn.Module, tensors: dict[str, torch.Tensor]):
    expected = model.state_dict()
    unknown = sorted(set(tensors) - set(expected))
    wrong = [
        f"{name} {tuple(tensors[name].shape)} vs {tuple(value.shape)}"
        for name, value in expected.items()
        if name in tensors and tensors[name].shape != value.shape
    ]
    missing = _missing_names(model, expected, tensors)
    if unknown or wrong or missing:
        details = "; ".join(
            part for part in (
                f"unexpected {', '.join(unknown[:5])}" if unknown else "",
                f"missing {', '.join(missing[:5])}" if missing else "",
                f"shape mismatch {', '.join(wrong[:5])}" if wrong else "",
            ) if part
        )
        raise RnnkitError(f"checkpoint {directory}: weights do not fit this model ({details})")


def _missing_names(model: nn.Module, expected: dict, tensors: dict) -> list[str]:
    """Names absent from ``tensors`` and not tied to a stored name."""
    by_storage = {value.data_ptr() for name, value in expected.items() if name in tensors}
    return sorted(
        name for name, value in expected.items()
        if name not in tensors and value.data_ptr() not in by_storage
    )


def load_trainer_state(directory: Path) -> dict[str, Any]:
    """``trainer_state.pt`` of ``directory`` via ``torch.load(weights_only=True)``."""
    path = directory / TRAINER_STATE
    if not path.exists():
        raise RnnkitError(f"checkpoint {directory}: {TRAINER_STATE} is missing (only last/ "
                          "checkpoints can be resumed)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RnnkitError(f"checkpoint {directory}: {TRAINER_STATE} is damaged: {err}") from None
