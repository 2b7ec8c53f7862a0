"""The Trainer's contract with tasks: ``TrainConfig``, ``Task``, ``StepOutput``, ``Callback``.

A task (language model, tagger, classifier, translator, …) supplies the data, the loss and the
metrics; the :class:`~rnnkit.train.Trainer` supplies everything else. See :class:`Task`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor, nn

from rnnkit.train.config import option as _opt
from rnnkit.train.distributed import Shard

if TYPE_CHECKING:
    from rnnkit.train.trainer import Trainer

__all__ = ["TrainConfig", "StepOutput", "Task", "Callback", "TrainResult"]


@dataclass
class TrainConfig:
    """Options of the training loop, shared by every task (``--lr``, ``--max-steps``, …)."""

    optimizer: str = _opt("adamw", "optimizer", ("adamw", "sgd"))
    lr: float = _opt(2e-3, "peak learning rate")
    weight_decay: float = _opt(0.01, "decoupled weight decay (AdamW) or L2 (SGD)",
                               bounds="[0, inf)")
    momentum: float = _opt(0.9, "SGD momentum", bounds="[0, 1)")
    beta2: float = _opt(0.99, "AdamW second-moment decay", bounds="[0, 1)")
    schedule: str = _opt("cosine", "learning-rate schedule after warmup",
                         ("constant", "cosine", "plateau"))
    warmup_steps: int = _opt(0, "steps of linear warmup")
    min_lr_ratio: float = _opt(0.1, "cosine: final learning rate / peak", bounds="[0, 1]")
    plateau_factor: float = _opt(0.5, "plateau: multiply the rate by this")
    plateau_patience: int = _opt(2, "plateau: evaluations without improvement before lowering")
    clip_norm: float = _opt(1.0, "clip the gradient norm to this (0: no clipping)")
    max_epochs: int | None = _opt(10, "stop after this many passes over the training data")
    max_steps: int | None = _opt(None, "stop after this many optimizer steps")
    max_minutes: float | None = _opt(None, "stop after this many minutes of training "
                                           "(evaluations included)")
    eval_every: int = _opt(500, "evaluate and checkpoint every N steps (0: at epoch ends)")
    eval_every_minutes: float | None = _opt(None, "also evaluate every N minutes")
    patience: int = _opt(0, "early stopping: evaluations without improvement (0: off)")
    seed: int = _opt(1234, "random seed", bounds="[0, 18446744073709551615]")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    threads: int = _opt(0, "CPU threads for torch (0: torch's default); 1 is often fastest "
                           "on a busy or small machine")
    amp: bool = _opt(True, "mixed precision on CUDA (bfloat16, or float16 with loss scaling)")
    log_every: int = _opt(20, "write training metrics every N steps")
    progress: bool = _opt(True, "show a progress bar")
    tensorboard: bool = _opt(True, "also log to TensorBoard when it is installed")
    plot: bool = _opt(True, "write loss.png at the end")
    diagnostics_every: int = _opt(0, "every N steps, record the gradient flow through time "
                                     "(|dL/dh_t| per layer and step, weight gradient norms, "
                                     "W_hh spectral radius) into metrics.jsonl (0: off)")

    def __post_init__(self) -> None:
        positive = {"lr": self.lr, "log_every": self.log_every}
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, got {value}")
        for name in ("max_epochs", "max_steps", "max_minutes", "eval_every_minutes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be > 0, got {value}")
        for name in ("weight_decay", "clip_norm", "warmup_steps", "eval_every", "patience",
                     "threads", "diagnostics_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')}: must be >= 0, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.plateau_factor < 1:
            raise ValueError(f"--plateau-factor: must be in (0, 1), got {self.plateau_factor}")


@dataclass
class StepOutput:
    """What :meth:`Task.step` returns.

    Attributes:
        loss: scalar tensor, the mean loss over ``count`` items; the Trainer backpropagates it.
        count: how many items (tokens, sentences) the loss averages over; weights the logged
            mean and gives the throughput.
    """

    loss: Tensor
    count: int = 1


@runtime_checkable
class Task(Protocol):
    """What the Trainer needs from a task.

    Attributes:
        name: written to ``config.json`` as ``"task"`` (``"lm"``, ``"tag"``, …); loading checks it.
        monitor: key of :meth:`evaluate`'s result that picks ``best/`` and drives early stopping
            and the plateau schedule (e.g. ``"valid_loss"``, ``"valid_accuracy"``).
        monitor_mode: ``"min"`` or ``"max"``.
        unit: name of one counted item for the progress bar (``"tok"``, ``"sent"``).
        perplexity: whether ``exp(loss)`` means something (shown as ``ppl``).

    Methods (``state_dict`` / ``load_state_dict`` are optional):
        train_batches(epoch, shard): the batches of one epoch for this process. Must yield the
            same batches for the same ``epoch`` every time (derive any shuffling from the seed
            and ``epoch``): exact resume skips the batches already done. ``shard`` says which
            part of the data this process takes under torchrun. ``len()`` on the result, if
            supported, gives the ETA.
        step(model, batch): forward pass and loss for one batch → :class:`StepOutput`. The
            model is in train mode and may be wrapped in DistributedDataParallel: call it, do
            not reach into it. Move the batch to the model's device here.
        evaluate(model): metrics on the validation data, a ``dict[str, float]`` holding
            ``monitor``. Called in eval mode under ``torch.no_grad()``, on the unwrapped model,
            with the RNG forked (sampling here does not disturb training).
        checkpoint_files(): ``{file name: JSON-ready object}`` saved in every checkpoint;
            ``"config.json"`` must be among them with whatever rebuilds the model (the Trainer
            adds ``task``, ``step``, ``metrics`` and ``train`` keys to it). Vocabularies go in
            their own files (``"vocab.json"``).
        state_dict() / load_state_dict(state): task state that exact resume needs (e.g. a
            hidden state carried across batches). Tensors and plain values only.
        param_groups(model) (optional): the optimizer's parameter groups, each a dict with
            ``params`` and optionally ``lr_scale`` (its rate = the scheduled rate × lr_scale);
            None = one group of every trainable parameter (the default without the method).
        begin_epoch(model, epoch) (optional): called before each epoch's batches (also the
            epoch a resumed run continues), e.g. to unfreeze layers
            (:mod:`rnnkit.models.transfer`).
    """

    name: str
    monitor: str
    monitor_mode: str

    def train_batches(self, epoch: int, shard: Shard) -> Iterable[Any]: ...

    def step(self, model: nn.Module, batch: Any) -> StepOutput: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def checkpoint_files(self) -> dict[str, Any]: ...


class Callback:
    """Hooks into the loop (diagnostics, sample printing). Override what you need.

    The Trainer's public attributes are available: ``model`` (unwrapped), ``optimizer``,
    ``config``, ``step`` (optimizer steps done), ``epoch``, ``shard``, ``out_dir``,
    ``write(message)`` prints above the progress bar and ``log(record)`` adds a record to
    ``metrics.jsonl``.
    """

    def on_step_begin(self, trainer: Trainer) -> None:
        """Before the forward pass of step ``trainer.step + 1``."""

    def on_after_backward(self, trainer: Trainer) -> None:
        """Gradients of this step are in ``.grad``, before clipping and the optimizer step."""

    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After an optimizer step; ``record`` has ``step``, ``loss``, ``lr``, ``grad_norm``."""

    def on_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """After an evaluation (RNG forked, model in eval mode, no grad)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """When :meth:`~rnnkit.train.Trainer.fit` returns or raises."""


@dataclass
class TrainResult:
    """How a :meth:`Trainer.fit` ended."""

    steps: int
    epochs: float
    stop_reason: str  # max_steps | max_epochs | max_minutes | early_stopping
    best_metric: float | None
    best_step: int | None
    metrics: dict[str, float]  # of the last evaluation
    out_dir: Path
    best_dir: Path | None
    last_dir: Path
    plot: Path | None
    monitor: str = ""  # the task's monitor, which best_metric is
