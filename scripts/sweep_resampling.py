"""Sweep of the resampling stage's settings (temperature, interval, window) against 4 independent particles on the
same measurements, on tuning images held out from the study's (docs/resampling.md).

    python scripts/sweep_resampling.py --model naturalldm --start 32 --images 8 --temperature 0.02,0.05,0.2 \\
        --interval 2 --window 900:500,900:200

Prints a Markdown table: chosen right, found, particle success, best-of-N PSNR, decoder VJPs per image, and the
share of events that resampled; one CPU thread.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from data import build_dataset  # noqa: E402
from evaluation.summary import summarize  # noqa: E402
from models import build_model  # noqa: E402
from operators import build_operator  # noqa: E402
from pipeline.config import validate  # noqa: E402
from pipeline.run import run_image  # noqa: E402
from pipeline.stacks import STACKS, stack  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="naturalldm", choices=sorted(STACKS))
    ap.add_argument("--start", type=int, default=32)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--temperature", default="0.05")
    ap.add_argument("--interval", default="2")
    ap.add_argument("--window", default="900:500", help="comma list of start_t:end_t")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)
    grid = [("independent", [])]
    for temp, interval, window in itertools.product(args.temperature.split(","), args.interval.split(","),
                                                    args.window.split(",")):
        start, end = window.split(":")
        grid.append((f"τ {temp}, every {interval}, t {start} → {end}",
                     [f"resampling_interval={interval}", f"resampling.temperature={temp}",
                      f"resampling.start_t={start}", f"resampling.end_t={end}"]))
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfgs = {label: compose("default", overrides=[*stack(args.model), f"particle_num={args.particles}",
                                                     f"seed={args.seed}", "save_images=false", *o, *args.overrides])
                for label, o in grid}
    for cfg in cfgs.values():
        validate(cfg)
    base = next(iter(cfgs.values()))
    model = build_model(base.model, "cpu")
    operator = build_operator(base.task, model.image_shape[-1])
    dataset = build_dataset(base.data, base.model, args.start, args.images)
    records = {label: [] for label in cfgs}
    t0 = time.perf_counter()
    for i in range(len(dataset)):
        name, gt = dataset[i]
        for label, cfg in cfgs.items():
            records[label].append(run_image(model, operator, name, gt, dataset.indices[i], cfg, torch.device("cpu"),
                                            torch.float32))
        print(f"image {dataset.indices[i]} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(f"{args.model}: images {args.start}-{args.start + args.images - 1} x {args.particles} particles, seed "
          f"{args.seed}, {time.strftime('%Y-%m-%d')}\n")
    print("| setting | chosen right | found | particle success | best-of-N PSNR | decoder VJPs / image | events resampled |")
    print("|---|---|---|---|---|---|---|")
    for label, recs in records.items():
        s = summarize(recs)
        events = [e["resampled"] for r in recs for e in r.get("resampling", [])]
        share = f"{sum(events)}/{len(events)}" if events else "–"
        print(f"| {label} | {sum(r['best_by_prior']['mode'] == '0' for r in recs)}/{len(recs)} | "
              f"{sum(r['found'] for r in recs)}/{len(recs)} | {100 * s['particle_success_rate']:.1f} % | "
              f"{s['best_of_n_psnr_mean']:.2f} | {s['decoder_vjp_rows_per_image']:.0f} | {share} |")


if __name__ == "__main__":
    main()
