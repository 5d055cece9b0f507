"""Quality gates every mini LDM shares: prior samples by EDM's Heun ODE on the model's own denoiser, the first stage's
reconstruction PSNR, a sample grid."""
from __future__ import annotations

import math

import torch

from evaluation.failures import reconstruct


def karras_sigmas(steps: int, sigma_min: float = 0.01, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's noise levels, sigma_max down to sigma_min, then 0."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


@torch.no_grad()
def sample_prior(model, n: int, steps: int = 18, seed: int = 0, batch: int = 128) -> torch.Tensor:
    """n decoded prior samples in [-1, 1]: EDM's Heun ODE (Karras et al. 2022, Alg. 1) on model.denoise."""
    sigmas = karras_sigmas(steps).tolist()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch):
        z = torch.randn((min(batch, n - start), *model.latent_shape), generator=gen) * sigmas[0]
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            d = (z - model.denoise(z, s)) / s
            z_next = z + (s_next - s) * d
            if s_next > 0:
                z_next = z + (s_next - s) * 0.5 * (d + (z_next - model.denoise(z_next, s_next)) / s_next)
            z = z_next
        out.append(model.decode(z).clamp(-1, 1))
    return torch.cat(out)


@torch.no_grad()
def reconstruction_psnr(model, x: torch.Tensor, batch: int = 128) -> float:
    """Mean PSNR (dB, piq on [0, 1] images, as every metric here) of decode(encode(x)) against x: the first
    stage's fidelity."""
    return float(torch.cat([reconstruct(model, x[i:i + batch])[1] for i in range(0, len(x), batch)]).mean())


def sample_grid(images: torch.Tensor, columns: int = 16) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> one (3, rows*H, columns*W) image in [0, 1], row-major."""
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    pad = torch.full((rows * columns - n, c, h, w), -1.0)
    grid = torch.cat([images, pad]).reshape(rows, columns, c, h, w).permute(2, 0, 3, 1, 4)
    return (grid.reshape(c, rows * h, columns * w) + 1) / 2
