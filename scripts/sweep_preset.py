"""Step-size sweep for a benchmark model's sampler preset: failed particles and mode coverage per setting.

    python scripts/sweep_preset.py --model two_mode_latent --lr 5e-5,1e-4,2e-4,5e-4,1e-3 --mcmc-steps 20,50

Runs `--images` images x `--particles` independent particles per setting (no repulsion, pruning or refinement),
seed `--seed`, on one CPU thread, and prints a Markdown table (success up to the measurement's symmetries); the
preset is the setting with the fewest failed particles (ties: more images chosen right, then found).
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from data import build_dataset  # noqa: E402
from models import build_model  # noqa: E402
from operators import build_operator  # noqa: E402
from pipeline.config import validate  # noqa: E402
from pipeline.stacks import STACKS, stack  # noqa: E402
from pipeline.run import run_image  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="two_mode_latent", choices=sorted(STACKS))
    ap.add_argument("--lr", default="5e-5,1e-4,2e-4,5e-4,1e-3")
    ap.add_argument("--mcmc-steps", default="20,50")
    ap.add_argument("--lr-min-ratio", default="0.01")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every setting")
    args = ap.parse_args()
    torch.set_num_threads(1)

    grid = list(itertools.product(args.lr.split(","), args.mcmc_steps.split(","), args.lr_min_ratio.split(",")))
    print(f"{args.model}: {args.images} images x {args.particles} particles, seed {args.seed}\n")
    print("| lr | MCMC steps | lr_min_ratio | failed particles | found | chosen right | both modes | best-of-N PSNR | "
          "s / image |")
    print("|---|---|---|---|---|---|---|---|---|")
    model = dataset = operator = None
    for lr, steps, ratio in grid:
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
            cfg = compose(config_name="default", overrides=[
                *stack(args.model), f"particle_num={args.particles}",
                f"seed={args.seed}", "save_images=false", f"sampler.mcmc.lr={lr}", f"sampler.mcmc.num_steps={steps}",
                f"sampler.mcmc.lr_min_ratio={ratio}", *args.overrides])
        validate(cfg)
        if model is None:
            model = build_model(cfg.model, "cpu")
            operator = build_operator(cfg.task, model.image_shape[-1])
            dataset = build_dataset(cfg.data, cfg.model, 0, args.images)
        recs, t0 = [], time.perf_counter()
        for i in range(len(dataset)):
            name, gt = dataset[i]
            recs.append(run_image(model, operator, name, gt, dataset.indices[i], cfg, torch.device("cpu"),
                                  torch.float32))
        seconds = (time.perf_counter() - t0) / len(recs)
        fails = sum(r["modes"]["fail"] for r in recs)
        print(f"| {lr} | {steps} | {ratio} | {fails}/{args.images * args.particles} | "
              f"{sum(r['found'] for r in recs)}/{len(recs)} | "
              f"{sum(r['best_by_prior']['mode'] == '0' for r in recs)}/{len(recs)} | "
              f"{sum(r['both_modes'] for r in recs)}/{len(recs)} | "
              f"{statistics.fmean(r['best_of_n']['psnr'] for r in recs):.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
