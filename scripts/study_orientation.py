"""Study of the orientation by the prior on the two-mode benchmarks (docs/orientation.md): how often the oracle,
the lowest-loss particle and the prior's choice are in the 0° mode, with a symmetric and an asymmetric prior, and how
often the ELBO estimate's sign agrees with the exact log-ratio against its number of evaluations.

    python scripts/study_orientation.py                           # 20 images x 3 seeds x 4 particles, both models
    python scripts/study_orientation.py --seeds 11 --weights 0.5 --models two_mode --evals 128   # a held-out check

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from data import build_dataset  # noqa: E402
from evaluation.orientation import prior_log_ratio  # noqa: E402
from models import build_model  # noqa: E402
from operators import build_operator  # noqa: E402
from pipeline.cli import validate  # noqa: E402
from pipeline.run import _image_record, sample_batch  # noqa: E402


def config(model: str, weight: float, seed: int, particles: int):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="default", overrides=[
            f"model={model}", f"sampler={model}", f"data={model}", f"model.rotated_weight={weight}",
            f"particle_num={particles}", f"seed={seed}", "save_images=false"])
    validate(cfg)
    return cfg


def run(model_name: str, weight: float, args) -> list[dict]:
    out = []
    evals = [int(e) for e in args.evals.split(",")]
    cfg0 = config(model_name, weight, 0, args.particles)
    model = build_model(cfg0.model, "cpu")
    operator = build_operator(cfg0.task, model.image_shape[-1])
    dataset = build_dataset(cfg0.data, cfg0.model, 0, args.images)
    dev = torch.device("cpu")
    for seed in [int(s) for s in args.seeds.split(",")]:
        cfg = config(model_name, weight, seed, args.particles)
        for i in range(len(dataset)):
            name, gt = dataset[i]
            index = dataset.indices[i]
            ys, state, timing, hooks = sample_batch(model, operator, gt[None].float(), [index], cfg, dev,
                                                    torch.float32)
            rec = _image_record(model, operator, index, name, gt[None].float(), ys[0], state, timing, hooks, cfg,
                                None, None, [index])
            final = [p for p in rec["particles"] if p["pruned_at"] is None]
            found = torch.tensor([p["mode"] != "fail" for p in final])
            exact = torch.tensor([p["prior_log_ratio"] for p in final])
            agree, seconds = {}, {}
            for n in evals:
                ocfg = cfg.orientation.copy()
                ocfg.method, ocfg.elbo_evals = "elbo", n
                t0 = time.perf_counter()
                est = prior_log_ratio(model, state.z, ocfg, torch.Generator().manual_seed(1000 * seed + index))
                seconds[n] = time.perf_counter() - t0
                agree[n] = [bool(a) for a in ((est > 0) == (exact > 0))[found].tolist()]
            out.append({"seed": seed, "index": index, "gt_mode_found": rec["gt_mode_found"],
                        "loss_mode": rec["best_by_loss"]["mode"], "prior_mode": rec["best_by_prior"]["mode"],
                        "oracle_psnr": rec["best_oracle"]["psnr"], "loss_psnr": rec["best_by_loss"]["psnr"],
                        "prior_psnr": rec["best_by_prior"]["psnr"], "elbo_agree": agree, "elbo_s": seconds})
        print(f"{model_name} w={weight}: seed {seed} done", file=sys.stderr, flush=True)
    return out


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
    results = {(m, float(w)): run(m, float(w), args) for m in args.models.split(",") for w in args.weights.split(",")}
    evals = [int(e) for e in args.evals.split(",")]
    print(f"{args.images} images x {args.particles} particles x seeds {args.seeds}\n")
    print(tables(results, evals))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "results": {f"{m} {w}": r for (m, w), r in
                                                                           results.items()}}, indent=1))


if __name__ == "__main__":
    main()
