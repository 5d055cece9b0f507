"""PSNRs between the test images of a bundled data set, the basis of its data.fail_psnr: a particle above the
threshold against an image's class has found that image, not another one (docs/digits32ldm.md, docs/naturalldm.md).

    python scripts/studies/test_set_distances.py --data digits     # per class, and each digit against its own rotation
    python scripts/studies/test_set_distances.py --data natural    # two different crops, the other one in either orientation
"""
from __future__ import annotations

import argparse

import torch

from core.tensors import rot180

QUANTILES = torch.tensor([0.5, 0.9, 0.99, 0.999], dtype=torch.float64)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) of [-1, 1] images seen on [0, 1], over the trailing three dimensions."""
    return -10 * torch.log10(((a - b) / 2).square().flatten(-3).mean(-1))


def quantiles(values: torch.Tensor) -> str:
    return " / ".join(f"{v:.1f}" for v in values.quantile(QUANTILES)) + " dB"


def digits_report():
    from data.digits import digits

    x, y = digits("test")
    x = x.double()
    pairs = psnr(x[:, None], x[None])
    off = ~torch.eye(len(x), dtype=torch.bool)
    same = (y[:, None] == y[None]) & off
    print("quantiles 50 / 90 / 99 / 99.9 %")
    print("  two different test digits: " + quantiles(pairs[off]))
    print("  two of the same class:     " + quantiles(pairs[same]))
    own = psnr(x, rot180(x))
    print("median PSNR against its own rotation: "
          + ", ".join(f"{c}: {own[y == c].median():.1f}" for c in range(10)) + " dB")


def natural_report():
    from data.natural import held_out_crops

    x, names = held_out_crops()
    x = x.double()
    # a particle that is crop j (or its rotation) scored against crop i's class {x_i, rot x_i}
    pairs = torch.maximum(psnr(x[:, None], x[None]), psnr(x[:, None], rot180(x)[None]))
    off = ~torch.eye(len(x), dtype=torch.bool)
    source = torch.tensor([n.split("_")[0] == "china" for n in names])
    same = (source[:, None] == source[None]) & off
    print(f"{len(x)} test crops; quantiles 50 / 90 / 99 / 99.9 %")
    print("  two different crops, either orientation: " + quantiles(pairs[off]))
    print("  two crops of the same photograph:        " + quantiles(pairs[same]))
    print("  max over pairs: " + f"{pairs[off].max():.1f} dB")
    print("  a crop against its own rotation: " + quantiles(psnr(x, rot180(x))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("digits", "natural"), default="digits")
    args = ap.parse_args()
    digits_report() if args.data == "digits" else natural_report()


if __name__ == "__main__":
    main()
