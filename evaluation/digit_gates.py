"""Quality gates of the mini LDM on the bundled digits: VQ reconstruction PSNR, prior samples (an EDM Heun ODE on
the model's own denoiser) and the share of them that a small classifier of real digits names with confidence."""
from __future__ import annotations

import math

import numpy as np
import piq
import torch
import torch.nn.functional as F

from data.digits import digits
from evaluation.metrics import to_unit

CONFIDENT = 0.9


def digit_features(x: torch.Tensor) -> np.ndarray:
    """(B, 3, 32, 32) in [-1, 1] -> (B, 64): the channel mean pooled back to the data set's 8x8 grid."""
    return F.avg_pool2d(x.float().mean(1, keepdim=True), 4).flatten(1).cpu().numpy()


def digit_classifier():
    """Multinomial logistic regression on the train split's 8x8 features (deterministic, about a second)."""
    from sklearn.linear_model import LogisticRegression

    x, y = digits("train")
    return LogisticRegression(C=1.0, max_iter=5000).fit(digit_features(x), y.numpy())


def classify(classifier, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, its probability) per image."""
    proba = classifier.predict_proba(digit_features(x))
    return proba.argmax(1), proba.max(1)


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
    psnr = [piq.psnr(to_unit(model.decode(model.encode(x[i:i + batch]))), to_unit(x[i:i + batch]), data_range=1.0,
                     reduction="none") for i in range(0, len(x), batch)]
    return float(torch.cat(psnr).mean())


def gates(model, samples: int = 256, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Every gate of the model card, recomputed from the model (reproducible to round-off for a given model), and
    the prior samples they were measured on."""
    x_test, y_test = digits("test")
    clf = digit_classifier()
    pred_real, conf_real = classify(clf, x_test)
    drawn = sample_prior(model, samples, seed=seed)
    pred, conf = classify(clf, drawn)
    counts = np.bincount(pred[conf > CONFIDENT], minlength=10)
    return {
        "recon_psnr_test": reconstruction_psnr(model, x_test),
        "classifier_accuracy_test": float((pred_real == y_test.numpy()).mean()),
        "confident_share_test": float((conf_real > CONFIDENT).mean()),
        "confident_share_samples": float((conf > CONFIDENT).mean()),
        "confident_classes_samples": counts.tolist(),
        "samples": samples,
        "sample_seed": seed,
        "sampler": "EDM Heun, 18 steps, sigma 80 -> 0.01 (Karras rho 7), model.denoise",
    }, drawn


def sample_grid(images: torch.Tensor, columns: int = 16) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> one (3, rows*H, columns*W) image in [0, 1], row-major."""
    n, c, h, w = images.shape
    rows = math.ceil(n / columns)
    pad = torch.full((rows * columns - n, c, h, w), -1.0)
    grid = torch.cat([images, pad]).reshape(rows, columns, c, h, w).permute(2, 0, 3, 1, 4)
    return (grid.reshape(c, rows * h, columns * w) + 1) / 2
