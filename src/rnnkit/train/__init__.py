"""Training: one :class:`Trainer` for every task.

A task implements the :class:`Task` protocol (``train_batches``, ``step``, ``evaluate``,
``checkpoint_files``; optionally ``state_dict``/``load_state_dict``) and calls::

    from rnnkit.train import Trainer, TrainConfig, seed_everything

    seed_everything(config.seed)            # before building the model
    model = build_model(...)
    result = Trainer(model, task, TrainConfig(lr=3e-3, max_steps=1000), out_dir).fit()
    result.best_dir                         # checkpoint with the best task.monitor

The Trainer owns the loop, AdamW/SGD, warmup + cosine / reduce-on-plateau, gradient clipping (the
pre-clip norm is logged), AMP on CUDA, periodic evaluation, early stopping, atomic ``best/`` and
``last/`` checkpoints, exact resume (``fit(resume=dir)``), seeding, the progress bar, metrics JSONL
(+ TensorBoard when installed), ``loss.png``, stopping on a non-finite loss, and DDP under
``torchrun``. :class:`Callback` hooks in diagnostics. Checkpoint helpers for loading a trained
model are in :mod:`rnnkit.train.checkpoint`; TOML + flag config helpers in
:mod:`rnnkit.train.config`.
"""

from rnnkit.train.api import Callback, StepOutput, Task, TrainConfig, TrainResult
from rnnkit.train.distributed import Shard
from rnnkit.train.rng import seed_everything
from rnnkit.train.trainer import Trainer, resolve_device

__all__ = [
    "Trainer",
    "TrainConfig",
    "Task",
    "StepOutput",
    "Callback",
    "TrainResult",
    "Shard",
    "seed_everything",
    "resolve_device",
]
