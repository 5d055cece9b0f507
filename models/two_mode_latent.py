"""Decoder-constrained two-mode benchmark: the Gaussian mixture over small latents, seen through a fixed nonlinear,
180°-equivariant decoder D(z) = tanh(U z) with U a 4x bilinear upsampling (the VQ-f4 LDM's factor).

As on an LDM, latent optimisation can only reach images the decoder can make; the prior's means are fitted so that
D(mu_j) is closest to bundled image j, and the mixture holds every rot180(mu_j), so phase retrieval has two modes.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from core.tensors import rot180

from .two_mode import GaussianMixtureDenoiser, benchmark_images, twin_weights


def model_setting(model_cfg, key: str):
    """A model setting, its declared default where the config leaves it out (models.SETTINGS)."""
    from core.settings import value

    from . import SETTINGS

    return value(model_cfg, SETTINGS, key)


def upsample(z: torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear, align_corners=False: symmetric under flips, so upsample(rot z) = rot upsample(z)."""
    return F.interpolate(z, scale_factor=factor, mode="bilinear", align_corners=False)


def decode(z: torch.Tensor, factor: int) -> torch.Tensor:
    """D(z) = tanh(U z): smooth, strictly increasing per pixel, into (-1, 1); its Jacobian depends on z."""
    return torch.tanh(upsample(z, factor))


@lru_cache(maxsize=4)
def fitted_latents(resolution: int, factor: int, count: int, ridge: float = 0.1, iters: int = 100) -> torch.Tensor:
    """mu_j = argmin ||D(mu) - x_j||^2 + ridge ||mu||^2 for the bundled images x_j (float64 L-BFGS from the pooled
    atanh of x_j; deterministic, under a second). Without the ridge, sharp edges pull latents to +-25 for a
    0.1 dB better fit; with it they stay within about +-5 (decoded PSNR 23.2 dB mean, 15.9 dB worst)."""
    images = benchmark_images(resolution, count)
    mu = F.avg_pool2d(torch.atanh(images.clamp(-0.95, 0.95)), factor).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([mu], lr=1.0, max_iter=iters, tolerance_grad=1e-12, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (decode(mu, factor) - images).square().sum() + ridge * mu.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mu.detach()


class LatentTwoMode(GaussianMixtureDenoiser):
    """The mixture and its exact denoiser live in latent space; decode/encode map to and from 3 x R x R images."""

    has_first_stage = True

    def __init__(self, means: torch.Tensor, std: float, factor: int, weights: torch.Tensor | None = None):
        super().__init__(means, std, weights)
        self.factor = factor
        c, h, w = self.latent_shape
        self.image_shape = (c, h * factor, w * factor)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return decode(z, self.factor)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """A left inverse on the decoder's range: the pooled atanh (exact for D(z) when z is constant on the
        4 x 4 blocks; close otherwise)."""
        return F.avg_pool2d(torch.atanh(x.clamp(-0.999999, 0.999999)), self.factor)


def build_two_mode_latent(model_cfg, device) -> LatentTwoMode:
    factor = model_cfg.resolution // model_cfg.latent_size
    mu = fitted_latents(model_cfg.resolution, factor, model_cfg.num_images)
    means = torch.cat([mu, rot180(mu)])
    weights = twin_weights(model_cfg.num_images, model_setting(model_cfg, "rotated_weight"))
    return LatentTwoMode(means, model_cfg.component_std, factor, weights).to(device)
