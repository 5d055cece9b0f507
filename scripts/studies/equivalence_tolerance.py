"""The measurement behind operators/symmetry.py's TOLERANCE: for every image of a data set, the measured difference
||A(shifted) - A(x)|| of every zero-fill shift of each colour channel and of its rotation, in units of the noise sigma.
Exact copies (the dropped part is exactly the padding's value) differ by round-off; the tolerance
must sit in the gap above them and below the nearest shift that is not a copy.

    python scripts/studies/equivalence_tolerance.py --data digits,natural,two_mode
"""
from __future__ import annotations

import argparse

import torch

from core.tensors import rot180
from operators import PhaseRetrieval
from operators.symmetry import TOLERANCE, dropped_energy, shift_fill


def images(name: str) -> torch.Tensor:
    if name == "digits":
        from data.digits import digits
        return digits("test")[0]
    if name == "natural":
        from data.natural import held_out_crops
        return held_out_crops()[0]
    from models.two_mode import benchmark_images
    return benchmark_images(32, 20).float()


@torch.no_grad()
def gaps(x: torch.Tensor, op, nearest: int) -> tuple[list[float], list[float]]:
    """(relative differences of the shifts whose dropped energy is 0, of the `nearest` others with the smallest), per
    colour channel: the operator measures each on its own (operators/phase_retrieval.py)."""
    H, W = x.shape[-2:]
    noise = op.sigma
    exact, near = [], []
    for c in range(x.shape[0]):
        u = x[c:c + 1]
        y = op(u[None].double())
        for v in (u, rot180(u)):
            bound = dropped_energy(v * 0.5 + 0.5).flatten()
            order = torch.argsort(bound)
            zero = [int(i) for i in order if bound[i] == 0]
            rest = [int(i) for i in order if bound[i] > 0][:nearest]
            for idx, out in ((zero, exact), (rest, near)):
                if not idx:
                    continue
                imgs = torch.stack([shift_fill(v, i // (2 * W - 1) - (H - 1), i % (2 * W - 1) - (W - 1))
                                    for i in idx])
                out += ((op(imgs.double()) - y).flatten(1).norm(dim=1) / noise).tolist()
    return exact, near


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits,natural,two_mode")
    ap.add_argument("--nearest", type=int, default=20, help="non-copies per image and orientation, by dropped energy")
    args = ap.parse_args()
    torch.set_num_threads(1)
    op = PhaseRetrieval(32, 2.0, 0.05)
    print(f"| data | images | exact copies | their largest difference (sigma) | nearest non-copy: smallest "
          f"difference (sigma) | TOLERANCE (sigma) |\n|---|---|---|---|---|---|")
    for name in args.data.split(","):
        x = images(name)
        exact, near = [], []
        for i in range(len(x)):
            e, n = gaps(x[i], op, args.nearest)
            exact += e
            near += n
        print(f"| {name} | {len(x)} | {len(exact)} | {max(exact):.1e} | {min(near):.1e} | {TOLERANCE:g} |")


if __name__ == "__main__":
    main()
