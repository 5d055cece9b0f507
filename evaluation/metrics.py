"""Per-particle PSNR/SSIM/LPIPS against the ground truth and its 180° rotation, and the 0/180/fail label."""
from __future__ import annotations

import warnings
from pathlib import Path

import piq
import torch

from operators.phase_retrieval import rot180

LPIPS_TORCHVISION_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped: every metric sees the image a user would save (a diverged particle's NaNs as
    gray: it is labelled `fail` anyway, and its metrics stay numbers)."""
    return (torch.nan_to_num(x, nan=0.0) * 0.5 + 0.5).clamp(0, 1)


def load_lpips(net: str = "vgg", weights: str | None = None, device="cpu"):
    """LPIPS with its backbone from `weights` or torchvision's cache; None (one warning) when neither exists."""
    import lpips

    cached = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_TORCHVISION_FILES.get(net, "")
    if weights and Path(weights).is_file():
        model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
        model.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    elif cached.is_file():
        model = lpips.LPIPS(net=net, pnet_rand=False, verbose=False)
    else:
        warnings.warn(f"LPIPS is recorded as null: no {net} backbone weights at eval.lpips_weights={weights!r} "
                      f"or in torchvision's cache ({cached})", stacklevel=2)
        return None
    return model.eval().requires_grad_(False).to(device)


@torch.no_grad()
def image_metrics(x: torch.Tensor, gt: torch.Tensor, lpips_model=None) -> dict[str, list]:
    """x: (B, C, H, W) particles, gt: (1 or B, C, H, W); both in [-1, 1]. Lists of length B."""
    xu, gu = to_unit(x.float()), to_unit(gt.float()).expand_as(x)
    out = {
        "psnr": piq.psnr(xu, gu, data_range=1.0, reduction="none").tolist(),
        "ssim": piq.ssim(xu, gu, data_range=1.0, reduction="none").tolist(),
        "lpips": [None] * x.shape[0],
    }
    if lpips_model is not None:
        dev = next(lpips_model.parameters()).device
        out["lpips"] = lpips_model(xu.to(dev) * 2 - 1, gu.to(dev) * 2 - 1).flatten().tolist()
    return out


def mode_label(psnr_0: float, psnr_180: float, fail_psnr: float) -> str:
    """'0' or '180' for the closer of the two solutions, 'fail' when both PSNRs are under fail_psnr."""
    if max(psnr_0, psnr_180) < fail_psnr:
        return "fail"
    return "0" if psnr_0 >= psnr_180 else "180"


def evaluate_particles(x: torch.Tensor, gt: torch.Tensor, fail_psnr: float, lpips_model=None) -> list[dict]:
    """One dict per particle: metrics against gt (psnr, ...) and its rotation (psnr_180, ...) and the mode."""
    m0 = image_metrics(x, gt, lpips_model)
    m180 = image_metrics(x, rot180(gt), lpips_model)
    rows = []
    for i in range(x.shape[0]):
        row = {k: m0[k][i] for k in m0}
        row.update({f"{k}_180": m180[k][i] for k in m180})
        row["mode"] = mode_label(row["psnr"], row["psnr_180"], fail_psnr)
        rows.append(row)
    return rows
