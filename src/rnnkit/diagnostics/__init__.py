"""See inside the network: gradient flow through time, hidden-unit activations, reports.

- :func:`gradient_flow` — ‖∂L/∂h_t‖ per layer and step, weight gradient norms, and the spectral
  radius / largest singular value of every ``W_hh`` for one batch.
- :class:`GradientFlowCallback` — the Trainer's ``--diagnostics-every N``: the same numbers for
  every N-th training step, into ``metrics.jsonl``.
- :mod:`rnnkit.diagnostics.plots` — PNG plots; :mod:`rnnkit.diagnostics.report` — the
  self-contained HTML report behind ``rnnkit inspect``.
"""

from rnnkit.diagnostics.flow import (
    GradientFlow,
    LayerFlow,
    gradient_flow,
    recording_flow,
    recurrent_stats,
)

__all__ = [
    "gradient_flow",
    "GradientFlow",
    "LayerFlow",
    "recording_flow",
    "recurrent_stats",
]
