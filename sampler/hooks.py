"""The narrow protocol through which repulsion, pruning and refinement plug into the sampler loop."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .state import ParticleState


@dataclass
class PerParticle:
    """A per-step statistic with one value per particle (None where undefined); each image's step record gets
    the `reduce` ("mean", "max" or "sum") over its own particles, or with "list" their values in batch order."""

    image_ids: list[int]
    values: list
    reduce: str = "mean"

    def for_image(self, image: int):
        if self.reduce == "list":
            return [v for g, v in zip(self.image_ids, self.values) if g == image]
        vals = [v for g, v in zip(self.image_ids, self.values) if g == image and v is not None]
        if not vals:
            return None
        if self.reduce == "max":
            return max(vals)
        return sum(vals) / len(vals) if self.reduce == "mean" else sum(vals)


@dataclass
class StepContext:
    """What a hook may know about the current annealing step; hooks write their per-step stats into `log`
    (a number for the whole batch, or a PerParticle)."""

    k: int
    t: int
    sigma: float
    sigma_next: float
    num_steps: int
    phase: str                      # "explore", "prune" (after pruning) or "refine"
    model: object = None
    operator: object = None
    log: dict = field(default_factory=dict)
    renoise_scale: float = 1.0      # z = z0 + renoise_scale * sigma_next * eps; ReSample's resample lowers it


class Hook:
    """Every method is optional; the defaults do nothing."""

    def before_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        return state

    def drift(self, z: torch.Tensor, score: torch.Tensor, state: ParticleState, ctx: StepContext):
        """Extra term added to the MCMC score at every MCMC iteration (None for no drift).

        Not called during the refine phase: the loop switches drifts off there.
        """
        return None

    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        """Runs after the MCMC step, before re-noising; may slice the state (pruning) or move state.z0."""
        return state

    def report(self, image: int) -> dict:
        """Record of one image of the batch, merged into its metric.json entry (e.g. pruning decisions,
        optimisation counts); times in it are the batch's divided by the batch's image count."""
        return {}
