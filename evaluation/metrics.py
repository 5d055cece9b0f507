"""Per-particle PSNR/SSIM/LPIPS against the ground truth (and its 180° rotation where the operator cannot tell the
two apart), and the mode label against the operator's equivalence class."""
from __future__ import annotations

import torch

from core.tensors import rot180, to_unit


@torch.no_grad()
def image_metrics(x: torch.Tensor, gt: torch.Tensor, lpips_model=None) -> dict[str, list]:
    """x: (B, C, H, W) particles, gt: (1 or B, C, H, W); both in [-1, 1]. Lists of length B."""
    import piq  # lazily: it imports torchvision's model zoo (1.6 s per process)

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


def mode_label(class_psnr: float, rotated: bool, fail_psnr: float) -> str:
    """'0' or '180' for the orientation of the particle's best match in the equivalence class (shifts included),
    'fail' when even that match is under fail_psnr."""
    if class_psnr < fail_psnr:
        return "fail"
    return "180" if rotated else "0"


def best_of_n(rows: list[dict]) -> dict:
    """DAPS's best-of-N over the given particles (eval.py: max for PSNR and SSIM, min for LPIPS), each metric chosen
    on its own, failed particles included."""
    lp = [r["lpips"] for r in rows if r["lpips"] is not None]
    return {"n": len(rows), "psnr": max(r["psnr"] for r in rows), "ssim": max(r["ssim"] for r in rows),
            "lpips": min(lp) if lp else None}


def modes(rotation: bool) -> tuple[str, ...]:
    """The mode labels a particle can get: the image ("0"), its rotation ("180") where the operator cannot tell the
    two apart, or "fail"."""
    return ("0", "180", "fail") if rotation else ("0", "fail")


def evaluate_particles(x: torch.Tensor, gt: torch.Tensor, eq, fail_psnr: float, lpips_model=None) -> list[dict]:
    """One dict per particle: metrics against gt (psnr, ...), against its rotation (psnr_180, ..., as DAPS reports
    them) only where the class eq holds a rotation (the operator's `equivalents` of gt: right answers and twins),
    its best match in the class and the mode."""
    from evaluation.equivalence import class_matches

    m0 = image_metrics(x, gt, lpips_model)
    m180 = image_metrics(x, rot180(gt), lpips_model) if any(eq.rotated) else {}
    rows = []
    for i, match in enumerate(class_matches(x, eq)):
        row = {k: m0[k][i] for k in m0}
        row.update({f"{k}_180": m180[k][i] for k in m180})
        if m180:
            row["psnr_180_shift"] = match["psnr_180_shift"]
        row.update(psnr_shift=match["psnr_shift"],
                   class_psnr=match["class_psnr"], shift=match["shift"], twin_psnr=match["twin_psnr"],
                   twin=match["twin"], mode=mode_label(match["class_psnr"], match["rotated"], fail_psnr))
        rows.append(row)
    return rows
