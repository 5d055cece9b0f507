"""Study of the refine stage on a CPU model (the two-mode benchmarks or the mini LDM): the same runs with and
without latent optimisation, and ReSample's options (docs/refine.md, docs/digits32ldm.md).

    python scripts/studies/study_refine.py --model two_mode_latent --seeds 0,1,2   # 10 images x 4 particles x 3 seeds
    python scripts/studies/study_refine.py --images 2 --max_iters 50               # a quick look

Every variant uses the same seed, so up to the refine trigger the particles are identical across variants.
Prints Markdown tables and writes every per-particle number to JSON. Runs on one CPU thread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from pipeline.build import build
from pipeline.validate import validate
from pipeline.schema import compose
from pipeline.stacks import STACKS, stack
from pipeline.run import run_image
from pipeline.resolve import resolve
from sampler import measurement_generator

ROOT = Path(__file__).resolve().parents[2]


def variants(t: int, sigma: float) -> list[tuple[str, list[str]]]:
    """(label, overrides); the first is the reference every other row is compared with.

    The last row stops a particle once its per-measurement MSE is under the noise variance (discrepancy
    principle) instead of ReSample's eps = 1e-3, which presumes an almost noise-free y.
    """
    on = f"refine_step={t}"
    resample = ["refine.resample=stochastic"]
    return [
        ("no refinement", ["refine_step=-1"]),
        ("ReSample's schedule: every refine step + final, eps 1e-3", [on, "refine.eps=1e-3",
                                                                     "refine.resample=replace"]),
        ("+ stochastic resample", [on, "refine.eps=1e-3", *resample]),
        ("eps auto", [on, "refine.eps=auto", "refine.resample=replace"]),
        ("final call only", [on, "refine.every=0", "refine.eps=1e-3"]),
        ("50 iterations per call", [on, "refine.max_iters=50", "refine.eps=1e-3",
                                    "refine.resample=replace"]),
        ("stochastic resample + eps auto", [on, "refine.eps=auto", *resample]),
        ("final call only + eps auto", [on, "refine.every=0", "refine.eps=auto"]),
        ("the refine block's defaults", [on]),
    ]


def particle_rows(record: dict) -> list[dict]:
    """Per particle: PSNR against the closer mode (refinement cannot rotate an image), loss, mode."""
    return [{"particle": p["particle"], "psnr": max(p["psnr"], p["psnr_180"]), "loss": p["measurement_loss"],
             "mode": p["mode"]} for p in record["particles"]]


def variant_config(overrides: list[str], args, seed: int):
    iters = [] if any(o.startswith("refine.max_iters=") for o in overrides) else [
        f"refine.max_iters={args.max_iters}"]
    cfg = compose(*stack(args.model), f"particle_num={args.particles}", f"seed={seed}", "save_images=false", *iters,
                  *overrides)
    validate(cfg)
    return cfg


def image_record(cfg, model, operator, dataset, i) -> dict:
    name, gt = dataset[i]
    rec = run_image(model, operator, name, gt, dataset.indices[i], resolve(cfg), torch.device("cpu"), torch.float32)
    opt = rec.get("refine", {})
    return {"index": rec["index"], "name": name, "time_s": rec["total_time_s"], "particles": particle_rows(rec),
            "chosen": max(rec["best_by_loss"]["psnr"], rec["best_by_loss"]["psnr_180"]),
            "refine_calls": opt.get("num_calls", 0), "refine_iters": opt.get("mean_iterations"),
            "refine_time_s": opt.get("total_time_s", 0.0), "stops": opt.get("stop_reasons", {})}


def gt_losses(seeds, operator, dataset) -> list[float]:
    """||A(x_gt) - y||^2 per image and seed: the loss of the truth, i.e. the measurement noise's own size."""
    out = []
    for seed in seeds:
        for i in range(len(dataset)):
            gt = dataset[i][1][None].float()
            y = operator.measure(gt, generator=measurement_generator(seed, dataset.indices[i]))
            out.append(float(operator.loss(gt, y)))
    return out


def flat(runs, key):
    return [p[key] for r in runs for p in r["particles"]]


