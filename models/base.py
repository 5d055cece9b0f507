"""The model contract shared by the two-mode benchmark and the real latent diffusion models."""
from __future__ import annotations

import torch


class LatentModel(torch.nn.Module):
    """Latents z have shape (B, *latent_shape); images x lie in [-1, 1] with shape (B, *image_shape).

    Subclasses implement `encode`, a `decode` that is differentiable in z, and the EDM
    denoiser `denoise(z, sigma)` = E[z0 | z_sigma = z] (sigma: float or tensor of shape (B,)).
    """

    latent_shape: tuple[int, int, int]
    image_shape: tuple[int, int, int]
    has_first_stage = True           # decode is not the identity: some images lie outside what it can make

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def denoise(self, z: torch.Tensor, sigma) -> torch.Tensor:
        raise NotImplementedError


def sigma_column(sigma, z: torch.Tensor) -> torch.Tensor:
    """Broadcast a float or (B,) sigma against a (B, C, H, W) tensor."""
    sigma = torch.as_tensor(sigma, dtype=z.dtype, device=z.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(z.shape[0])
    return sigma.reshape(-1, *([1] * (z.ndim - 1)))
