"""The one runner: what training and loading share across applications.

:func:`train` owns seeding, the output directory, resume (the checkpoint's vocabularies and
options come back), callbacks (the diagnostics callback is added here, so ``train/`` imports
nothing above it), torchrun start and shutdown, and the ``config.json`` every checkpoint carries:
``{"task": NAME, "options": the application's config, "train": the TrainConfig, ...}``.
:func:`open_checkpoint` reads such a checkpoint back for ``eval``, ``predict`` and the verbs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnnkit.apps.base import Application, Checkpoint, PrepareContext
from rnnkit.errors import RnnkitError
from rnnkit.train import Callback, TrainConfig, Trainer, TrainResult, seed_everything
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.config import flat_options
from rnnkit.train.distributed import Shard, finish_distributed, init_distributed
from rnnkit.train.rundir import RunLock, check_new_run, clean_litter
from rnnkit.train.trainer import resolve_device

__all__ = ["train", "load", "inspect", "open_any", "open_checkpoint", "saved_options",
           "run_dir_of", "summary"]


def train(app: Application, config: Any, train_config: TrainConfig, out_dir: str | os.PathLike,
          resume: str | os.PathLike | None = None, callbacks: Sequence[Callback] = (),
          overwrite: bool = False) -> TrainResult:
    """Prepare ``app``'s data, build its model, and train it into ``out_dir``
    (``best/``, ``last/``, ``metrics.jsonl``, ``loss.png``); ``resume`` continues exactly.

    A directory that already holds a run is refused unless resumed or ``overwrite``; a second
    training into the same directory at once is refused (a lock file)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RnnkitError(f"--out {out_dir}: exists and is not a directory")
    device = resolve_device(train_config.device)
    shard = init_distributed(device)
    try:
        with RunLock(out_dir, enabled=shard.is_main):
            if shard.is_main:
                if resume is None:
                    check_new_run(out_dir, overwrite)
                clean_litter(out_dir)
            result = _train(app, config, train_config, out_dir, resume, callbacks, shard)
    except BaseException:
        finish_distributed(wait=False)
        raise
    finish_distributed()
    return result


def _train(app: Application, config: Any, train_config: TrainConfig, out_dir: Path,
           resume: str | os.PathLike | None, callbacks: Sequence[Callback],
           shard: Shard) -> TrainResult:
    """The application's data, model and task, handed to the Trainer."""
    resumed = open_checkpoint(app, resume, "cpu", prefer="last") if resume else None
    context = PrepareContext(out_dir, shard, resumed, train_config.seed)
    data = _in_rank_order(shard, lambda: app.prepare(config, context))
    seed_everything(train_config.seed)
    model = app.build_model(config, data)
    task = _Saved(app.task(config, data, train_config.seed), app.name, config)
    callbacks = list(callbacks)
    if train_config.diagnostics_every:
        from rnnkit.diagnostics.callback import GradientFlowCallback

        callbacks.append(GradientFlowCallback(train_config.diagnostics_every))
    return Trainer(model, task, train_config, out_dir, callbacks).fit(resume=resume)


def _in_rank_order(shard: Shard, prepare):
    """Rank 0 prepares first (it may write a cache the others then read)."""
    if shard.world_size == 1:
        return prepare()
    import torch.distributed as dist

    if shard.rank != 0:
        dist.barrier()
    data = prepare()
    if shard.rank == 0:
        dist.barrier()
    return data


class _Saved:
    """The application's task, with its name and options added to every ``config.json``."""

    def __init__(self, task: Any, name: str, config: Any) -> None:
        self._task, self.name, self._config = task, name, config

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._task, attribute)

    def checkpoint_files(self) -> dict[str, Any]:
        files = dict(self._task.checkpoint_files())
        files[ckpt.CONFIG] = {**files.get(ckpt.CONFIG, {}),
                              "options": flat_options(self._config)}
        return files