def table(results: dict, gt_loss: list[float]) -> str:
    labels = list(results)
    ref = results[labels[0]]
    ref_loss, ref_psnr, ref_time = flat(ref, "loss"), flat(ref, "psnr"), [r["time_s"] for r in ref]
    n = len(ref_loss)
    lines = [
        f"Ground truth's own loss ||A(x) - y||^2 (the noise): {statistics.fmean(gt_loss):.2f} (mean over images).",
        "",
        "| variant | calls / image | iters / call | stops | loss | Δ loss | lower loss | PSNR | Δ PSNR "
        "| lower PSNR | fail | chosen PSNR | s / image | extra s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        runs = results[label]
        loss, psnr = flat(runs, "loss"), flat(runs, "psnr")
        dl = [a - b for a, b in zip(loss, ref_loss)]
        dp = [a - b for a, b in zip(psnr, ref_psnr)]
        iters = [r["refine_iters"] for r in runs if r["refine_iters"] is not None]
        stops = {}
        for r in runs:
            for k, v in r["stops"].items():
                stops[k] = stops.get(k, 0) + v
        time = [r["time_s"] for r in runs]
        lines.append(
            f"| {label} | {statistics.fmean(r['refine_calls'] for r in runs):.0f} "
            f"| {statistics.fmean(iters) if iters else 0:.0f} "
            f"| {', '.join(f'{k} {v}' for k, v in sorted(stops.items())) or '–'} "
            f"| {statistics.fmean(loss):.2f} | {statistics.fmean(dl):+.2f} | {sum(d < 0 for d in dl)}/{n} "
            f"| {statistics.fmean(psnr):.2f} | {statistics.fmean(dp):+.2f} | {sum(d < 0 for d in dp)}/{n} "
            f"| {sum(p['mode'] == 'fail' for r in runs for p in r['particles'])}/{n} "
            f"| {statistics.fmean(r['chosen'] for r in runs):.2f} "
            f"| {statistics.fmean(time):.1f} | {statistics.fmean(a - b for a, b in zip(time, ref_time)):+.1f} |")
    return "\n".join(lines)


def by_outcome(results: dict) -> str:
    """Δ PSNR of each variant, split by what the particle was without refinement: a mode, or a failure."""
    labels = list(results)
    ref = [p for r in results[labels[0]] for p in r["particles"]]
    groups = {"found a mode without refinement": [p["mode"] != "fail" for p in ref],
              "failed without refinement": [p["mode"] == "fail" for p in ref]}
    lines = ["| variant | " + " | ".join(f"Δ PSNR, {g} (n)" for g in groups) + " |",
             "|---|" + "---|" * len(groups)]
    for label in labels[1:]:
        mine = [p for r in results[label] for p in r["particles"]]
        cells = []
        for mask in groups.values():
            d = [a["psnr"] - b["psnr"] for a, b, m in zip(mine, ref, mask) if m]
            cells.append(f"{statistics.fmean(d):+.2f} (min {min(d):+.2f}, max {max(d):+.2f}; {len(d)})" if d else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="two_mode", choices=sorted(STACKS))
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=None, help="comma list of variant numbers (0 = no refinement; default all)")
    ap.add_argument("--refine_step", type=int, default=200)
    ap.add_argument("--max_iters", type=int, default=500)
    ap.add_argument("--out", default=None, help="JSON path (default results/study_refine_MODEL.json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out or ROOT / "results" / f"study_refine_{args.model}.json")

    cfg = compose(*stack(args.model), f"num_eval_images={args.images}", "device=cpu", "model.cpu_threads=1")
    model, operator, dataset = build(cfg)

    chosen = variants(args.refine_step, cfg.task.operator.sigma)
    if args.variants:
        chosen = [chosen[int(i)] for i in args.variants.split(",")]
    configs = {label: {seed: variant_config(o, args, seed) for seed in seeds} for label, o in chosen}
    results = {label: [] for label in configs}
    # variants interleaved per image, so a change in the shared CPU's load hits them all alike
    for seed in seeds:
        for i in range(len(dataset)):
            for label, vcfg in configs.items():
                results[label].append(image_record(vcfg[seed], model, operator, dataset, i))
            print(f"done: seed {seed} image {dataset.indices[i]}", file=sys.stderr, flush=True)
    gt_loss = gt_losses(seeds, operator, dataset)

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "gt_loss": gt_loss, "results": results}, indent=1))
    print(f"{args.model}: {args.images} images x {args.particles} particles x seeds {args.seeds}, refine_step "
          f"{args.refine_step}, max_iters {args.max_iters}; PSNR against the closer of the two modes.\n")
    print(table(results, gt_loss))
    print()
    print(by_outcome(results))
    print(f"\nper-particle numbers: {out}")


if __name__ == "__main__":
    main()
