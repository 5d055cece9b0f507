"""The images a phase-retrieval measurement cannot tell apart from the ground truth: the image, its 180° rotation,
and every integer shift (zero fill) of either whose measurement equals the image's within a tolerance far below the
noise; and each particle's best match in that class."""
from __future__ import annotations

from dataclasses import dataclass

import piq
import torch

from core.tensors import to_unit
from operators.phase_retrieval import rot180

# a member's noiseless measurement differs from the image's by at most this many noise sigmas (in norm): the
# likelihood then cannot tell the two apart (their log-likelihood ratio has sd <= 0.1). Measured by
# scripts/equivalence_tolerance.py: exact copies differ by round-off (1e-13 sigma), the nearest shift that is not
# a copy by 0.31 sigma (a digit) or more, so any value in between gives the same classes.
TOLERANCE = 0.1


@dataclass
class EquivalenceClass:
    """members: (M, C, H, W) in [-1, 1]; rotated, shifts: each member's orientation and (dy, dx); member 0 is the
    image itself, and the unrotated, unshifted image and its rotation are always members."""

    members: torch.Tensor
    rotated: list[bool]
    shifts: list[tuple[int, int]]

    def record(self) -> dict:
        return {"members": len(self.rotated),
                "shifted": [[int(r), dy, dx] for r, (dy, dx) in zip(self.rotated, self.shifts) if (dy, dx) != (0, 0)]}


def rotation_class(gt: torch.Tensor) -> EquivalenceClass:
    """Just the image and its rotation: the class of any frame-filling image, without measuring."""
    x = gt.reshape(gt.shape[-3:])
    return EquivalenceClass(torch.stack([x, rot180(x)]), [False, True], [(0, 0), (0, 0)])


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


@torch.no_grad()
def equivalence_class(gt: torch.Tensor, operator, tolerance: float = TOLERANCE) -> EquivalenceClass:
    """The class of one ground truth gt (1 or no batch dim, C, H, W) in [-1, 1], under `operator` (phase retrieval:
    y = |F pad((x + 1) / 2)|; its zero padding is x = -1). Candidates come from the dropped-energy bound, members
    from their measured difference."""
    x = gt.reshape(gt.shape[-3:])
    C, H, W = x.shape
    y = operator(x[None].double())
    limit = tolerance * operator.sigma
    members, rotated, shifts = [], [], []
    for rot, v in ((False, x), (True, rot180(x))):
        bound = dropped_energy(v * 0.5 + 0.5).sqrt()
        dy, dx = (bound <= 10 * limit).nonzero(as_tuple=True)
        cand = {(int(a) - (H - 1), int(b) - (W - 1)) for a, b in zip(dy.tolist(), dx.tolist())} - {(0, 0)}
        cand = [(0, 0), *sorted(cand, key=lambda s: (abs(s[0]) + abs(s[1]), s))]
        imgs = torch.stack([shift_fill(v, a, b) for a, b in cand])
        diff = (operator(imgs.double()) - y).flatten(1).norm(dim=1)
        for (a, b), img, d in zip(cand, imgs, diff.tolist()):
            if (a, b) == (0, 0) or d <= limit:          # the image and its rotation always: exact in theory
                members.append(img)
                rotated.append(rot)
                shifts.append((a, b))
    return EquivalenceClass(torch.stack(members), rotated, shifts)


@torch.no_grad()
def class_matches(x: torch.Tensor, eq: EquivalenceClass) -> list[dict]:
    """Per particle of x (B, C, H, W): PSNR against the best unrotated member (psnr_shift) and the best rotated one
    (psnr_180_shift), the best member overall (rotated, shift) and its PSNR (class_psnr); piq on [0, 1] images."""
    B, M = x.shape[0], len(eq.rotated)
    xu = to_unit(x.float()).repeat_interleave(M, 0)
    mu = to_unit(eq.members.float().to(x.device)).repeat(B, 1, 1, 1)
    psnr = piq.psnr(xu, mu, data_range=1.0, reduction="none").view(B, M)
    rot = torch.tensor(eq.rotated, device=psnr.device)
    low = torch.full_like(psnr, -torch.inf)
    up, down = torch.where(rot, low, psnr).max(1).values, torch.where(rot, psnr, low).max(1).values
    best = psnr.argmax(1).tolist()
    return [{"psnr_shift": float(a), "psnr_180_shift": float(b), "class_psnr": float(psnr[i, j]),
             "rotated": eq.rotated[j], "shift": list(eq.shifts[j])}
            for i, (a, b, j) in enumerate(zip(up.tolist(), down.tolist(), best))]
