"""ReSample's stochastic resample in this sampler's sigma parameterisation: how much of the optimised z0 the next
latent keeps, and how much noise it gets (docs/refine.md derives it from ReSample's ddim.py)."""
from __future__ import annotations

import math


def resample_weights(sigma: float, sigma_next: float, gamma: float = 40.0) -> tuple[float, float]:
    """(w, r): z_next = w * z_opt + (1 - w) * z0 + r * sigma_next * eps.

    ReSample draws x' ~ N((s sqrt(a') z_opt + (1 - a') x_t) / (s + 1 - a'), s (1 - a') / (s + 1 - a')) with
    s = gamma (1 - a') / (1 - a) (1 - a / a'), a = alpha-bar now, a' = alpha-bar at the next level, and x_t the
    sampler's own next latent. With a = 1 / (1 + sigma^2), z = x / sqrt(a') and the sampler's own next latent
    z0 + sigma_next eps1, the mean weight is w = s / (s + 1 - a') and the two noises add up to
    sigma_next^2 ((1 - w)^2 + w).
    """
    if sigma_next <= 0:
        return 1.0, 0.0                 # the last step: nothing is re-noised, the optimised z0 is the output
    a, a_next = 1 / (1 + sigma ** 2), 1 / (1 + sigma_next ** 2)
    s = gamma * (1 - a_next) / (1 - a) * (1 - a / a_next)
    w = s / (s + 1 - a_next)
    return w, math.sqrt((1 - w) ** 2 + w)
