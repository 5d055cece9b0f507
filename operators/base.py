"""Operator base class: batched forward map, noisy measurement, per-sample squared-error loss, and the images the
measurement cannot tell apart (an operator without symmetries declares none)."""
from __future__ import annotations

import math

import torch

from .symmetry import TOLERANCE, EquivalenceClass, class_of_one


class Operator:
    """A forward map on images in [-1, 1] of shape (B, C, H, W); every method is batched.

    `symmetries` names the transformations that leave the measurement unchanged (none here); `equivalents` finds
    them for one image. The evaluation asks the operator, never assumes a symmetry of its own."""

    symmetries: tuple[str, ...] = ()
    SETTINGS: dict = {}              # its task.operator settings besides the name (core.settings declarations)
    # how far above the noise margin a right particle's loss still lies on this operator (fit_limit); measured per
    # operator (an operator that has not been measured: the margin itself)
    fit_factor: float = 1.0

    def __init__(self, sigma: float = 0.05, resolution: int | None = None):
        self.sigma = sigma               # resolution: the images' side, which build_operator passes to every operator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        y0 = self(x)
        noise = torch.randn(y0.shape, generator=generator, dtype=y0.dtype, device="cpu").to(y0.device)
        return y0 + self.sigma * noise

    def loss_margin(self, m: int) -> float:
        """The loss of a fit as close to y as the ground truth is (the noise's own ||n||^2 = m sigma^2), raised by
        three standard deviations of its chi-square: m sigma^2 (1 + 3 sqrt(2 / m)); m = measurements per image.
        A fit under it is within the noise (the discrepancy principle)."""
        return self.sigma ** 2 * m * (1 + 3 * math.sqrt(2 / m))

    def fit_limit(self, m: int) -> float:
        """The one rule for "fits y within the noise", used by the failure kinds (fits or search), whether the
        model can make the truth, and the trust label: a loss under fit_factor x the noise margin. fit_factor is
        this operator's, measured: the factor within which 97.5 % of right particles' losses fall."""
        return self.fit_factor * self.loss_margin(m)

    def loss_sd(self, m: int) -> float:
        """The standard deviation of the noise's own ||n||^2, sigma^2 sqrt(2 m): how far two fits' losses may differ by
        the noise alone (m = measurements per image)."""
        return self.sigma ** 2 * math.sqrt(2 * m)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """||A(x) - y||^2 per sample, shape (B,): never mixes samples."""
        return (self(x) - y).pow(2).flatten(1).sum(-1)

    @property
    def rotation_ambiguous(self) -> bool:
        """Whether x and its 180° rotation measure alike (then only the prior can choose between them)."""
        return "rot180" in self.symmetries

    def equivalents(self, x: torch.Tensor, tolerance: float = TOLERANCE) -> EquivalenceClass:
        """The images whose noiseless measurement equals x's (1 or no batch dim, C, H, W) within tolerance * sigma:
        here x alone."""
        return class_of_one(x)
