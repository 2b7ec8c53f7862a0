"""``--diagnostics-every N``: record the gradient flow of every N-th training step.

The Trainer adds :class:`GradientFlowCallback` when ``TrainConfig.diagnostics_every`` is set. On
a recorded step the model runs on the ``reference`` backend (the fused kernels do not record),
and after the backward pass one line is appended to ``metrics.jsonl``::

    {"step": 200, "epoch": 0, "diagnostics": {"dh_norm": {"rnn.l0": [...]}, ...}}

with the fields of :meth:`rnnkit.diagnostics.GradientFlow.to_json` (the weight gradient norms are
taken before clipping). The step's training itself is unchanged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from rnnkit.diagnostics.flow import FlowRecording, recording_flow
from rnnkit.train.api import Callback

__all__ = ["GradientFlowCallback"]


class GradientFlowCallback(Callback):
    """Record :func:`~rnnkit.diagnostics.gradient_flow`'s numbers every ``every`` steps."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"every: expected an integer >= 1, got {every}")
        self.every = every
        self._context: AbstractContextManager[FlowRecording] | None = None
        self._recording: FlowRecording | None = None

    def on_step_begin(self, trainer) -> None:
        self._stop()
        if trainer.is_main and (trainer.step + 1) % self.every == 0:
            self._context = recording_flow(trainer.model)
            self._recording = self._context.__enter__()

    def on_after_backward(self, trainer) -> None:
        recording = self._recording
        if recording is None:
            return
        self._stop()
        scale = float(trainer.scaler.get_scale()) if trainer.scaler is not None else 1.0
        flow = recording.result(None, grad_scale=scale)
        trainer.log({"step": trainer.step + 1, "epoch": trainer.epoch,
                     "diagnostics": flow.to_json()})

    def on_fit_end(self, trainer) -> None:
        self._stop()

    def _stop(self) -> None:
        """End the recording (the probe and the forced backend) if one is open."""
        context, self._context, self._recording = self._context, None, None
        if context is not None:
            context.__exit__(None, None, None)
