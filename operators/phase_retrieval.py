"""Fourier phase retrieval as DAPS defines it: y = |F pad((x + 1) / 2)| + sigma * n, and the images it cannot tell
apart (per colour channel: the 180° rotation, and shifts where the background is the padding's value)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.settings import number
from core.tensors import rot180

from .base import Operator
from .symmetry import TOLERANCE, ChannelOptions, EquivalenceClass, combine, dropped_energy, shift_fill


class PhaseRetrieval(Operator):
    """Zero-pad by int(oversample / 8 * H) per side, centred orthonormal 2-D FFT per channel, magnitude."""

    name = "phase_retrieval"
    # 97.5 % of the right final particles of the power study's tuning images (both mini LDMs, 2,845 particles) fit
    # within 1.065 x the noise margin (scripts/studies/trust_calibration.py, 2026-12-06; docs/orientation.md)
    fit_factor = 1.065

    # |F pad(x_c)| is taken per channel c, and |F u| = |F rot u| = |F shift u| when the shift moves only padding
    symmetries = ("rot180", "shift", "per_channel")
    SETTINGS = {
        "oversample": number(1, help="padding int(oversample / 8 H) per side (DAPS: 2.0; below 1 the padding is too "
                                     "thin for the magnitudes to pin the image down)"),
        "sigma": number(0, low_open=True, help="the measurement noise's standard deviation (DAPS: 0.05)"),
    }

    def __init__(self, resolution: int, oversample: float, sigma: float):
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

    @torch.no_grad()
    def equivalents(self, x: torch.Tensor, tolerance: float = TOLERANCE) -> EquivalenceClass:
        """Per channel: the channel, its rotation, and every zero-fill shift of either whose measurement equals the
        channel's within tolerance * sigma (candidates from the dropped-energy bound, all shifts at once; members
        measured). The right answers turn every channel alike; channels turned differently are twins."""
        x = x.reshape(x.shape[-3:])
        H, W = x.shape[-2:]
        limit = tolerance * self.sigma
        channels = []
        for c in range(x.shape[0]):                     # a loop over colour channels, each measured on its own
            v0 = x[c:c + 1]
            y = self(v0[None].double())
            images, transforms = [], []
            for rot, v in ((False, v0), (True, rot180(v0))):
                bound = dropped_energy(v * 0.5 + 0.5).sqrt()
                dy, dx = (bound <= 10 * limit).nonzero(as_tuple=True)
                cand = {(int(a) - (H - 1), int(b) - (W - 1)) for a, b in zip(dy.tolist(), dx.tolist())} - {(0, 0)}
                cand = [(0, 0), *sorted(cand, key=lambda s: (abs(s[0]) + abs(s[1]), s))]
                imgs = torch.stack([shift_fill(v, a, b) for a, b in cand])
                diff = (self(imgs.double()) - y).flatten(1).norm(dim=1)
                for s, img, d in zip(cand, imgs, diff.tolist()):
                    if s == (0, 0) or d <= limit:       # the channel and its rotation always: exact in theory
                        images.append(img[0])
                        transforms.append((rot, s))
            channels.append(ChannelOptions(torch.stack(images), transforms))
        return combine(channels)
