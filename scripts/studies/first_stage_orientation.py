"""Does the first stage itself prefer the upright image? For each test image x of a mini LDM, D(E(x)) against x and
D(E(rot x)) against rot x, on the study's ground truths (decoded: D(E(x)), the default) and on the raw images. Where
the first stage reconstructs the upright image better, a rotated particle fits y worse than an upright one of the
same image, so "right as sampled" and the lowest loss's orientation partly measure the benchmark, not the search
(docs/particle_search.md: where a column is inflated).

    python scripts/studies/first_stage_orientation.py --model naturalldm digits32ldm

Prints a Markdown table: per model and truth, the images, the share where the upright image reconstructs better
(95 % Wilson interval; the images are independent) and the median PSNR gain of upright over rotated.
"""
from __future__ import annotations

import argparse
import statistics

import torch

from analysis.paired import wilson
from core.tensors import rot180
from evaluation.failures import reconstruct, truths
from pipeline.build import build
from pipeline.schema import compose
from pipeline.stacks import stack


# the power study's images of each model (scripts/study_frontier.py DESIGN)
IMAGES = {"naturalldm": 64, "digits32ldm": 100}


@torch.no_grad()
def gains(model_name: str, ground_truth: str) -> list[float]:
    """Per image: PSNR of D(E(x)) against x minus that of D(E(rot x)) against rot x, on that kind of truth."""
    cfg = compose(*stack(model_name), f"data.ground_truth={ground_truth}", "device=cpu",
                  f"num_eval_images={IMAGES[model_name]}")
    model, _, dataset = build(cfg)
    raw = torch.stack([dataset[i][1] for i in range(len(dataset))]).float()
    x = truths(model, raw, cfg.data)[0]
    return (reconstruct(model, x)[1] - reconstruct(model, rot180(x))[1]).tolist()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=list(IMAGES), choices=list(IMAGES))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | truths | images | upright reconstructs better, % [95 % CI] | median gain, dB |")
    print("|---|---|---|---|---|")
    for name in args.model:
        for kind in ("decoded", "raw"):
            g = gains(name, kind)
            k = sum(v > 0 for v in g)
            low, high = wilson(k, len(g))
            print(f"| {name} | {kind} | {len(g)} | {100 * k / len(g):.0f} [{100 * low:.0f}, {100 * high:.0f}] | "
                  f"{statistics.median(g):+.1f} |", flush=True)


if __name__ == "__main__":
    main()
