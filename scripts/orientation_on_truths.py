"""Can the prior tell a learned model's own test images from their 180° rotations? On decoded ground truths D(E(x)):
how often the ELBO log-ratio prefers the upright image (per number of ELBO levels and repeat), and how well the first
stage reconstructs each truth and its rotation (the loss's own leak of the orientation: a rotation the model cannot
make fits y worse).

    python scripts/orientation_on_truths.py --model naturalldm --images 50 --evals 32,128,512 --repeats 2

Prints a Markdown table; one CPU thread. docs/orientation.md reports its output.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.tensors import rot180  # noqa: E402
from evaluation.failures import reconstruct, truths as decoded_truths  # noqa: E402
from evaluation.orientation import prior_log_ratio  # noqa: E402
from pipeline.build import build  # noqa: E402
from pipeline.config import validate  # noqa: E402
from pipeline.schema import compose  # noqa: E402
from pipeline.stacks import stack  # noqa: E402


@torch.no_grad()
def measure(model_name: str, images: int, evals: list[int], repeats: int) -> dict:
    cfg = compose(*stack(model_name), "data.ground_truth=decoded", "device=cpu", "save_images=false",
                  f"num_eval_images={images}")
    validate(cfg)
    model, _, dataset = build(cfg)
    raw = torch.stack([dataset[i][1] for i in range(len(dataset))]).float()
    truths = decoded_truths(model, raw, cfg.data)[0]           # as the studies use them
    latents = model.encode(truths)                              # once, not per number of levels and repeat
    upright = {}
    for n in evals:
        ocfg = cfg.orientation.copy()
        ocfg.method, ocfg.elbo_evals = "elbo", n
        upright[n] = [float((torch.cat([prior_log_ratio(model, latents[i:i + 25], ocfg,
                                                        torch.Generator().manual_seed(1000 * r + i), truths[i:i + 25])
                                        for i in range(0, len(truths), 25)]) > 0).double().mean())
                      for r in range(repeats)]
    return {"images": len(truths), "upright": upright,
            "psnr": {"truth": reconstruct(model, truths)[1].tolist(),
                     "rotation": reconstruct(model, rot180(truths))[1].tolist()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["naturalldm", "digits32ldm"])
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--evals", default="32,128,512")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    evals = [int(e) for e in args.evals.split(",")]
    print("| model | decoded truths | ELBO prefers upright (" + ", ".join(f"{n} levels" for n in evals) +
          "; each repeat) | re-encoded truth PSNR, median [min] | re-encoded rotation PSNR, median [min] |")
    print("|---|---|---|---|---|")
    for name in args.model:
        r = measure(name, args.images, evals, args.repeats)
        up = "; ".join("/".join(f"{100 * v:.0f} %" for v in r["upright"][n]) for n in evals)
        cell = lambda v: f"{statistics.median(v):.1f} [{min(v):.1f}]"  # noqa: E731
        print(f"| {name} | {r['images']} | {up} | {cell(r['psnr']['truth'])} dB | {cell(r['psnr']['rotation'])} dB |",
              flush=True)


if __name__ == "__main__":
    main()
