"""PSNRs between the digits' test images (the basis of data.fail_psnr for data=digits) and of each test digit against
its own 180° rotation, per class (docs/digits32ldm.md).

    python scripts/digit_distances.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.digits import digits  # noqa: E402
from operators.phase_retrieval import rot180  # noqa: E402


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of [-1, 1] images seen on [0, 1], over the trailing three dimensions."""
    return -10 * torch.log10(((a - b) / 2).square().flatten(-3).mean(-1))


def main():
    x, y = digits("test")
    x = x.double()
    pairs = psnr(x[:, None], x[None])
    off = ~torch.eye(len(x), dtype=torch.bool)
    same = (y[:, None] == y[None]) & off
    q = torch.tensor([0.5, 0.9, 0.99, 0.999], dtype=torch.float64)
    print("quantiles 50 / 90 / 99 / 99.9 %")
    print("  two different test digits: " + " / ".join(f"{v:.1f}" for v in pairs[off].quantile(q)) + " dB")
    print("  two of the same class:     " + " / ".join(f"{v:.1f}" for v in pairs[same].quantile(q)) + " dB")
    own = psnr(x, rot180(x))
    print("median PSNR against its own rotation: "
          + ", ".join(f"{c}: {own[y == c].median():.1f}" for c in range(10)) + " dB")


if __name__ == "__main__":
    main()
