"""EDM-style VP preconditioning of an eps-prediction network, as DAPS wraps the LDM (`VPPrecond`).

    D(z, sigma) = z - sigma * eps(z / sqrt(1 + sigma^2), c_noise(sigma))

The network was trained on the discrete DDPM schedule of the checkpoint (`linear_start=0.0015`,
`linear_end=0.0195`, 1000 steps, betas = linspace(sqrt(start), sqrt(end), 1000)**2). Two ways to turn a
noise level sigma into the network's timestep are offered:

* ``c_noise: vp`` (default): DAPS's mapping c_noise = 999 * sigma_inv(sigma) with the *continuous* VP-SDE
  inverse sigma_inv(sigma) = (sqrt(beta_min^2 + 2 beta_d log(1 + sigma^2)) - beta_min) / beta_d,
  beta_min = 0.1, beta_d = 19.9. This is not the schedule the LDM was trained on, but it is what the published
  DAPS numbers were produced with, so it is the default.
* ``c_noise: alphas_cumprod``: the timestep t at which the checkpoint's own schedule has
  sigma_t = sqrt((1 - abar_t) / abar_t) equal to sigma, found by linear interpolation in log sigma and
  clamped to [0, 999] (sigma_0 ~ 0.039, sigma_999 ~ 83.8). This is the timestep the network actually expects.

The two agree to within ~5 steps near sigma = 1 but differ by up to ~60 steps (of 1000) elsewhere in the
range DAPS uses (e.g. sigma = 10: 675 vs 737; sigma = 0.1: 27 vs 6).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def ldm_alphas_cumprod(linear_start: float = 0.0015, linear_end: float = 0.0195, timesteps: int = 1000,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """abar_t of the LDM "linear" schedule (linear in sqrt(beta)), t = 0 .. timesteps-1."""
    betas = torch.linspace(math.sqrt(linear_start), math.sqrt(linear_end), timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(dtype)


class VPDenoiser(nn.Module):
    """Wraps eps_fn(x, t, **kw) into the EDM denoiser D(z, sigma); holds only non-persistent schedule buffers."""

    C_NOISE_MODES = ("vp", "alphas_cumprod")

    def __init__(self, c_noise: str = "vp", beta_min: float = 0.1, beta_d: float = 19.9, linear_start: float = 0.0015,
                 linear_end: float = 0.0195, timesteps: int = 1000):
        super().__init__()
        if c_noise not in self.C_NOISE_MODES:
            raise ValueError(f"c_noise must be one of {self.C_NOISE_MODES}, got {c_noise!r}")
        self.mode = c_noise
        self.beta_min, self.beta_d, self.M = beta_min, beta_d, timesteps
        abar = ldm_alphas_cumprod(linear_start, linear_end, timesteps)
        # Non-persistent: these are derived, never part of a checkpoint's state_dict.
        self.register_buffer("log_sigmas", (0.5 * torch.log((1 - abar) / abar)).float(), persistent=False)

    def sigma_inv_vp(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous VP time in [0, 1] whose noise level is sigma (DAPS / EDM `VPPrecond.sigma_inv`)."""
        return ((self.beta_min ** 2 + 2 * self.beta_d * torch.log1p(sigma ** 2)).sqrt() - self.beta_min) / self.beta_d

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """Network timestep (float, shape of sigma) for noise level sigma."""
        sigma = sigma.float()
        if self.mode == "vp":
            return (self.M - 1) * self.sigma_inv_vp(sigma)
        log_s = self.log_sigmas.to(sigma.device)
        x = torch.clamp(sigma.clamp_min(1e-20).log(), log_s[0], log_s[-1])  # tensor bounds: no device sync
        hi = torch.searchsorted(log_s, x.contiguous()).clamp(1, self.M - 1)
        lo = hi - 1
        frac = (x - log_s[lo]) / (log_s[hi] - log_s[lo])
        return lo.float() + frac

    def forward(self, eps_fn, z: torch.Tensor, sigma, **eps_kwargs) -> torch.Tensor:
        """D(z, sigma); sigma is a float, 0-d tensor or a (B,) tensor."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=z.device)
        sigma = sigma.reshape(-1).expand(z.shape[0]) if sigma.numel() == 1 else sigma.reshape(z.shape[0])
        s = sigma.to(z.dtype).reshape(-1, *([1] * (z.ndim - 1)))
        eps = eps_fn(z / (1 + s ** 2).sqrt(), self.c_noise(sigma), **eps_kwargs)
        return z - s * eps.to(z.dtype)
