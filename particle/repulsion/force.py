"""Particle guidance: a decaying RBF-kernel repulsion between the particles of each image, as an MCMC drift."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.groups import group_median, pairwise_sq_distances, same_group
from core.tensors import per_row
from sampler.hooks import Hook, StepContext
from sampler.precision import autocast
from sampler.schedule import trigger_step
from sampler.state import ParticleState

# score_relative: a fixed fraction of each particle's score; absolute: the kernel force times the strength, both
# decaying by `schedule`; particle_guidance: as Particle Guidance (Corso et al. 2023), the kernel force times a
# constant strength (it fades as particles part), off below sigma_min
MODES = ("score_relative", "absolute", "particle_guidance")
SCHEDULES = ("linear", "cosine")
FEATURES = ("latent", "pixel")
DEFAULT_END_T = 200     # where the strength reaches 0 when no refine boundary is set


def rbf_repulsion(feats: torch.Tensor, groups: torch.Tensor, alive: torch.Tensor | None = None):
    """Force on each particle, -grad_i sum_j k(f_i, f_j) with k = exp(-|f_i - f_j|^2 / h), and h per group.

    h = median of the group's squared pairwise distances / log(group size) (SVGD's median heuristic),
    recomputed at every call, floored at the dtype's eps so identical particles get a zero, finite force.
    Returns (force (B, D), h (B,)).
    """
    f = feats.flatten(1)
    pairs = same_group(groups, alive)
    d2 = pairwise_sq_distances(f)
    n = pairs.sum(1) + 1                                   # group size (alive members)
    h = group_median(d2, pairs) / torch.log(n.to(f.dtype)).clamp_min(1e-12)
    h = torch.nan_to_num(h, nan=1.0).clamp_min(torch.finfo(f.dtype).eps)
    w = torch.where(pairs, 2.0 / h[:, None] * torch.exp(-d2 / h[:, None]), torch.zeros_like(d2))
    # sum_j w_ij (f_i - f_j): antisymmetric, so the forces of a group sum to zero
    return w.sum(1, keepdim=True) * f - w @ f, h


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Each row divided by its norm; a zero row stays zero.

    Rows are first divided by their largest entry: a far-apart particle's kernel force can be ~1e-25,
    whose squares underflow in float32 and would turn the division into a huge kick.
    """
    col = (-1, *[1] * (x.ndim - 1))
    tiny = torch.finfo(x.dtype).tiny
    x = x / x.flatten(1).abs().amax(1).clamp_min(tiny).view(col)
    return x / x.flatten(1).norm(dim=1).clamp_min(tiny).view(col)


def decay(k: int, end_k: int, schedule: str) -> float:
    """Multiplier of the initial strength at step k: 1 at k = 0, exactly 0 from end_k on."""
    if k >= end_k:
        return 0.0
    r = k / end_k
    return 1.0 - r if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * r))


def end_step(end_k: int | None, stop_k: int | None, num_steps: int) -> int | None:
    """The step from which the strength is 0: repulsion.end_t's step (end_k), else the step from which no stage adds
    a drift (stop_k: the refine stage's first), else t = DEFAULT_END_T's."""
    if end_k is not None:
        return end_k
    return stop_k if stop_k is not None else trigger_step(DEFAULT_END_T, num_steps)


class RepulsionHook(Hook):
    """Adds strength_k * force to the MCMC score while the decay schedule is above zero, never from stop_k on (the
    refine stage's first step: latent optimisation there is repulsion-free)."""

    def __init__(self, scale: float, end_k: int | None, stop_k: int | None, *, mode: str, schedule: str,
                 features: str, pixel_size: int, sigma_min: float):
        """scale, end_k, stop_k: RepulsionSettings' (repulsion_scale, repulsion.end_t, the drifts' end); the rest is the
        `repulsion` block as declared (particle/repulsion/__init__.py): no defaults of its own."""
        self.scale, self.end_k, self.mode, self.schedule = scale, end_k, mode, schedule
        self.sigma_min, self.stop_k = sigma_min, stop_k
        self.features, self.pixel_size = features, pixel_size
        self._k, self._ratio_sum, self._ratio_n = None, 0.0, 0

    def strength(self, k: int, sigma: float | None = None) -> float:
        """The strength at step k (noise level sigma): the decayed scale, or for particle_guidance the scale while
        sigma >= sigma_min; 0 from stop_k on."""
        if self.stop_k is not None and k >= self.stop_k:
            return 0.0
        if self.mode == "particle_guidance":
            return self.scale if sigma is None or sigma >= self.sigma_min else 0.0
        return self.scale * decay(k, self.end_k, self.schedule)

    def _force(self, z: torch.Tensor, state: ParticleState, model, autocast_dtype=None) -> torch.Tensor:
        if self.features == "latent":
            return rbf_repulsion(z, state.image_ids, state.alive)[0].view_as(z)
        # decoded, downsampled pixels: force in feature space, pulled back to the latent by one batched VJP
        with torch.enable_grad():
            zr = z.detach().requires_grad_(True)
            with autocast(z.device.type, autocast_dtype):          # the sampler's decoder precision
                x = model.decode(zr)
            x = x.to(z.dtype)                                      # the kernel in the run's dtype
            if x.shape[-1] > self.pixel_size:
                x = F.adaptive_avg_pool2d(x, self.pixel_size)
            force_f, _ = rbf_repulsion(x.detach(), state.image_ids, state.alive)
            (force,) = torch.autograd.grad(x, zr, grad_outputs=force_f.view_as(x))
        return force.to(z.dtype)

    def drift(self, z, score, state: ParticleState, ctx: StepContext):
        if ctx.k != self._k:
            self._k, self._ratio_sum, self._ratio_n = ctx.k, 0.0, 0
        s = self.strength(ctx.k, ctx.sigma)
        if s == 0.0:
            return None
        force = self._force(z, state, ctx.model, ctx.autocast_dtype)
        score_norm = score.flatten(1).norm(dim=1)
        if self.mode == "score_relative":
            # the push of each particle is a fixed fraction of its own score, whatever the model's scale
            force = unit_rows(force) * per_row(s * score_norm, z)
        else:
            force = s * force
        # a dead particle is frozen by the MCMC anyway; keep its drift finite and zero
        force = torch.where(per_row(state.alive, z), force, torch.zeros_like(force))
        ratio = force.flatten(1).norm(dim=1) / score_norm.clamp_min(torch.finfo(score.dtype).tiny)
        ok = state.alive & torch.isfinite(ratio)
        # per-particle sums kept on the device, read once per step in after_step: no sync per MCMC iteration
        self._ratio_sum = self._ratio_sum + torch.where(ok, ratio, torch.zeros_like(ratio))
        self._ratio_n = self._ratio_n + ok.long()
        return force

    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        s = self.strength(ctx.k, ctx.sigma)
        if self._k == ctx.k and s != 0.0:
            # per particle, the mean over this step's MCMC iterations; an image's record averages its particles
            n = self._ratio_n.tolist()
            ratios = [r / c if c else None for r, c in zip(self._ratio_sum.tolist(), n)]
            ctx.trace.batch("step", k=ctx.k, repulsion_strength=s)
            ctx.trace.particles("step", state.image_ids, state.particle_ids, k=ctx.k, repulsion_score_ratio=ratios)
        else:
            ctx.trace.batch("step", k=ctx.k, repulsion_strength=s, repulsion_score_ratio=0.0 if s == 0.0 else None)
        return state
