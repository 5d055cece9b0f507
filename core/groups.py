"""Within-image-group masks and statistics, so particle interactions stay batched and never mix images."""
from __future__ import annotations

import torch


def same_group(groups: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """(B, B) bool: i and j are distinct particles of the same image (and both alive, when given)."""
    mask = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    if alive is not None:
        mask &= alive[:, None] & alive[None, :]
    return mask


def same_image(groups: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: i and j are particles of the same image, i = j included."""
    return groups[:, None] == groups[None, :]


def earlier_in_image(groups: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: j is a particle of i's image before i in batch order (row sums: each one's rank in its image)."""
    order = torch.arange(len(groups), device=groups.device)
    return same_image(groups) & (order[None, :] < order[:, None])


def pairwise_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, B) squared Euclidean distances of flattened rows; exactly 0 for identical rows."""
    flat = x.flatten(1)
    # the matrix-product shortcut leaves round-off on the diagonal and between equal rows
    return torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def group_median(values: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Median of values[j, l] over each particle's group pairs (j < l), shape (B,); NaN for a group without pairs.

    Groups are the cliques of `pairs`. Every member of a group gets the same number, so a kernel built from it
    is symmetric inside the group. O(B^2) memory whatever the number of groups, and no device sync (it runs in
    every MCMC iteration with repulsion): all pairs are sorted by (group, value), non-pairs last in their group.
    """
    B = values.shape[0]
    label = (pairs | torch.eye(B, dtype=torch.bool, device=pairs.device)).long().argmax(1)   # first member (pairs
    # may leave dead particles out, so the members are pairs' cliques, not same_image)
    j, l = torch.triu_indices(B, B, 1, device=values.device)
    is_pair = pairs[j, l]
    v = torch.where(is_pair, values[j, l], torch.full_like(values[j, l], float("inf")))
    g = label[j]
    order = torch.argsort(v, stable=True)
    order = order[torch.argsort(g[order], stable=True)]
    v = torch.cat([v[order], v.new_full((1,), float("nan"))])        # a NaN slot for groups without pairs
    zeros = torch.zeros(B, dtype=torch.long, device=values.device)
    size = zeros.scatter_add(0, g, torch.ones_like(g))              # entries per group in the sorted list
    count = zeros.scatter_add(0, g, is_pair.long())                 # of which real pairs
    start = torch.cumsum(size, 0) - size
    none = torch.full_like(start, v.shape[0] - 1)
    lo = torch.where(count > 0, start + (count - 1) // 2, none)
    hi = torch.where(count > 0, start + count // 2, none)
    # halfway between the two middle values, computed as torch.quantile interpolates (bit for bit)
    return torch.lerp(v[lo], v[hi], 0.5)[label]
