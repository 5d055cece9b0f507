"""Each particle's best match among the images its measurement cannot tell from the ground truth (the operator's
`equivalents`): the best right answer (the image, its rotation, a shifted copy) and the best measurement-identical
twin (channels turned differently)."""
from __future__ import annotations

import torch

from core.tensors import to_unit
from operators.symmetry import EquivalenceClass

EPS = 1e-8           # piq.psnr's: PSNR = -10 log10(mse + EPS), so a twin's PSNR reads like every other PSNR here


@torch.no_grad()
def twin_matches(x: torch.Tensor, eq: EquivalenceClass) -> tuple[list[float], list]:
    """Per particle of x (B, C, H, W): PSNR against the closest measurement-identical image (each channel matched to
    its closest option: the MSE is a sum over channels), and the per-channel [rotated, dy, dx] of that image."""
    xu = to_unit(x.float())
    mses, picks = [], []
    for c, opt in enumerate(eq.channels):               # a loop over colour channels, batched over particles
        d = (xu[:, c, None] - to_unit(opt.images.float().to(x.device))[None]).square().mean((-2, -1))   # (B, K_c)
        best, idx = d.min(1)
        mses.append(best)
        picks.append([opt.transforms[i] for i in idx.tolist()])
    psnr = -10 * torch.log10(torch.stack(mses).mean(0) + EPS)
    twins = [[[int(r), dy, dx] for r, (dy, dx) in per] for per in zip(*picks)]
    return psnr.tolist(), twins


@torch.no_grad()
def class_matches(x: torch.Tensor, eq: EquivalenceClass) -> list[dict]:
    """Per particle of x (B, C, H, W): PSNR against the best unrotated member (psnr_shift) and the best rotated one
    (psnr_180_shift; None when the operator has no rotation), the best member overall (rotated, shift) and its
    PSNR (class_psnr); where the class has per-channel options, the closest measurement-identical image (twin_psnr,
    twin: [rotated, dy, dx] per channel). piq on [0, 1] images."""
    import piq  # lazily: it imports torchvision's model zoo (1.6 s per process)

    B, M = x.shape[0], len(eq.rotated)
    xu = to_unit(x.float()).repeat_interleave(M, 0)
    mu = to_unit(eq.members.float().to(x.device)).repeat(B, 1, 1, 1)
    psnr = piq.psnr(xu, mu, data_range=1.0, reduction="none").view(B, M)
    rot = torch.tensor(eq.rotated, device=psnr.device)
    low = torch.full_like(psnr, -torch.inf)
    up, down = torch.where(rot, low, psnr).max(1).values, torch.where(rot, psnr, low).max(1).values
    best = psnr.argmax(1).tolist()
    twin_psnr, twins = twin_matches(x, eq) if eq.channels is not None else ([None] * B, [None] * B)
    return [{"psnr_shift": float(a), "psnr_180_shift": float(b) if any(eq.rotated) else None,
             "class_psnr": float(psnr[i, j]), "rotated": eq.rotated[j], "shift": list(eq.shifts[j]),
             "twin_psnr": tp, "twin": tw}
            for i, (a, b, j, tp, tw) in enumerate(zip(up.tolist(), down.tolist(), best, twin_psnr, twins))]
