"""Diversity-aware pruning at one annealing step: keep the best and far-apart particles, or branch the kept ones."""
from __future__ import annotations

import torch

from pipeline.checks import ConfigError, is_int, is_number
from sampler.hooks import Hook, StepContext
from sampler.state import ParticleState, particle_generator

from .groups import group_median, pairwise_sq_distances, same_group

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
                diversity_fraction: float, loss_factor: float) -> torch.Tensor:
    """(B,) bool mask of the particles to keep, `keep` per group (all of a smaller group).

    First the lowest loss. Then, place by place: among the particles farther than diversity_fraction *
    (the group's median pairwise distance) from every kept one and with loss <= loss_factor * best, the
    farthest; when there is none, the lowest-loss particle left.
    """
    B = loss.shape[0]
    loss = torch.nan_to_num(loss.double(), nan=float("inf"))
    dist = dist.double()
    rank = loss_rank(loss).double()
    pairs = same_group(groups)
    members = pairs | torch.eye(B, dtype=torch.bool, device=loss.device)
    threshold = diversity_fraction * torch.nan_to_num(group_median(dist, pairs), nan=0.0)
    best = _group_min(loss, members)
    kept = _group_argmin(rank, members)
    for _ in range(keep - 1):   # a loop over places to fill, not over particles
        to_kept = _group_min(dist, pairs & kept[None, :])
        eligible = ~kept & (to_kept > threshold) & (loss <= loss_factor * best) & torch.isfinite(loss)
        # eligible ones first (negative keys, farthest first), then the rest by loss rank (keys >= 0)
        key = torch.where(eligible, -to_kept, rank).masked_fill(kept, float("inf"))
        kept = kept | _group_argmin(key, members)
    return kept


