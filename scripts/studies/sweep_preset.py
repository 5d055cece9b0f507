"""Step-size sweep for a model's sampler preset: every setting on the same measurements, compared with the first by
95 % intervals and the sign test, clustered by image (the study harness: pipeline/study.py, analysis/paired.py).

    OMP_NUM_THREADS=1 python scripts/studies/sweep_preset.py --model two_mode_latent --lr 5e-5,1e-4,2e-4 --mcmc-steps 20,50

Each setting runs `--images` images x `--particles` independent particles per seed, as an ordinary run folder
under --out (an interrupted sweep continues); the preset is the setting with the highest particle success (ties:
more images chosen right).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from analysis.paired import rates_table
from pipeline.cluster import sweep
from pipeline.stacks import STACKS
from pipeline.study import Configuration, Study

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="two_mode_latent", choices=sorted(STACKS))
    ap.add_argument("--lr", default="5e-5,1e-4,2e-4,5e-4,1e-3")
    ap.add_argument("--mcmc-steps", default="20,50")
    ap.add_argument("--lr-min-ratio", default="0.01")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every setting")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "results" / "sweep_preset" / args.model
    configs = [Configuration(f"lr {lr}, {steps} MCMC steps, lr_min_ratio {ratio}", "preset",
                             (f"particle_num={args.particles}", f"sampler.mcmc.lr={lr}",
                              f"sampler.mcmc.num_steps={steps}", f"sampler.mcmc.lr_min_ratio={ratio}"))
               for lr, steps, ratio in itertools.product(args.lr.split(","), args.mcmc_steps.split(","),
                                                         args.lr_min_ratio.split(","))]
    study = Study(args.model, tuple(configs), tuple(args.seeds), args.start, args.images, args.images, out,
                  common=tuple(args.overrides))
    recs, comparisons, success = sweep(study)
    print(f"{args.model}: images {args.start}-{args.start + args.images - 1} x seeds {args.seeds}, "
          f"{args.particles} particles\n")
    print(rates_table(comparisons))
    best = max(comparisons, key=lambda k: (success[k], comparisons[k].means["chosen_right"]))
    print(f"\nhighest particle success: {best}")


if __name__ == "__main__":
    main()
