"""Per-particle PSNR/SSIM/LPIPS against the ground truth and its 180° rotation, and the 0/180/fail label."""
from __future__ import annotations

import piq
import torch

from operators.phase_retrieval import rot180


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped: every metric sees the image a user would save (a diverged particle's NaNs as
    gray: it is labelled `fail` anyway, and its metrics stay numbers)."""
    return (torch.nan_to_num(x, nan=0.0) * 0.5 + 0.5).clamp(0, 1)


@torch.no_grad()
def image_metrics(x: torch.Tensor, gt: torch.Tensor, lpips_model=None) -> dict[str, list]:
    """x: (B, C, H, W) particles, gt: (1 or B, C, H, W); both in [-1, 1]. Lists of length B."""
    xu, gu = to_unit(x.float()), to_unit(gt.float()).expand_as(x)
    out = {
        "psnr": piq.psnr(xu, gu, data_range=1.0, reduction="none").tolist(),
        "ssim": piq.ssim(xu, gu, data_range=1.0, reduction="none").tolist(),
        "lpips": [None] * x.shape[0],
    }
    if lpips_model is not None:          # evaluation.perceptual.VggLPIPS: images in [0, 1], as DAPS's eval.py
        dev = lpips_model.mean.device
        out["lpips"] = lpips_model(xu.to(dev), gu.to(dev)).tolist()
    return out


def mode_label(psnr_0: float, psnr_180: float, fail_psnr: float) -> str:
    """'0' or '180' for the closer of the two solutions, 'fail' when both PSNRs are under fail_psnr."""
    if max(psnr_0, psnr_180) < fail_psnr:
        return "fail"
    return "0" if psnr_0 >= psnr_180 else "180"


def best_of_n(rows: list[dict]) -> dict:
    """DAPS's best-of-N over the given particles (eval.py: max for PSNR and SSIM, min for LPIPS), each metric chosen
    on its own, failed particles included."""
    lp = [r["lpips"] for r in rows if r["lpips"] is not None]
    return {"n": len(rows), "psnr": max(r["psnr"] for r in rows), "ssim": max(r["ssim"] for r in rows),
            "lpips": min(lp) if lp else None}


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