class PruningHook(Hook):
    """At step prune_k: score particles by measurement loss at z0, keep `keep` per image (or branch them)."""

    def __init__(self, prune_k: int, keep: int = 2, mode: str = "prune", diversity_fraction: float = 0.5,
                 loss_factor: float = 1.1, seed: int = 0):
        self.prune_k, self.keep, self.mode = prune_k, keep, mode
        self.diversity_fraction, self.loss_factor, self.seed = diversity_fraction, loss_factor, seed
        self._decision = None

    @classmethod
    def from_config(cls, cfg, prune_k) -> "PruningHook":
        pc = cfg.get("pruning", {}) or {}
        keep, mode = cfg.pruning_keep, pc.get("mode", "prune")
        frac, factor = pc.get("diversity_fraction", 0.5), pc.get("loss_factor", 1.1)
        if prune_k is None:
            raise ConfigError("pruning_step=-1: pruning is off, no PruningHook to build")
        if not is_int(keep) or not 1 <= keep < cfg.particle_num:
            raise ConfigError(f"pruning_keep={keep} is invalid with particle_num={cfg.particle_num}: "
                              f"must be in 1 … {cfg.particle_num - 1}")
        if mode not in MODES:
            raise ConfigError(f"pruning.mode={mode} is invalid: must be one of {', '.join(MODES)}")
        if not is_number(frac) or not 0 <= frac <= 10:
            raise ConfigError(f"pruning.diversity_fraction={frac} is invalid: must be a number in 0 … 10 "
                              f"(a fraction of the median pairwise distance)")
        if not is_number(factor) or factor < 1:
            raise ConfigError(f"pruning.loss_factor={factor} is invalid: must be a number >= 1")
        return cls(prune_k, keep, mode, float(frac), float(factor), cfg.seed)

    @torch.no_grad()
    def after_step(self, state: ParticleState, ctx: StepContext) -> ParticleState:
        if ctx.k != self.prune_k:
            return state
        # the loss at z0 itself: state.loss is from the MCMC iterate before the last move
        loss = ctx.operator.loss(ctx.model.decode(state.z0), state.y).double()
        loss = torch.where(state.alive, loss, torch.full_like(loss, float("inf")))
        dist = pairwise_sq_distances(state.z0.double()).sqrt()
        kept = choose_kept(loss, dist, state.image_ids, self.keep, self.diversity_fraction, self.loss_factor)
        pairs = same_group(state.image_ids)
        to_kept = _group_min(dist, pairs & kept[None, :])
        dropped = (~kept).nonzero().flatten()

        record = {
            "k": ctx.k, "t": ctx.t, "mode": self.mode,
            "particle_ids": state.particle_ids[dropped].tolist(),
            "image_ids": state.image_ids[dropped].tolist(),
            "z0": state.z0[dropped].detach().clone(),
            "losses": loss[dropped].tolist(),
            "distance_to_kept": to_kept[dropped].tolist(),
        }
        self._decision = {
            "k": ctx.k, "t": ctx.t, "image_ids": state.image_ids.tolist(), "particle_ids": state.particle_ids.tolist(),
            "kept": kept.tolist(), "losses": loss.tolist(), "distance_to_kept": to_kept.tolist(),
            "median_distance": torch.nan_to_num(group_median(dist, pairs), nan=0.0).tolist(), "children": [],
        }
        if self.mode == "prune":
            new = state.select(kept.nonzero().flatten())
        else:
            new, self._decision["children"] = self._branch(state, kept, loss, pairs)
        new.dropped.append(record)
        return new

    def _branch(self, state: ParticleState, kept, loss, pairs):
        """Refill the dropped places with children of the kept particles of the same image (best first, round robin)."""
        B = state.size
        arange = torch.arange(B, device=kept.device)
        child = ~kept
        child_rank = (pairs & (arange[None, :] < arange[:, None]) & child[None, :]).sum(1)   # j-th child of its group
        kept_pairs = pairs & kept[None, :]
        rank = loss_rank(loss)
        kept_rank = (kept_pairs & (rank[None, :] < rank[:, None])).sum(1)                 # 0 = best kept of its group
        target = child_rank % kept_pairs.sum(1).clamp_min(1)
        parent = (kept_pairs & (kept_rank[None, :] == target[:, None])).float().argmax(1)
        new = state.select(torch.where(child, parent, arange))
        # children get ids beyond the group's original range and generators of their own
        ids = state.particle_ids
        group_max = torch.where(pairs | torch.eye(B, dtype=torch.bool, device=ids.device), ids[None, :],
                                torch.full_like(ids[None, :], -1)).max(1).values
        new.particle_ids = torch.where(child, group_max + 1 + child_rank, ids)
        generators = list(new.generators)
        for i in child.nonzero().flatten().tolist():     # one generator per child: the accepted per-particle loop
            generators[i] = particle_generator(self.seed, int(state.image_ids[i]), int(new.particle_ids[i]),
                                               state.z.device)
        new.generators = generators
        children = [(int(state.image_ids[i]), int(new.particle_ids[i]), int(ids[parent[i]]))
                    for i in child.nonzero().flatten().tolist()]
        return new, children

    def report(self, image: int) -> dict:
        d = self._decision
        if d is None:
            return {"pruning": None}
        mine = [i for i, g in enumerate(d["image_ids"]) if g == image]
        ids = [d["particle_ids"][i] for i in mine]
        dropped = [i for i in mine if not d["kept"][i]]
        rep = {
            "mode": self.mode, "k": d["k"], "t": d["t"],
            "kept": [d["particle_ids"][i] for i in mine if d["kept"][i]],
            "dropped": [d["particle_ids"][i] for i in dropped],
            "losses": dict(zip(ids, (d["losses"][i] for i in mine))),
            "distance_to_kept": {d["particle_ids"][i]: d["distance_to_kept"][i] for i in dropped},
            "median_distance": d["median_distance"][mine[0]] if mine else None,
        }
        if self.mode == "branch":
            rep["children"] = {child: parent for g, child, parent in d["children"] if g == image}
        return {"pruning": rep}
