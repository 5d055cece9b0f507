"""Image outputs of one measurement: ground truth, a view of y, every particle and a labelled grid."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image


def measurement_view(y: torch.Tensor) -> torch.Tensor:
    """log(1 + |y|) scaled to [0, 1] per image, for looking at, not for measuring."""
    v = torch.log1p(y.float().clamp_min(0))
    lo = v.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = v.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return (v - lo) / (hi - lo).clamp_min(1e-12)


def save_image_outputs(out_dir, index, gt, y, x, particle_ids, rows, dropped=()):
    out = Path(out_dir) / "images" / f"{index:05d}"
    out.mkdir(parents=True, exist_ok=True)
    unit = lambda t: (t.float().cpu() * 0.5 + 0.5).clamp(0, 1)  # noqa: E731
    save_image(unit(gt), out / "gt.png")
    save_image(measurement_view(y).cpu(), out / "measurement.png")
    for pid, xi in zip(particle_ids, x):
        save_image(unit(xi), out / f"particle_{pid}.png")
    for pids, xd in dropped:
        for pid, xi in zip(pids, xd):
            save_image(unit(xi), out / f"pruned_particle_{pid}.png")
    tiles = [unit(gt[0])]
    tiles += [torch.nn.functional.interpolate(measurement_view(y)[:1].cpu(), size=gt.shape[-2:])[0]]
    tiles += [unit(xi) for xi in x]
    save_image(make_grid(torch.stack(tiles), nrow=len(tiles), padding=2, pad_value=1.0), out / "grid.png")
