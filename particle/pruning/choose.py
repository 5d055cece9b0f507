"""Diversity-aware pruning at one annealing step or a schedule of them (successive halving): keep the best and
far-apart particles, or branch the kept ones."""
from __future__ import annotations

import torch

from core.groups import earlier_in_image, group_median, pairwise_sq_distances, same_group, same_image
from sampler.hooks import Hook, StepContext
from sampler.state import ParticleState, new_particles

MODES = ("prune", "branch")


def _group_min(values: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Row i: min over members[i, j] of values[j] (a (B,) vector) or values[i, j] (a (B, B) matrix); inf when none."""
    values = values.expand(members.shape)
    return torch.where(members, values, torch.full_like(values, float("inf"))).min(1).values


def _group_argmin(key: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the one particle of each group with the smallest finite key (the first on ties)."""
    table = torch.where(members, key[None, :], torch.full_like(key[None, :], float("inf")))
    best, has = table.argmin(1), torch.isfinite(table.min(1).values)
    pick = torch.zeros_like(has)
    pick[best[has]] = True
    return pick


def loss_rank(loss: torch.Tensor) -> torch.Tensor:
    """0 … B-1 by increasing loss, ties by position; NaN counts as inf."""
    loss = torch.nan_to_num(loss.double(), nan=float("inf"))
    rank = torch.empty(loss.shape[0], dtype=torch.long, device=loss.device)
    rank[torch.argsort(loss, stable=True)] = torch.arange(loss.shape[0], device=loss.device)
    return rank


def choose_kept(loss: torch.Tensor, dist: torch.Tensor, groups: torch.Tensor, keep: int,
                diversity_fraction: float, loss_factor: float, margin: float = float("inf")) -> torch.Tensor:
    """(B,) bool mask of the particles to keep, `keep` per group (all of a smaller group).

    First the lowest loss. Then, place by place: among the particles farther than diversity_fraction *
    (the group's median pairwise distance) from every kept one and with loss <= loss_factor * best, the
    farthest; when there is none, the lowest-loss particle left. A particle whose loss is above `margin` (the
    noise level, operator.loss_margin) is never kept for its distance while one within it is left.
    """
    loss = torch.nan_to_num(loss.double(), nan=float("inf"))
    dist = dist.double()
    rank = loss_rank(loss).double()
    pairs, members = same_group(groups), same_image(groups)
    threshold = diversity_fraction * torch.nan_to_num(group_median(dist, pairs), nan=0.0)
    best = _group_min(loss, members)
    kept = _group_argmin(rank, members)
    inside = loss <= margin
    for _ in range(keep - 1):   # a loop over places to fill, not over particles
        to_kept = _group_min(dist, pairs & kept[None, :])
        inside_left = (members & (inside & ~kept)[None, :]).any(1)
        eligible = (~kept & (to_kept > threshold) & (loss <= loss_factor * best) & torch.isfinite(loss)
                    & (inside | ~inside_left))
        # eligible ones first (negative keys, farthest first), then the rest by loss rank (keys >= 0)
        key = torch.where(eligible, -to_kept, rank).masked_fill(kept, float("inf"))
        kept = kept | _group_argmin(key, members)
    return kept


class PruningHook(Hook):
    """At each step of its schedule: score particles by measurement loss at z0, keep that step's number per image
    (or branch them).

    Every particle of a decision leaves a `prune` row in the trace (kept or not, its loss, its distance to the
    nearest kept one; a dropped one its z0), every branch child a `birth` row naming its parent."""

    def __init__(self, schedule: list[tuple[int, int]], seed: int, *, mode: str, diversity_fraction: float,
                 loss_factor: float):
        """schedule: (annealing step k, particles kept per image) pairs, from the flags; the rest is the `pruning`
        block as declared (particle/pruning/__init__.py): no defaults of its own."""
        self.schedule, self.mode = dict(schedule), mode
        self.diversity_fraction, self.loss_factor, self.seed = diversity_fraction, loss_factor, seed

    @torch.no_grad()
    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        if ctx.k not in self.schedule:
            return state
        keep = self.schedule[ctx.k]
        # the loss at z0 itself: state.loss is from the MCMC iterate before the last move
        loss = ctx.operator.loss(ctx.model.decode(state.z0), state.y).double()
        loss = torch.where(state.alive, loss, torch.full_like(loss, float("inf")))
        dist = pairwise_sq_distances(state.z0.double()).sqrt()
        kept = choose_kept(loss, dist, state.image_ids, keep, self.diversity_fraction, self.loss_factor,
                           ctx.operator.loss_margin(state.y[0].numel()))
        pairs = same_group(state.image_ids)
        to_kept = _group_min(dist, pairs & kept[None, :])
        z0 = state.z0.detach().clone()
        ctx.trace.particles("prune", state.image_ids, state.particle_ids, k=ctx.k, t=ctx.t, mode=self.mode,
                            kept=kept, loss=loss, distance_to_kept=to_kept,
                            median_distance=torch.nan_to_num(group_median(dist, pairs), nan=0.0),
                            z0=[None if k else z for k, z in zip(kept.tolist(), z0)])
        if self.mode == "prune":
            return state.select(kept.nonzero().flatten())
        new, children = self._branch(state, kept, loss, pairs)
        for image, child, parent in children:
            ctx.trace.particles("birth", [image], [child], k=ctx.k, t=ctx.t, parent=parent)
        return new

    def _branch(self, state: ParticleState, kept, loss, pairs):
        """Refill the dropped places with children of the kept particles of the same image (best first, round robin)."""
        B = state.size
        arange = torch.arange(B, device=kept.device)
        child = ~kept
        child_rank = (earlier_in_image(state.image_ids) & child[None, :]).sum(1)            # j-th child of its group
        kept_pairs = pairs & kept[None, :]
        rank = loss_rank(loss)
        kept_rank = (kept_pairs & (rank[None, :] < rank[:, None])).sum(1)                 # 0 = best kept of its group
        target = child_rank % kept_pairs.sum(1).clamp_min(1)
        parent = (kept_pairs & (kept_rank[None, :] == target[:, None])).float().argmax(1)
        new = new_particles(state, state.select(torch.where(child, parent, arange)), child, self.seed)
        ids = state.particle_ids
        children = [(int(state.image_ids[i]), int(new.particle_ids[i]), int(ids[parent[i]]))
                    for i in child.nonzero().flatten().tolist()]
        return new, children
