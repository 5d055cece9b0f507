"""Study of the orientation by the prior (docs/orientation.md): how often the oracle, the lowest-loss particle and
the prior's choice are in the 0° mode. On the two-mode benchmarks with a symmetric and an asymmetric prior, and how
often the ELBO estimate's sign agrees with the exact log-ratio against its number of evaluations; on the mini LDM
(no exact density) per digit class, and whether the ELBO prefers the upright one of every clean test digit.

    python scripts/studies/study_orientation.py                           # 20 images x 3 seeds x 4 particles, both models
    python scripts/studies/study_orientation.py --seeds 11 --weights 0.5 --models two_mode --evals 128   # a held-out check
    python scripts/studies/study_orientation.py --models digits32ldm --images 30 --evals 32,128,512   # the learned prior

Prints Markdown tables and writes every per-image number to JSON. Runs on one CPU thread.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from evaluation.orientation import prior_log_ratio
from pipeline.build import build
from pipeline.validate import validate
from pipeline.schema import compose
from pipeline.stacks import stack
from evaluation.record import evaluate_image, image_record, stage_records
from pipeline.resolve import resolve
from pipeline.sampling import sample_batch, split
from tracking.compute import NetworkCounter

ROOT = Path(__file__).resolve().parents[2]


def config(model: str, weight: float | None, seed: int, particles: int):
    weight = [] if weight is None else [f"model.rotated_weight={weight}"]
    cfg = compose(*stack(model), *weight, f"particle_num={particles}", f"seed={seed}", "save_images=false",
                  "device=cpu")
    validate(cfg)
    return cfg


def run(model_name: str, weight: float | None, args, exact: bool = True) -> list[dict]:
    out = []
    evals = [int(e) for e in args.evals.split(",")]
    cfg0 = config(model_name, weight, 0, args.particles)
    cfg0.num_eval_images = args.images
    model, operator, dataset = build(cfg0)
    dev = torch.device("cpu")
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = config(model_name, weight, seed, args.particles)
        settings = resolve(cfg)
        for i in range(len(dataset)):
            name, gt = dataset[i]
            index = dataset.indices[i]
            with NetworkCounter(model) as counter:
                (result,) = split(sample_batch(model, operator, gt[None].float(), [index], settings, dev, torch.float32,
                                               counter))
                evaluated = evaluate_image(model, operator, result, gt[None].float(), settings.eval, None,
                                           counter, None, None)
            rec = image_record(result, name, evaluated, settings.eval, stage_records(result.trace, settings.active), None)
            latents = result.z
            final = [p for p in rec["particles"] if p["pruned_at"] is None]
            found = torch.tensor([p["mode"] != "fail" for p in final])
            reference = torch.tensor([p["prior_log_ratio"] for p in final])
            agree, seconds = {}, {}
            for n in evals if exact else []:
                ocfg = cfg.orientation.copy()
                ocfg.method, ocfg.elbo_evals = "elbo", n
                t0 = time.perf_counter()
                est = prior_log_ratio(model, latents, ocfg, torch.Generator().manual_seed(1000 * seed + index))
                seconds[n] = time.perf_counter() - t0
                agree[n] = [bool(a) for a in ((est > 0) == (reference > 0))[found].tolist()]
            label = int(name.rsplit("_", 1)[1]) if model_name == "digits32ldm" else None
            out.append({"seed": seed, "index": index, "label": label, "gt_mode_found": rec["gt_mode_found"],
                        "loss_mode": rec["best_by_loss"]["mode"], "prior_mode": rec["best_by_prior"]["mode"],
                        "oracle_psnr": rec["best_oracle"]["psnr"], "loss_psnr": rec["best_by_loss"]["psnr"],
                        "prior_psnr": rec["best_by_prior"]["psnr"], "elbo_agree": agree, "elbo_s": seconds})
        print(f"{model_name} w={weight}: seed {seed} done", file=sys.stderr, flush=True)
    return out


def run_digits(args) -> dict:
    """The mini LDM, per digit class: (a) the ELBO's sign on every clean test digit (encoded; upright = positive)
    at each number of evaluations, (b) the three choices after phase retrieval on the first --images test digits."""
    from data.digits import digits

    evals = [int(e) for e in args.evals.split(",")]
    cfg = config("digits32ldm", None, 0, args.particles)
    model = build(cfg)[0]
    x, labels = digits("test")
    clean = {}
    with torch.no_grad():
        z = model.encode(x)
        for n in evals:
            ocfg = cfg.orientation.copy()
            ocfg.method, ocfg.elbo_evals = "elbo", n
            t0 = time.perf_counter()
            ratio = torch.cat([prior_log_ratio(model, z[i:i + 64], ocfg, torch.Generator().manual_seed(i), x[i:i + 64])
                               for i in range(0, len(z), 64)])
            clean[n] = {"ratio": ratio.tolist(), "s_per_digit": (time.perf_counter() - t0) / len(z)}
    runs = run("digits32ldm", None, args, exact=False)
    return {"labels": labels.tolist(), "clean": clean, "runs": runs}


def digit_tables(res: dict) -> str:
    labels, clean, runs = res["labels"], res["clean"], res["runs"]
    evals = sorted(clean)
    n_ref = evals[-1]
    lines = ["| class | test digits | ELBO prefers upright (" + ", ".join(f"{n} evals" for n in evals) + ") | runs | "
             "oracle in 0° | lowest loss in 0° | prior's choice in 0° | prior's choice, where 0° was found |",
             "|---|---|---|---|---|---|---|---|"]
    pct = lambda xs: f"{100 * statistics.fmean(xs):.0f} %" if xs else "–"  # noqa: E731
    for c in [*range(10), None]:
        mine = [i for i, lab in enumerate(labels) if c is None or lab == c]
        up = " / ".join(pct([clean[n]["ratio"][i] > 0 for i in mine]) for n in evals)
        rs = [r for r in runs if c is None or r["label"] == c]
        found = [r for r in rs if r["gt_mode_found"]]
        lines.append(f"| {'all' if c is None else c} | {len(mine)} | {up} | {len(rs)} | "
                     f"{pct([r['gt_mode_found'] for r in rs])} | {pct([r['loss_mode'] == '0' for r in rs])} | "
                     f"{pct([r['prior_mode'] == '0' for r in rs])} | {pct([r['prior_mode'] == '0' for r in found])} |")
    seconds = ", ".join(f"{n} evals {1000 * clean[n]['s_per_digit']:.1f} ms" for n in evals)
    ties = sum(r == 0 for r in clean[n_ref]["ratio"])
    return "\n".join(lines) + f"\n\nELBO cost per clean digit (both orientations, one thread): {seconds}; " \
                               f"ties at {n_ref} evals: {ties}."


def tables(results: dict, evals: list[int]) -> str:
    lines = ["| model | rotated_weight | images | oracle in 0° | lowest loss in 0° | prior's choice in 0° | "
             "oracle PSNR | lowest-loss PSNR | prior's choice PSNR |", "|---|---|---|---|---|---|---|---|---|"]
    for (model, weight), runs in results.items():
        pct = lambda f: 100 * statistics.fmean(float(f(r)) for r in runs)  # noqa: E731
        mean = lambda k: statistics.fmean(r[k] for r in runs)  # noqa: E731
        lines.append(f"| {model} | {weight} | {len(runs)} | {pct(lambda r: r['gt_mode_found']):.0f} % | "
                     f"{pct(lambda r: r['loss_mode'] == '0'):.0f} % | {pct(lambda r: r['prior_mode'] == '0'):.0f} % | "
                     f"{mean('oracle_psnr'):.2f} | {mean('loss_psnr'):.2f} | {mean('prior_psnr'):.2f} |")
    lines += ["", "ELBO estimate: share of mode-finding particles whose sign agrees with the exact log-ratio "
              "(seconds per image for all its particles and both orientations)", "",
              "| model | rotated_weight | particles | " + " | ".join(f"{n} evals" for n in evals) + " |",
              "|---|---|---|" + "---|" * len(evals)]
    for (model, weight), runs in results.items():
        cells = []
        for n in evals:
            a = [x for r in runs for x in r["elbo_agree"][n]]
            cells.append(f"{100 * statistics.fmean(a):.1f} % ({statistics.fmean(r['elbo_s'][n] for r in runs):.2f} s)"
                         if a else "–")
        count = sum(len(r["elbo_agree"][evals[0]]) for r in runs)
        lines.append(f"| {model} | {weight} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="two_mode,two_mode_latent")
    ap.add_argument("--weights", default="0.5,1.0")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--particles", type=int, default=4)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--evals", default="8,16,32,64,128")
    ap.add_argument("--out", default=str(ROOT / "results" / "study_orientation.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    models = args.models.split(",")
    results = {(m, float(w)): run(m, float(w), args) for m in models if m != "digits32ldm"
               for w in args.weights.split(",")}
    evals = [int(e) for e in args.evals.split(",")]
    print(f"{args.images} images x {args.particles} particles x seeds {args.seeds}\n")
    if results:
        print(tables(results, evals))
    saved = {f"{m} {w}": r for (m, w), r in results.items()}
    if "digits32ldm" in models:
        saved["digits32ldm"] = run_digits(args)
        print(digit_tables(saved["digits32ldm"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": saved}, indent=1))


if __name__ == "__main__":
    main()
