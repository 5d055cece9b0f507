"""Within-image-group masks and statistics, so particle interactions stay batched and never mix images."""
from __future__ import annotations

import torch


def same_group(groups: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """(B, B) bool: i and j are distinct particles of the same image (and both alive, when given)."""
    mask = (groups[:, None] == groups[None, :]) & ~torch.eye(len(groups), dtype=torch.bool, device=groups.device)
    if alive is not None:
        mask &= alive[:, None] & alive[None, :]
    return mask


def pairwise_sq_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, B) squared Euclidean distances of flattened rows; exactly 0 for identical rows."""
    flat = x.flatten(1)
    # the matrix-product shortcut leaves round-off on the diagonal and between equal rows
    return torch.cdist(flat, flat, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def group_median(values: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Median of values[j, l] over each particle's group pairs (j < l), shape (B,); NaN for a group without pairs.

    Every member of a group gets the same number, so a kernel built from it is symmetric inside the group.
    """
    B = values.shape[0]
    upper = torch.triu(pairs, diagonal=1)
    # row i: the pairs (j, l) whose both ends are in i's group (pairs[i, j] or j == i, same for l)
    member = pairs | torch.eye(B, dtype=torch.bool, device=pairs.device)
    in_group = member[:, :, None] & member[:, None, :] & upper[None]
    table = torch.where(in_group, values[None].expand(B, B, B), torch.full_like(values[None], float("nan")))
    return torch.nanquantile(table.flatten(1), 0.5, dim=1)
