"""Gaussian deblurring as DAPS defines it: y = k * x + sigma * n, a separable Gaussian kernel of `kernel_size` taps and
standard deviation `intensity` pixels, reflected at the borders; linear, with no symmetry (an image is its own class)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.settings import integer, number

from .base import Operator


def gaussian_taps(size: int, std: float, dtype=torch.float64) -> torch.Tensor:
    """The normalised 1-D kernel (size,): exp(-t^2 / 2 std^2) at t = -(size // 2) … size // 2."""
    t = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-t.square() / (2 * std ** 2))
    return g / g.sum()


class GaussianBlur(Operator):
    """Separable Gaussian blur per channel on images in [-1, 1] (DAPS's task: 61 taps, intensity 3.0 at 256 px)."""

    name = "gaussian_blur"

    SETTINGS = {
        "kernel_size": integer(1, help="taps of the Gaussian kernel (odd; DAPS: 61 at 256 px), below twice the image "
                                       "side"),
        "intensity": number(0, low_open=True, help="the kernel's standard deviation in pixels (DAPS: 3.0)"),
        "sigma": number(0, low_open=True, help="the measurement noise's standard deviation (DAPS: 0.05)"),
    }

    def __init__(self, resolution: int = 256, kernel_size: int = 61, intensity: float = 3.0, sigma: float = 0.05):
        super().__init__(sigma)
        from core.errors import ConfigError

        if kernel_size % 2 == 0 or kernel_size // 2 >= resolution:
            raise ConfigError(f"task.operator.kernel_size={kernel_size} is invalid for {resolution}x{resolution} "
                              f"images: must be odd and below {2 * resolution} (the border is reflected)")
        self.taps = gaussian_taps(kernel_size, intensity)
        self.pad = kernel_size // 2

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        C = x.shape[1]
        g = self.taps.to(x.device, x.dtype)
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        x = F.conv2d(x, g.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)       # along the rows, then the columns
        return F.conv2d(x, g.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
