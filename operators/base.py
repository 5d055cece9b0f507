"""Operator base class: batched forward map, noisy measurement and per-sample squared-error loss."""
from __future__ import annotations

import torch


class Operator:
    """A forward map on images in [-1, 1] of shape (B, C, H, W); every method is batched."""

    def __init__(self, sigma: float = 0.05):
        self.sigma = sigma

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        y0 = self(x)
        noise = torch.randn(y0.shape, generator=generator, dtype=y0.dtype, device="cpu").to(y0.device)
        return y0 + self.sigma * noise

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """||A(x) - y||^2 per sample, shape (B,): never mixes samples."""
        return (self(x) - y).pow(2).flatten(1).sum(-1)
