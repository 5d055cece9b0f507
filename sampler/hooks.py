"""The narrow protocol through which repulsion, pruning and refinement plug into the sampler loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .state import ParticleState
from .trace import Trace


@dataclass
class StepContext:
    """What a hook may know about the current annealing step; hooks write what they did into `trace` (rows of
    this step carry k)."""

    k: int
    t: int
    sigma: float
    sigma_next: float
    num_steps: int
    phase: str                      # "explore", "prune" (after pruning) or "refine"
    model: object = None
    operator: object = None
    trace: Trace = field(default_factory=Trace)


class Hook:
    """Every method is optional; the defaults do nothing."""

    def drift(self, z: torch.Tensor, score: torch.Tensor, state: ParticleState, ctx: StepContext):
        """Extra term added to the MCMC score at every MCMC iteration (None for no drift).

        Not called during the refine phase: the loop switches drifts off there.
        """
        return None

    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        """Runs after the MCMC step, before re-noising; may slice the state (pruning) or move state.z0."""
        return state

    def renoise_scale(self, ctx: StepContext) -> float:
        """r in the loop's re-noise z = z0 + r sigma_{k+1} eps after this step (1: the plain DAPS step)."""
        return 1.0
