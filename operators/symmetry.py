"""What an operator's measurement cannot tell apart from an image: the class type every operator's `equivalents`
returns, and the zero-fill shifts with their one-pass dropped-energy bound that phase retrieval searches."""
from __future__ import annotations

from dataclasses import dataclass

import torch

# a member's noiseless measurement differs from the image's by at most this many noise sigmas (in norm, per colour
# channel): the likelihood then cannot tell the two apart (their log-likelihood ratio has sd <= 0.1). Measured by
# scripts/studies/equivalence_tolerance.py: exact copies differ by round-off (1e-13 sigma), the nearest shift that is not
# a copy by 0.31 sigma (a digit) or more, so any value in between gives the same classes.
TOLERANCE = 0.1

Transform = tuple[bool, tuple[int, int]]       # (rotated by 180°, (dy, dx) zero-fill shift)
IDENTITY: Transform = (False, (0, 0))


@dataclass
class ChannelOptions:
    """The images one colour channel may be turned into without changing its part of the measurement:
    images (K, H, W), transforms[k] how image k arises from the channel (transforms[0] is the identity)."""

    images: torch.Tensor
    transforms: list[Transform]


@dataclass
class EquivalenceClass:
    """The images whose measurement equals one image's (to TOLERANCE), split in two.

    members (M, C, H, W): the right answers, one transformation applied to every channel (member 0 is the image
    itself); rotated, shifts: each member's transformation. channels: where the measurement is taken per channel,
    each channel's own options; a combination of options that is not a member (channels turned differently) is a
    measurement-identical *twin*: as consistent with y as the truth, yet a different image. None: no such freedom."""

    members: torch.Tensor
    rotated: list[bool]
    shifts: list[tuple[int, int]]
    channels: list[ChannelOptions] | None = None

    def twins(self) -> int:
        """How many measurement-identical images are not right answers."""
        if self.channels is None:
            return 0
        combos = 1
        for c in self.channels:
            combos *= len(c.transforms)
        return combos - len(self.rotated)

    def record(self) -> dict:
        return {"members": len(self.rotated),
                "shifted": [[int(r), dy, dx] for r, (dy, dx) in zip(self.rotated, self.shifts) if (dy, dx) != (0, 0)],
                "twins": self.twins()}


def class_of_one(x: torch.Tensor) -> EquivalenceClass:
    """An operator without symmetries: the image is its own class."""
    return EquivalenceClass(x.reshape(1, *x.shape[-3:]), [False], [(0, 0)])


def shift_fill(x: torch.Tensor, dy: int, dx: int, fill: float = -1.0) -> torch.Tensor:
    """x (..., H, W) moved down by dy and right by dx; what moves out is dropped, what comes in is `fill` (-1: the
    value the operator's zero padding stands for)."""
    H, W = x.shape[-2:]
    out = torch.full_like(x, fill)
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = \
        x[..., max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    return out


def dropped_energy(u: torch.Tensor) -> torch.Tensor:
    """(2H - 1, 2W - 1): for every shift (dy, dx) in -(H-1) … H-1, the energy sum u^2 of u (C, H, W) that leaves the
    frame, from one integral image (all shifts at once). Its square root bounds how much the measurement of the
    shifted image can differ (|F| is 1-Lipschitz and unitary)."""
    C, H, W = u.shape
    e = u.double().square().sum(0)
    S = torch.zeros(H + 1, W + 1, dtype=torch.float64, device=u.device)
    S[1:, 1:] = e.cumsum(0).cumsum(1)
    d = torch.arange(-(H - 1), H, device=u.device)
    r0, r1 = (-d).clamp(min=0), H - d.clamp(min=0)           # rows that stay in the frame for a shift dy
    c = torch.arange(-(W - 1), W, device=u.device)
    c0, c1 = (-c).clamp(min=0), W - c.clamp(min=0)
    kept = S[r1][:, c1] - S[r0][:, c1] - S[r1][:, c0] + S[r0][:, c0]
    return (S[H, W] - kept).clamp(min=0)


def combine(channels: list[ChannelOptions]) -> EquivalenceClass:
    """The class of per-channel options: members are the transformations every channel allows (in the order of the
    first channel's), applied to every channel."""
    common = [t for t in channels[0].transforms if all(t in c.transforms for c in channels[1:])]
    members = torch.stack([torch.stack([c.images[c.transforms.index(t)] for c in channels]) for t in common])
    return EquivalenceClass(members, [r for r, _ in common], [s for _, s in common], channels)