def open_checkpoint(app: Application, path: str | os.PathLike, device: str = "auto",
                    prefer: str = "best") -> Checkpoint:
    """A checkpoint of ``app`` (a run directory: its ``best/``, or ``prefer``), its saved
    options typed again."""
    directory = ckpt.resolve_checkpoint(path, prefer=prefer)
    saved = ckpt.read_config(directory, app.name)
    options = app.options_from(saved, directory)
    return Checkpoint(directory, saved, options, resolve_device(device), str(path))


def load(name: str, path: str | os.PathLike, device: str = "auto") -> Any:
    """What application ``name``'s :meth:`~Application.load` makes of checkpoint ``path``."""
    from rnnkit.apps import registry

    app = registry.get(name)
    return app.load(open_checkpoint(app, path, device))


def inspect(config) -> Path:
    """``rnnkit inspect``: the report of ``config.checkpoint`` over ``config.text`` (an
    application's ``inspect`` hook), or, for an application without one, the report of the run
    (weights' spectra, gradient flow during training, training curves); returns its path."""
    from rnnkit.diagnostics import inspect as di

    app, checkpoint = open_any(config.checkpoint, "cpu")
    directory, saved, task = checkpoint.directory, checkpoint.saved, app.name
    has_hook = type(app).inspect is not Application.inspect
    if has_hook:
        config.require_text()
    loaded = app.load(checkpoint)
    if has_hook:
        run = app.inspect(loaded, config)
        if isinstance(run, di.InspectRun):
            return di.write_inspect_report(run, directory, saved, config)
        return di.write_page(run, directory, config)  # a Report the application built whole
    note = (f"The {task} application shows no input here (it has no inspect hook; those with "
            f"one: {', '.join(_with_reports())}): this page is the run's.")
    return di.write_run_report(_model_of(loaded), directory, saved, config, note)


def open_any(path: str | os.PathLike, device: str = "auto") -> tuple[Application, Checkpoint]:
    """The application that made the checkpoint (or run) ``path``, and the checkpoint."""
    from rnnkit.apps import registry

    directory = ckpt.resolve_checkpoint(path, prefer="best")
    saved = ckpt.read_json(directory / ckpt.CONFIG)
    task = saved.get("task") if isinstance(saved, dict) else None
    if task not in registry.names():
        raise RnnkitError(f"checkpoint {directory}: made by task {task!r}, which is not an "
                          f"installed application ({', '.join(registry.names())})")
    app = registry.get(task)
    return app, open_checkpoint(app, directory, device)


def _model_of(loaded: Any):
    """The model inside what an application's ``load`` returned."""
    from torch import nn

    if isinstance(loaded, nn.Module):
        return loaded
    values = loaded if isinstance(loaded, tuple | list) else vars(loaded).values()
    for value in values:
        if isinstance(value, nn.Module):
            return value
    raise RnnkitError("rnnkit inspect: this application's loaded checkpoint holds no model")


def _with_reports() -> list[str]:
    from rnnkit.apps import registry

    return [name for name in registry.names()
            if type(registry.get(name)).inspect is not Application.inspect]


def saved_options(app: Application, path: str | os.PathLike) -> dict[str, Any]:
    """The options a run was started with (application and training, flat): the base that
    the TOML file and the flags override on ``--resume``."""
    directory = ckpt.resolve_checkpoint(path, prefer="last")
    saved = ckpt.read_config(directory, app.name)
    return {"__source__": str(directory / ckpt.CONFIG), **app.saved_values(saved),
            **saved.get("train", {})}


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The run directory of a checkpoint path (``RUN/last`` → ``RUN``)."""
    path = Path(checkpoint)
    return path.parent if path.name in ("last", "best") else path


def summary(result: TrainResult) -> str:
    """The end-of-run lines every application prints."""
    best = f"{result.best_metric:.4f}" if result.best_metric is not None else "n/a"
    shown = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    lines = [f"stopped ({result.stop_reason}) after {result.steps} steps: {shown}",
             f"best {result.monitor} {best} at step {result.best_step}; checkpoints in "
             f"{result.out_dir}"]
    if result.best_dir is not None:
        lines.append(f"best checkpoint: {result.best_dir}")
    if result.plot:
        lines.append(f"loss curves: {result.plot}")
    return "\n".join(lines)
