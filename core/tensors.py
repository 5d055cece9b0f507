"""Small tensor helpers every layer uses: per-particle broadcasting, the [-1, 1] -> [0, 1] image map, the 180°
rotation, a CUDA sync."""
from __future__ import annotations

import torch


def per_row(per_particle: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) per-particle tensor shaped to broadcast over (B, ...) tensors like `like`."""
    return per_particle.view(-1, *[1] * (like.ndim - 1))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped: every metric sees the image a user would save (a diverged particle's NaNs as
    gray: it is labelled `fail` anyway, and its metrics stay numbers)."""
    return (torch.nan_to_num(x, nan=0.0) * 0.5 + 0.5).clamp(0, 1)


def rot180(x: torch.Tensor) -> torch.Tensor:
    """The 180° rotation of the last two dimensions (images or latents)."""
    return torch.flip(x, dims=(-2, -1))


def cuda_sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
