"""Learning-rate schedules: linear warmup, then constant, cosine decay, or reduce-on-plateau.

The factor applied to the base learning rate at progress p ∈ [0, 1] (fraction of the step or time
budget spent) and step s::

    warmup   s < warmup_steps:  (s + 1) / warmup_steps
    constant                    1
    cosine                      min_ratio + (1 - min_ratio) · (1 + cos(π p)) / 2
    plateau                     factor^k, k = evaluations that lowered the rate so far

Plateau: after ``patience`` evaluations without improvement of the monitored metric, the rate is
multiplied by ``factor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LRSchedule"]


@dataclass
class LRSchedule:
    """Learning-rate factor for a step; ``state_dict`` keeps the plateau bookkeeping for resume."""

    kind: str = "cosine"  # constant | cosine | plateau
    warmup_steps: int = 0
    min_ratio: float = 0.1
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    plateau_scale: float = 1.0
    evals_without_gain: int = 0

    def factor(self, step: int, progress: float) -> float:
        """Multiplier of the base learning rate at ``step`` (0-based) and ``progress``."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.kind == "cosine":
            p = min(max(progress, 0.0), 1.0)
            cosine = 0.5 * (1 + math.cos(math.pi * p))
            return warm * (self.min_ratio + (1 - self.min_ratio) * cosine)
        if self.kind == "plateau":
            return warm * self.plateau_scale
        return warm

    def after_eval(self, improved: bool) -> bool:
        """Record an evaluation; True if the plateau rule just lowered the rate."""
        self.evals_without_gain = 0 if improved else self.evals_without_gain + 1
        if self.kind == "plateau" and self.evals_without_gain >= self.plateau_patience:
            self.plateau_scale *= self.plateau_factor
            self.evals_without_gain = 0
            return True
        return False

    def state_dict(self) -> dict[str, float]:
        return {"plateau_scale": self.plateau_scale, "evals_without_gain": self.evals_without_gain}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.plateau_scale = float(state["plateau_scale"])
        self.evals_without_gain = int(state["evals_without_gain"])
