"""Loss-guided resampling of each image's particles (Feynman-Kac steering): at events in a window of the annealing,
particles are drawn again in proportion to exp(-(L - L_min) / (temperature L_min)) of their measurement loss."""
from __future__ import annotations

import torch

from core.groups import earlier_in_image, same_image
from core.rng import RESAMPLING, generator
from sampler.hooks import Hook, StepContext
from sampler.schedule import trigger_step
from sampler.state import ParticleState, new_particles

SCHEMES = ("systematic", "multinomial")


def resampling_generator(seed: int, image_index: int, k: int) -> torch.Generator:
    """The draws of one image's resampling event at step k: independent of the batch it shares and of the
    particles' own generators."""
    return generator(seed, image_index, RESAMPLING, k)


def group_cumsum(values: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Row i: the sum of values[j] over the particles j of i's group up to and including i (batch order)."""
    before = earlier_in_image(groups)
    return torch.where(before, values[None, :], torch.zeros_like(values[None, :])).sum(1) + values


def ancestors(weights: torch.Tensor, groups: torch.Tensor, u: torch.Tensor, scheme: str) -> torch.Tensor:
    """(B,) the batch index each place draws (from its own group), by normalised group weights.

    u: (B,) uniforms in [0, 1): systematic uses one per group (the group's first member's), stratified over the
    group's places; multinomial one per place. Places draw in batch order, so a systematic draw keeps copies of a
    particle next to each other."""
    B = weights.shape[0]
    members = same_image(groups)
    size = members.sum(1).to(weights.dtype)
    rank = earlier_in_image(groups).sum(1).to(weights.dtype)
    if scheme == "systematic":
        first = members.to(torch.long).argmax(1)                   # each group's first member holds its uniform
        target = (u[first] + rank) / size
    else:
        target = u
    cum = group_cumsum(weights, groups)
    # the first member of the group whose cumulative weight passes the target (the last one on round-off)
    passes = members & (cum[None, :] > target[:, None])
    last = torch.where(members, torch.arange(B, device=weights.device)[None, :], -1).max(1).values
    pick = torch.where(passes, cum[None, :], torch.full_like(cum[None, :], float("inf"))).argmin(1)
    return torch.where(passes.any(1), pick, last)


class ResamplingHook(Hook):
    """At each event step, every image's particles are drawn again by weights from their loss at z0.

    Weights w_i = exp(-(L_i - L_min) / (temperature L_min)), L_min the image's lowest loss at the event, normalised
    per image; an image resamples when its effective sample size 1 / sum w_i^2 is below ess_threshold times its
    particle count. A particle drawn m times keeps its id and generator in its first place; the m - 1 copies get new
    ids and generators of their own (so the re-noise after the step already separates them); undrawn particles
    leave the batch as pruned ones do. Each event leaves a `resample` row per particle (weight, loss, offspring,
    z0 of a dropped one) and per image (ESS, whether it resampled), and a `birth` row per copy in the trace."""

    def __init__(self, steps: list[int], seed: int, *, temperature: float, ess_threshold: float, scheme: str):
        """steps, seed: from the flags (resampling_interval and the window); the rest is the `resampling` block as
        declared (particle/resampling/__init__.py): no defaults of its own."""
        self.steps, self.temperature, self.ess_threshold = set(steps), temperature, ess_threshold
        self.scheme, self.seed = scheme, seed

    @staticmethod
    def event_steps(interval: int, start_t: int, end_t: int, num_steps: int) -> list[int]:
        """Steps k of the window (from the first with t_k <= start_t to the last with t_k >= end_t), every
        `interval`-th from its start; never the last step (nothing would follow the draw)."""
        first = trigger_step(start_t, num_steps)
        if first is None:
            return []
        last = max((k for k in range(num_steps) if round(1000 * (1 - k / num_steps)) >= end_t), default=-1)
        return [k for k in range(first, min(last, num_steps - 2) + 1, interval)]

    @torch.no_grad()
    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        if ctx.k not in self.steps:
            return state
        B, groups = state.size, state.image_ids
        arange = torch.arange(B, device=groups.device)
        members, earlier = same_image(groups), earlier_in_image(groups)
        # the loss at z0 itself: state.loss is from the MCMC iterate before the last move
        loss = ctx.operator.loss(ctx.model.decode(state.z0), state.y).double()
        loss = torch.where(state.alive & torch.isfinite(loss), loss, torch.full_like(loss, float("inf")))
        best = torch.where(members, loss[None, :], torch.full_like(loss[None, :], float("inf"))).min(1).values
        w = torch.nan_to_num(torch.exp(-(loss - best) / (self.temperature * best.clamp_min(1e-300))), nan=0.0)
        weights = w / torch.where(members, w[None, :], torch.zeros_like(w[None, :])).sum(1)
        ess = 1 / torch.where(members, weights[None, :].square(), torch.zeros_like(weights[None, :])).sum(1)
        resample = ess < self.ess_threshold * members.sum(1) - 1e-9 if self.ess_threshold < 1 else \
            torch.ones(B, dtype=torch.bool, device=groups.device)

        u = torch.empty(B, dtype=torch.float64)
        images = groups.tolist()
        for g in dict.fromkeys(images):                  # the draws of each image from its own generator
            mine = torch.tensor([h == g for h in images])
            n = 1 if self.scheme == "systematic" else int(mine.sum())
            u[mine] = torch.rand(n, generator=resampling_generator(self.seed, g, ctx.k), dtype=torch.float64)
        picked = ancestors(weights, groups, u.to(weights.device), self.scheme)
        picked = torch.where(resample, picked, arange)
        offspring = torch.zeros(B, dtype=torch.long, device=groups.device).scatter_add_(0, picked,
                                                                                        torch.ones_like(picked))
        copy = (earlier & (picked[None, :] == picked[:, None])).any(1)     # not the first place of its ancestor

        ids = state.particle_ids
        first = [images.index(g) for g in dict.fromkeys(images)]
        ctx.trace.images("resample", [images[i] for i in first], k=ctx.k, t=ctx.t, ess=ess[first],
                         resampled=resample[first], temperature=self.temperature)
        ctx.trace.particles("resample", groups, ids, k=ctx.k, t=ctx.t, weight=weights, loss=loss,
                            offspring=offspring, z0=[None if n else z for n, z in
                                                     zip(offspring.tolist(), state.z0.detach().clone())])
        new = new_particles(state, state.select(picked), copy, self.seed)
        children = copy.nonzero().flatten().tolist()
        if children:
            ctx.trace.particles("birth", [images[i] for i in children], new.particle_ids[children], k=ctx.k, t=ctx.t,
                                parent=ids[picked[children]])
        return new
