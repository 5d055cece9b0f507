"""DDIM-step and pixel-optimisation sweep for a mini model's ReSample preset: every setting on the same measurements,
compared with the first by 95 % intervals and the sign test, clustered by image (pipeline/study.py, analysis/paired.py).

    OMP_NUM_THREADS=1 python scripts/studies/sweep_resample.py --model naturalldm --settings 25:true,50:true,100:true,50:false

Each setting runs `--images` images from `--start` x `--particles` independent ReSample runs per seed, as an ordinary
run folder under --out (an interrupted sweep continues). The preset is the setting with the highest particle success
(ties: the fewer steps, then the faster); each setting's time per image is printed beside it.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from analysis.paired import rates_table
from pipeline.cluster import sweep
from pipeline.study import Configuration, Study

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="naturalldm", choices=("naturalldm", "digits32ldm"))
    ap.add_argument("--settings", default="25:true,50:true,100:true,50:false",
                    help="DDIM steps:pixel optimisation, comma-separated; the first is the reference")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--start", type=int, default=56)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or ROOT / "results" / "sweep_resample" / args.model
    settings = [(int(steps), pixel) for steps, pixel in (s.split(":") for s in args.settings.split(","))]
    configs = [Configuration(f"{steps} DDIM steps, pixel {pixel}", "resample",
                             (f"sampler={args.model}_resample", f"particle_num={args.particles}",
                              f"sampler.resample.num_steps={steps}", f"sampler.resample.pixel={pixel}"))
               for steps, pixel in settings]
    study = Study(args.model, tuple(configs), tuple(args.seeds), args.start, args.images, args.images, out)
    recs, comparisons, success = sweep(study, args.workers)
    print(f"{args.model}: images {args.start}-{args.start + args.images - 1} x seeds {args.seeds}, "
          f"{args.particles} independent ReSample runs\n")
    print(rates_table(comparisons))
    seconds = {c.label: statistics.fmean(im["total_time_s"] for im in recs[c.label]) for c in configs}
    print()
    for (steps, pixel), c in zip(settings, configs):
        print(f"{c.label}: particle success {success[c.label]}, {seconds[c.label]:.1f} s/image")
    best = max(zip(settings, configs), key=lambda sc: (success[sc[1].label], -sc[0][0], -seconds[sc[1].label]))
    print(f"\nhighest particle success: {best[1].label}")


if __name__ == "__main__":
    main()
