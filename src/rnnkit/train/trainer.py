"""The one training loop every task uses.

``Trainer(model, task, config, out_dir).fit(resume=None)`` runs until ``max_steps``,
``max_epochs`` or ``max_minutes`` (whichever comes first) or early stopping, and leaves in
``out_dir``::

    best/            checkpoint with the best monitored metric (weights + JSON)
    last/            latest checkpoint, plus trainer_state.pt for exact resume
    metrics.jsonl    one JSON object per log line / evaluation
    tensorboard/     when TensorBoard is installed
    loss.png         train and validation loss against step

Each step: learning rate from the schedule → ``task.step`` (under autocast on CUDA) → backward →
callbacks → clip the gradient norm (the pre-clip norm is logged) → optimizer step. A non-finite
loss or gradient norm stops the run with ``RnnkitError``; the last good checkpoint stays.
Every ``eval_every`` steps: ``task.evaluate`` → ``best/`` if improved → ``last/``.

Exact resume: ``last/trainer_state.pt`` holds the optimizer, schedule, counters, RNG states and
the task's own state; resuming skips the batches of the current epoch already done, so a run
interrupted and resumed ends with exactly the parameters of an uninterrupted one (same device,
single process; under torchrun every rank restores rank 0's task state).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit._io import atomic_write_text
from rnnkit._version import __version__
from rnnkit.errors import RnnkitError
from rnnkit.train import checkpoint as ckpt
from rnnkit.train.api import Callback, StepOutput, Task, TrainConfig, TrainResult
from rnnkit.train.distributed import Shard, all_agree, all_mean, init_distributed
from rnnkit.train.logging import MetricsLog, Progress, read_metrics
from rnnkit.train.plots import plot_losses
from rnnkit.train.rng import rng_state, seed_everything, set_rng_state
from rnnkit.train.schedule import LRSchedule

__all__ = ["Trainer", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if available (this rank's GPU under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        name = f"cuda:{os.environ['LOCAL_RANK']}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RnnkitError(f"--device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RnnkitError("--device: CUDA was asked for but is not available")
    return device


class Trainer:
    """Train ``model`` on ``task``; see the module docstring and :class:`~rnnkit.train.Task`."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        config: TrainConfig,
        out_dir: str | os.PathLike,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        if task.monitor_mode not in ("min", "max"):
            raise ValueError(f"task.monitor_mode: expected 'min' or 'max', got "
                             f"{task.monitor_mode!r}")
        self.config = config
        self.task = task
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks)
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.shard: Shard = init_distributed(self.device)
        self.model = model.to(self.device)
        self.optimizer = self._build_optimizer()
        self.schedule = LRSchedule(config.schedule, config.warmup_steps, config.min_lr_ratio,
                                   config.plateau_factor, config.plateau_patience)
        self.scaler, self.amp_dtype = self._amp()
        self.step = 0  # optimizer steps done
        self.epoch = 0  # current epoch (0-based)
        self.batch_in_epoch = 0  # batches of the current epoch done
        self.elapsed = 0.0  # training seconds, summed over resumes
        self.best: float | None = None
        self.best_step: int | None = None
        self.last_metrics: dict[str, float] = {}
        self._last_eval_step = -1
        self._evals_without_gain = 0
        self._epoch_length: int | None = None
        self._last_lr, self._last_norm = config.lr, 0.0
        self._last_eval_time = 0.0
        self._wrapped: nn.Module = self.model
        self._progress: Progress | None = None
        self._log: MetricsLog | None = None

    # ------------------------------------------------------------------ set-up

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = getattr(self.task, "param_groups", None)  # optional: per-group "lr_scale"
        params = groups(self.model) if groups is not None else None
        if params is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, cfg.beta2),
                                 weight_decay=cfg.weight_decay)

    def _amp(self):
        if not (self.config.amp and self.device.type == "cuda"):
            return None, None
        if torch.cuda.is_bf16_supported():
            return None, torch.bfloat16
        return torch.amp.GradScaler("cuda"), torch.float16

    def _wrap(self) -> nn.Module:
        if self.shard.world_size == 1:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    @property
    def is_main(self) -> bool:
        return self.shard.is_main

    def write(self, message: str) -> None:
        """Print ``message`` (main process only), above the progress bar."""
        if not self.is_main:
            return
        if self._progress is not None:
            self._progress.write(message)
        else:
            print(message, flush=True)

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (holding ``step``) to ``metrics.jsonl`` (main process only)."""
        if self._log is not None:
            self._log.write(record)

    # ------------------------------------------------------------------ fit

    def fit(self, resume: str | os.PathLike | None = None) -> TrainResult:
        """Train; ``resume`` is a run directory or its ``last/`` checkpoint."""
        if resume is not None:
            self._resume(Path(resume))
        else:
            seed_everything(self.config.seed + self.shard.rank)
        self._wrapped = self._wrap()
        self._open_outputs()
        try:
            reason = self._loop()
            if self._last_eval_step != self.step:
                self._evaluate()
        finally:
            for callback in self.callbacks:
                callback.on_fit_end(self)
            self._close_outputs()
        plot = self._plot() if self.is_main and self.config.plot else None
        return self._result(reason, plot)

    def _open_outputs(self) -> None:
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._log = MetricsLog(self.out_dir / "metrics.jsonl", self.config.tensorboard)
        self._progress = Progress(self._total_steps(), self.step,
                                  self.config.progress and self.is_main,
                                  getattr(self.task, "unit", "item"))

    def _close_outputs(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def _loop(self) -> str:
        cfg = self.config
        self.model.train()
        started = time.monotonic() - self.elapsed
        window = _Window()
        while True:
            if cfg.max_epochs is not None and self.epoch >= cfg.max_epochs:
                return "max_epochs"
            begin_epoch = getattr(self.task, "begin_epoch", None)  # optional (unfreezing)
            if begin_epoch is not None:
                begin_epoch(self.model, self.epoch)
            batches = self.task.train_batches(self.epoch, self.shard)
            self._epoch_length = _length(batches)
            if self._progress is not None:
                self._progress.set_total(self._total_steps())
            for index, batch in enumerate(batches):
                if index < self.batch_in_epoch:
                    continue  # done before the resume
                if cfg.max_steps is not None and self.step >= cfg.max_steps:
                    return "max_steps"  # a resumed run that had already finished
                out = self._train_step(batch)
                self.batch_in_epoch = index + 1
                self.elapsed = time.monotonic() - started
                window.add(out)
                reason = self._after_step(window)
                if reason:
                    return reason
            self.epoch += 1
            self.batch_in_epoch = 0
            if cfg.eval_every == 0 and self._last_eval_step != self.step:
                self._evaluate()
                if self._early_stop():
                    return "early_stopping"

    def _after_step(self, window: _Window) -> str | None:
        cfg = self.config
        time_up = cfg.max_minutes is not None and self.elapsed >= cfg.max_minutes * 60
        eval_time = (cfg.eval_every_minutes is not None
                     and self.elapsed - self._last_eval_time >= cfg.eval_every_minutes * 60)
        if self.shard.world_size > 1:  # every rank must take the same branch
            time_up, eval_time = all_agree(time_up, self.shard), all_agree(eval_time, self.shard)
        if self.step % cfg.log_every == 0:
            self._log_train(window)
        if (cfg.eval_every and self.step % cfg.eval_every == 0) or eval_time:
            self._evaluate()
            if self._early_stop():
                return "early_stopping"
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return "max_steps"
        return "max_minutes" if time_up else None

    # ------------------------------------------------------------------ one step

    def _train_step(self, batch: Any) -> StepOutput:
        lr = self.config.lr * self.schedule.factor(self.step, self._progress_fraction())
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        for callback in self.callbacks:
            callback.on_step_begin(self)
        with torch.autocast(self.device.type, dtype=self.amp_dtype,
                            enabled=self.amp_dtype is not None):
            out = self.task.step(self._wrapped, batch)
        loss = out.loss
        self._check_finite("training loss", loss.detach())
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        for callback in self.callbacks:
            callback.on_after_backward(self)
        norm = self._clip()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._check_finite("gradient norm", norm)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._last_lr, self._last_norm = lr, float(norm)
        return out

    def _clip(self) -> torch.Tensor:
        """Clip to ``clip_norm`` (if > 0); return the norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        limit = self.config.clip_norm if self.config.clip_norm > 0 else math.inf
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), limit)

    def _check_finite(self, what: str, value: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(value).all())
        if self.shard.world_size > 1:
            bad = all_agree(bad, self.shard)
        if not bad:
            return
        last = self.out_dir / "last"
        kept = (f"the last good checkpoint is kept in {last} (step {self._last_eval_step})"
                if self._last_eval_step > 0 and (last / ckpt.CONFIG).exists()
                else "no checkpoint had been written yet")
        raise RnnkitError(
            f"step {self.step + 1}: {what} is {float(value)} (not finite), training stopped; "
            f"{kept}. Try a lower --lr, --clip-norm 1, or --no-amp."
        )

    # ------------------------------------------------------------------ budget

    def _total_steps(self) -> int | None:
        totals = []
        if self.config.max_steps is not None:
            totals.append(self.config.max_steps)
        length = self._epoch_length
        if self.config.max_epochs is not None and length:
            totals.append(self.config.max_epochs * length)
        return min(totals) if totals else None

    def _progress_fraction(self) -> float:
        """Fraction of the budget spent (largest over steps, epochs and time)."""
        cfg = self.config
        fractions = [0.0]
        if cfg.max_steps is not None:
            fractions.append(self.step / cfg.max_steps)
        if cfg.max_minutes is not None:
            fractions.append(self.elapsed / (cfg.max_minutes * 60))
        length = self._epoch_length
        if cfg.max_epochs is not None and length:
            fractions.append((self.epoch + self.batch_in_epoch / length) / cfg.max_epochs)
        return max(fractions)

    def _eta(self) -> float | None:
        fraction = self._progress_fraction()
        if fraction <= 0:
            return None
        return self.elapsed * (1 - fraction) / fraction

    # ------------------------------------------------------------------ logging

    def _log_train(self, window: _Window) -> None:
        loss, rate = window.take()
        loss, rate = all_mean([loss, rate], self.shard)
        rate *= self.shard.world_size
        record = {"step": self.step, "epoch": self.epoch, "time": round(self.elapsed, 2),
                  "train_loss": loss, "lr": self._last_lr, "grad_norm": self._last_norm,
                  "rate": rate}
        stats = {"loss": loss, "rate": rate}
        if getattr(self.task, "perplexity", False):
            stats["ppl"] = record["train_ppl"] = math.exp(min(loss, 50.0))
        if self._progress is not None:
            self._progress.update(self.step, stats, self._eta())
        if self._log is not None:
            self._log.write(record)
        for callback in self.callbacks:
            callback.on_step_end(self, record)

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self) -> dict[str, float]:
        metrics = self._run_eval()
        monitor = metrics[self.task.monitor]
        self._check_finite(f"validation {self.task.monitor}", torch.tensor(monitor))
        improved = self._better(monitor)
        if improved:
            self.best, self.best_step = monitor, self.step
        lowered = self.schedule.after_eval(improved)
        self._last_eval_step, self._last_eval_time = self.step, self.elapsed
        self.last_metrics = metrics
        self._report_eval(metrics, improved, lowered)
        for callback in self.callbacks:
            self._in_eval_mode(callback.on_eval, self, metrics)
        if self.is_main:
            if improved:
                self._save("best", with_state=False)
            self._save("last", with_state=True)
        return metrics

    def _run_eval(self) -> dict[str, float]:
        metrics = self._in_eval_mode(self.task.evaluate, self.model)
        metrics = {key: float(value) for key, value in metrics.items()}
        if self.task.monitor not in metrics:
            raise KeyError(f"task.evaluate() returned no {self.task.monitor!r}")
        return metrics

    def _in_eval_mode(self, function, *args):
        """``function(*args)`` in eval mode, without gradients, with the RNG forked (so that
        evaluating or sampling leaves the training run unchanged)."""
        devices = [self.device] if self.device.type == "cuda" else []
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                return function(*args)
        finally:
            self.model.train()

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.task.monitor_mode == "min" else value > self.best

    def _early_stop(self) -> bool:
        patience = self.config.patience
        return bool(patience) and self._evals_without_gain >= patience

    def _report_eval(self, metrics: dict[str, float], improved: bool, lowered: bool) -> None:
        self._evals_without_gain = 0 if improved else self._evals_without_gain + 1
        if self._log is not None:
            self._log.write({"step": self.step, "epoch": self.epoch,
                             "time": round(self.elapsed, 2), **metrics})
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        note = " (best)" if improved else ""
        note += " lr lowered" if lowered else ""
        self.write(f"step {self.step}  {shown}{note}")

    # ------------------------------------------------------------------ checkpoints

    def _save(self, name: str, with_state: bool) -> Path:
        files = dict(self.task.checkpoint_files())
        config = dict(files.get(ckpt.CONFIG, {}))
        config.update({"task": self.task.name, "step": self.step, "metrics": self.last_metrics,
                       "train": dataclasses.asdict(self.config), "rnnkit_version": __version__})
        files[ckpt.CONFIG] = config
        state = self._state_dict() if with_state else None
        return ckpt.save_checkpoint(self.out_dir / name, self.model, files, state)

    def _state_dict(self) -> dict[str, Any]:
        task_state = self.task.state_dict() if hasattr(self.task, "state_dict") else None
        return {
            "version": 1, "step": self.step, "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "elapsed": self.elapsed,
            "best": self.best, "best_step": self.best_step,
            "evals_without_gain": self._evals_without_gain,
            "last_eval_time": self._last_eval_time,
            "schedule": self.schedule.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": rng_state(), "task": task_state,
        }

    def _resume(self, path: Path) -> None:
        directory = ckpt.resolve_checkpoint(path, prefer="last")
        ckpt.read_config(directory, self.task.name)
        state = ckpt.load_trainer_state(directory)
        ckpt.load_weights(directory, self.model)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if self.scaler is not None and state["scaler"] is not None:
                self.scaler.load_state_dict(state["scaler"])
            if state["task"] is not None and hasattr(self.task, "load_state_dict"):
                self.task.load_state_dict(state["task"])
        except (KeyError, ValueError, RuntimeError) as err:
            raise RnnkitError(f"checkpoint {directory}: cannot resume from it: {err}") from None
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.elapsed = state["batch_in_epoch"], state["elapsed"]
        self.best, self.best_step = state["best"], state["best_step"]
        self._evals_without_gain = state["evals_without_gain"]
        self._last_eval_step, self._last_eval_time = self.step, state["last_eval_time"]
        set_rng_state(state["rng"])
        if self.is_main:
            self._trim_metrics()

    def _trim_metrics(self) -> None:
        """Drop log lines the interrupted run wrote after the checkpoint it resumes from."""
        path = self.out_dir / "metrics.jsonl"
        kept = [r for r in read_metrics(path) if r["step"] <= self.step]
        if path.exists():
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    # ------------------------------------------------------------------ end

    def _plot(self) -> Path | None:
        records = read_metrics(self.out_dir / "metrics.jsonl")
        return plot_losses(records, self.out_dir / "loss.png", title=f"rnnkit {self.task.name}")

    def _result(self, reason: str, plot: Path | None) -> TrainResult:
        best_dir = self.out_dir / "best"
        return TrainResult(
            steps=self.step, epochs=self.epoch, stop_reason=reason, best_metric=self.best,
            best_step=self.best_step, metrics=self.last_metrics, out_dir=self.out_dir,
            best_dir=best_dir if best_dir.exists() else None, last_dir=self.out_dir / "last",
            plot=plot, monitor=self.task.monitor,
        )


class _Window:
    """Loss and item count since the last log line."""

    def __init__(self) -> None:
        self.loss_sum, self.count, self.since = 0.0, 0, time.monotonic()

    def add(self, out: StepOutput) -> None:
        self.loss_sum += float(out.loss.detach()) * out.count
        self.count += out.count

    def take(self) -> tuple[float, float]:
        """(mean loss, items per second) since the last call."""
        now = time.monotonic()
        loss = self.loss_sum / max(self.count, 1)
        rate = self.count / max(now - self.since, 1e-9)
        self.loss_sum, self.count, self.since = 0.0, 0, now
        return loss, rate


def _length(batches: Any) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None
