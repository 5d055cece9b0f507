"""Gaussian deblurring as DAPS defines it: y = k * x + sigma * n, a separable Gaussian kernel of `kernel_size` taps and
standard deviation `intensity` pixels, reflected at the borders; linear, with no symmetry (an image is its own class).
The kernel follows the image side unless set (KERNELS: DAPS's at 256 px, a smaller one for the 32 px mini LDMs)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import is_int, is_number
from core.settings import Setting, number

from .base import Operator


def gaussian_taps(size: int, std: float, dtype=torch.float64) -> torch.Tensor:
    """The normalised 1-D kernel (size,): exp(-t^2 / 2 std^2) at t = -(size // 2) … size // 2."""
    t = torch.arange(size, dtype=dtype) - size // 2
    g = torch.exp(-t.square() / (2 * std ** 2))
    return g / g.sum()


class GaussianBlur(Operator):
    """Separable Gaussian blur per channel on images in [-1, 1] (DAPS's task: 61 taps, intensity 3.0 at 256 px)."""

    name = "gaussian_blur"
    # on the digits mini LDM with its kernel (9 taps, 1.5 px), right final particles' losses lie at 2.8 times the noise
    # margin (median; 93 particles, none within it): the model cannot make a blurred digit to the noise. 97.5 % of
    # them fall within 6.14 x (tuning images), every one of the held-out 96 (`OMP_NUM_THREADS=1 python
    # scripts/studies/fit_factor.py --seeds 0 1`, 24 digits x 2 seeds, 2026-12-06). Not measured at 256 px.
    fit_factor = 6.14

    SETTINGS = {
        "kernel_size": Setting("auto", lambda v: v == "auto" or (is_int(v) and v >= 1), "auto or an integer >= 1",
                               "taps of the Gaussian kernel (odd, below twice the image side); auto: KERNELS by the "
                               "image side (DAPS's 61 at 256 px, 9 at the mini LDMs' 32 px)"),
        "intensity": Setting("auto", lambda v: v == "auto" or (is_number(v) and v > 0), "auto or a number > 0",
                             "the kernel's standard deviation in pixels; auto: KERNELS by the image side (DAPS's 3.0 "
                             "at 256 px, 1.5 at 32 px)"),
        "sigma": number(0, low_open=True, help="the measurement noise's standard deviation (DAPS: 0.05)"),
    }
    # (kernel_size, intensity) by image side, the one place the pairing is declared: DAPS's kernel for its 256 px
    # images, and a kernel that blurs a 32 px mini-LDM image about as much relative to its structures (a digit's
    # stroke is 2-4 px; DAPS's 61 taps would span the whole image)
    KERNELS = {256: (61, 3.0), 32: (9, 1.5)}

    @classmethod
    def kernel_for(cls, resolution: int) -> tuple[int, float]:
        """KERNELS' entry for the image side nearest this one."""
        return cls.KERNELS[min(cls.KERNELS, key=lambda side: abs(side - resolution))]

    def __init__(self, resolution: int, kernel_size, intensity, sigma: float):
        super().__init__(sigma)
        from core.errors import ConfigError

        size, std = self.kernel_for(resolution)
        kernel_size = size if kernel_size == "auto" else kernel_size
        intensity = std if intensity == "auto" else intensity
        self.kernel_size, self.intensity = kernel_size, intensity
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
