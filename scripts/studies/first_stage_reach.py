"""How much of a data set can the model make at all? For every image of the set, raw: the first stage's PSNR on it and
whether its reconstruction D(E(x)) fits the image's measurement within the noise margin (evaluation/failures.py,
the `representability` record of every run), without sampling anything.

    python scripts/studies/first_stage_reach.py --model naturalldm        # the 64 held-out crops
    python scripts/studies/first_stage_reach.py --model digits32ldm --images 297
"""
from __future__ import annotations

import argparse
import statistics

import torch

from evaluation.failures import representability, truths
from pipeline.build import build
from pipeline.schema import compose
from pipeline.stacks import STACKS, stack
from sampler import measurement_generator


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="naturalldm", choices=sorted(STACKS))
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    cfg = compose(*stack(args.model), "data.ground_truth=raw", f"num_eval_images={args.images}", "device=cpu")
    model, operator, dataset = build(cfg)
    torch.set_num_threads(1)
    x = torch.stack([dataset[i][1] for i in range(len(dataset))])
    with torch.no_grad():
        gts, recs, psnr = truths(model, x, cfg.data)
        reps = [representability(operator, gts[i:i + 1], recs[i:i + 1],
                                 operator.measure(gts[i:i + 1], generator=measurement_generator(seed, dataset.indices[i])),
                                 psnr[i])
                for seed in args.seeds for i in range(len(dataset))]
    ok = [r["representable"] for r in reps]
    q = statistics.quantiles(psnr, n=10)
    print(f"{args.model}, {len(dataset)} raw images x seeds {args.seeds}: first-stage PSNR median "
          f"{statistics.median(psnr):.1f} dB (10th-90th percentile {q[0]:.1f}-{q[-1]:.1f}, min {min(psnr):.1f}, "
          f"max {max(psnr):.1f}); representable (D(E(x)) fits y within the margin) {sum(ok)}/{len(ok)} = "
          f"{100 * sum(ok) / len(ok):.0f} %; reconstruction loss / margin median "
          f"{statistics.median(r['loss_reconstruction'] / r['margin'] for r in reps):.2f}")


if __name__ == "__main__":
    main()
