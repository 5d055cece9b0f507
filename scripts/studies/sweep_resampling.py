"""Sweep of the resampling stage's settings (temperature, interval, window) against independent particles on the
same measurements, on tuning images held out from the study's (the study harness: pipeline/study.py,
analysis/paired.py; docs/resampling.md).

    OMP_NUM_THREADS=1 python scripts/studies/sweep_resampling.py --model naturalldm --start 50 --images 14 \\
        --temperature 0.05,0.2 --interval 2 --window 500:200,900:200

Prints the paired table against independent particles (95 % intervals and sign-test p, clustered by image) and the share of events that
resampled.
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

from analysis.paired import compare, rates_table
from pipeline.cluster import run_here
from pipeline.stacks import STACKS
from pipeline.study import Configuration, Study, records

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="naturalldm", choices=sorted(STACKS))
    ap.add_argument("--start", type=int, default=50)
    ap.add_argument("--images", type=int, default=14)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--temperature", default="0.2")
    ap.add_argument("--interval", default="2")
    ap.add_argument("--window", default="500:200", help="comma list of start_t:end_t")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    out = args.out or ROOT / "results" / "sweep_resampling" / args.model
    configs = [Configuration("independent", "independent", (f"particle_num={args.particles}",))]
    for temp, interval, window in itertools.product(args.temperature.split(","), args.interval.split(","),
                                                    args.window.split(",")):
        start, end = window.split(":")
        configs.append(Configuration(f"τ {temp}, every {interval}, t {start} → {end}", "resampling",
                                     (f"particle_num={args.particles}", f"resampling_interval={interval}",
                                      f"resampling.temperature={temp}", f"resampling.start_t={start}",
                                      f"resampling.end_t={end}")))
    study = Study(args.model, tuple(configs), tuple(args.seeds), args.start, args.images, args.images, out,
                  common=tuple(args.overrides))
    run_here(study)
    recs = records(study)
    comparisons = {c.label: compare(recs[c.label], recs["independent"]) for c in configs}
    print(f"{args.model}: images {args.start}-{args.start + args.images - 1} x seeds {args.seeds}, "
          f"{args.particles} particles\n")
    print(rates_table(comparisons))
    for c in configs[1:]:
        events = [e["resampled"] for r in recs[c.label] for e in r.get("resampling", [])]
        print(f"{c.label}: {sum(events)}/{len(events)} events resampled")


if __name__ == "__main__":
    main()
