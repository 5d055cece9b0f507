"""Quality gates of the natural-image mini LDM: reconstruction PSNR on held-out and training crops, the denoiser's
error on held-out against training latents (does the prior generalise?), and the power-spectrum slope of prior
samples against real crops (natural-image statistics)."""
from __future__ import annotations

import torch

from data.natural import TRAIN_SOURCES, held_out_crops, random_crops
from quality.gates import reconstruction_psnr, sample_prior

TRAIN_GATE_CROPS = 256
EPS_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)     # noise levels of the denoising gate (latents have unit std)


@torch.no_grad()
def eps_mse(model, x: torch.Tensor, seed: int = 0) -> float:
    """Mean over EPS_SIGMAS of the eps-prediction error ||eps - (z_s - D(z_s, s)) / s||^2 / dim on the latents of x,
    one fixed noise draw per level."""
    z = model.encode(x)
    gen = torch.Generator().manual_seed(seed)
    errs = []
    for s in EPS_SIGMAS:
        eps = torch.randn(z.shape, generator=gen)
        zs = z + s * eps
        errs.append(float((eps - (zs - model.denoise(zs, s)) / s).square().mean()))
    return sum(errs) / len(errs)


def spectral_slope(x: torch.Tensor) -> float:
    """Slope of log radially averaged power against log frequency (grey level, mean removed), over frequencies 2 to
    R/2 - 1: about -2 for natural images, 0 for white noise."""
    g = x.float().mean(1)
    g = g - g.mean((-2, -1), keepdim=True)
    p = torch.fft.fftshift(torch.fft.fft2(g).abs().square(), dim=(-2, -1)).mean(0)
    R = p.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(R) - R // 2, torch.arange(R) - R // 2, indexing="ij")
    r = (yy.square() + xx.square()).float().sqrt().round().long()
    f = torch.arange(2, R // 2)
    power = torch.stack([p[r == k].mean() for k in f.tolist()])
    lf, lp = f.double().log(), power.double().log()
    return float(((lf - lf.mean()) * (lp - lp.mean())).sum() / (lf - lf.mean()).square().sum())


def gates(model, samples: int = 256, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Every gate of the model card, recomputed from the model, and the prior samples they were measured on."""
    x_test, _ = held_out_crops()
    x_train, _ = random_crops(TRAIN_SOURCES, TRAIN_GATE_CROPS, torch.Generator().manual_seed(seed), flip=False)
    drawn = sample_prior(model, samples, seed=seed)
    return {
        "recon_psnr_test": reconstruction_psnr(model, x_test),
        "recon_psnr_train": reconstruction_psnr(model, x_train),
        "eps_mse_test": eps_mse(model, x_test, seed),
        "eps_mse_train": eps_mse(model, x_train, seed),
        "spectral_slope_test": spectral_slope(x_test),
        "spectral_slope_samples": spectral_slope(drawn),
        "samples": samples,
        "sample_seed": seed,
        "sampler": "EDM Heun, 18 steps, sigma 80 -> 0.01 (Karras rho 7), model.denoise",
    }, drawn
