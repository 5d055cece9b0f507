"""Two-mode benchmark: a Gaussian-mixture prior over small images and their 180° rotations, with an exact denoiser.

Phase retrieval cannot tell an image from its rotation and the prior is symmetric, so the true
posterior has two equally likely modes; the decoder is the identity, latents are images.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.tensors import rot180

from .base import LatentModel, sigma_column

# Images bundled with scikit-image (no download); grey ones are repeated over RGB.
SKIMAGE_IMAGES = (
    "astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "horse.png",
    "hubble_deep_field.jpg", "ihc.png", "moon.png", "retina.jpg", "rocket.jpg", "brick.png",
    "grass.png", "gravel.png", "motorcycle_left.png", "page.png", "text.png", "phantom.png",
    "cell.png", "clock_motion.png", "color.png", "microaneurysms.png",
)


def model_setting(model_cfg, key: str):
    """A model setting, its declared default where the config leaves it out (models.SETTINGS)."""
    from core.settings import value

    from . import SETTINGS

    return value(model_cfg, SETTINGS, key)


def benchmark_images(resolution: int = 32, count: int = len(SKIMAGE_IMAGES)) -> torch.Tensor:
    """The benchmark's images in [-1, 1], shape (count, 3, resolution, resolution), float64."""
    import skimage

    root = Path(skimage.__file__).parent / "data"
    out = []
    for name in SKIMAGE_IMAGES[:count]:
        img = Image.open(root / name).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
        out.append(torch.from_numpy(np.asarray(img, dtype=np.float64) / 127.5 - 1.0).permute(2, 0, 1))
    return torch.stack(out)


class GaussianMixtureDenoiser(LatentModel):
    """Prior: sum_j w_j N(mu_j, std^2 I). Exact D(z, sigma) = E[z0 | z0 + sigma n = z]."""

    has_first_stage = False          # images are latents: every image is representable

    def __init__(self, means: torch.Tensor, std: float, weights: torch.Tensor | None = None):
        super().__init__()
        self.latent_shape = tuple(means.shape[1:])
        self.image_shape = tuple(means.shape[1:])
        self.std = float(std)
        k = means.shape[0]
        weights = torch.full((k,), 1.0 / k, dtype=means.dtype) if weights is None else weights
        self.register_buffer("means", means.flatten(1))
        self.register_buffer("log_weights", weights.log())

    def responsibilities(self, z: torch.Tensor, sigma) -> torch.Tensor:
        var = self.std ** 2 + sigma_column(sigma, z).flatten(1) ** 2
        zf, mu = z.flatten(1), self.means.to(z.dtype)
        # expanded form: cdist is several times slower here and the offsets cancel in the softmax anyway
        d2 = zf.pow(2).sum(1, keepdim=True) - 2 * zf @ mu.T + mu.pow(2).sum(1)
        return torch.softmax(self.log_weights.to(z.dtype) - d2 / (2 * var), dim=1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Exact log-density of the mixture at each row of z, (B,), in float64 (the exponents are ~1e5: float32 would
        blur log-ratios of order 1)."""
        zf, mu = z.flatten(1).double(), self.means.double()
        d2 = (zf[:, None, :] - mu[None]).square().sum(-1)
        var, dim = self.std ** 2, zf.shape[1]
        return torch.logsumexp(self.log_weights.double() - d2 / (2 * var), dim=1) - 0.5 * dim * math.log(
            2 * math.pi * var)

    def denoise(self, z: torch.Tensor, sigma) -> torch.Tensor:
        s2 = sigma_column(sigma, z) ** 2
        mu = (self.responsibilities(z, sigma) @ self.means.to(z.dtype)).view_as(z)
        return (s2 * mu + self.std ** 2 * z) / (s2 + self.std ** 2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn((n, self.means.shape[1]), generator=generator, dtype=self.means.dtype)
        return (self.means[idx] + self.std * noise).view(n, *self.latent_shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


def twin_weights(n: int, rotated_weight: float) -> torch.Tensor:
    """Mixture weights of [the n images, their n rotations]: each rotated twin weighs `rotated_weight` times its
    upright image (1 = the symmetric prior; below 1 the posterior prefers 0°, odds 1 : rotated_weight)."""
    w = torch.cat([torch.ones(n, dtype=torch.float64), torch.full((n,), float(rotated_weight), dtype=torch.float64)])
    return w / w.sum()


def build_two_mode(model_cfg, device) -> GaussianMixtureDenoiser:
    images = benchmark_images(model_cfg.resolution, model_cfg.num_images)
    means = torch.cat([images, rot180(images)])
    weights = twin_weights(model_cfg.num_images, model_setting(model_cfg, "rotated_weight"))
    return GaussianMixtureDenoiser(means, model_cfg.component_std, weights).to(device)
