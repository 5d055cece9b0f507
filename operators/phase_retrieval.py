"""Fourier phase retrieval as DAPS defines it: y = |F pad((x + 1) / 2)| + sigma * n."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Operator


def rot180(x: torch.Tensor) -> torch.Tensor:
    """The 180° rotation: |F pad(x)| cannot tell x from it."""
    return torch.flip(x, dims=(-2, -1))


class PhaseRetrieval(Operator):
    """Zero-pad by int(oversample / 8 * H) per side, centred orthonormal 2-D FFT per channel, magnitude."""

    def __init__(self, resolution: int = 256, oversample: float = 2.0, sigma: float = 0.05):
        super().__init__(sigma)
        self.oversample = oversample
        self.pad = int(oversample / 8.0 * resolution)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 0.5 + 0.5
        x = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        # centred transform (ifftshift -> fft2 -> fftshift), as fastMRI's fft2c used by DAPS
        spec = torch.fft.fftshift(
            torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
        )
        return spec.abs()
