"""The narrow protocol through which the stages (and the tracker) plug into the sampler loop: the one way to observe
or extend it."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .state import ParticleState
from .trace import Trace


@dataclass
class StepContext:
    """What a hook may know about the current annealing step; hooks write what they did into `trace` (entries of
    this step carry k). autocast_dtype: the sampler's decoder precision (None: the run's dtype)."""

    k: int
    t: int
    sigma: float
    sigma_next: float
    num_steps: int
    model: object = None
    operator: object = None
    trace: Trace = field(default_factory=Trace)
    autocast_dtype: torch.dtype | None = None


class Hook:
    """Every method is optional; the defaults do nothing. Per annealing step the loop calls, in the hooks' order:
    begin_step, then drift at every MCMC iteration, then after_step, renoise_scale, end_step."""

    def begin_step(self, state: ParticleState, ctx: StepContext) -> None:
        """Before the step's ODE estimate (the tracker starts its clock here)."""

    def drift(self, z: torch.Tensor, score: torch.Tensor, state: ParticleState, ctx: StepContext):
        """Extra term added to the MCMC score at every MCMC iteration (None for no drift); whether it applies at
        this step is the hook's business. `state.alive` is who is alive at that iteration."""
        return None

    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        """Runs after the MCMC step, before re-noising; may slice the state (pruning) or move state.z0."""
        return state

    def renoise_scale(self, ctx: StepContext) -> float:
        """r in the loop's re-noise z = z0 + r sigma_{k+1} eps after this step (1: the plain DAPS step)."""
        return 1.0

    def end_step(self, state: ParticleState, ctx: StepContext) -> None:
        """After the re-noise: the step's final state (the tracker records it here)."""
