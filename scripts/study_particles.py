"""Two-mode benchmark study: repulsion, pruning and branching against independent runs (see docs/particle_search.md).

    python scripts/study_particles.py                 # the comparison: 10 images x 3 seeds, 6 configurations
    python scripts/study_particles.py --sweep         # repulsion_scale / mode sweep on 10 images, another seed
    python scripts/study_particles.py --model two_mode_latent   # the same on the decoder-constrained benchmark

Prints a Markdown table and writes every per-run number to JSON. Runs on one CPU thread.
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
from models import build_model  # noqa: E402
from operators import build_operator  # noqa: E402
from pipeline.cli import validate  # noqa: E402
from pipeline.stacks import STACKS, stack  # noqa: E402
from pipeline.run import run_image  # noqa: E402
from sampler import trigger_step  # noqa: E402


def comparison(prune_t: int) -> list[tuple[str, list[str]]]:
    """(label, overrides): the six configurations of the study; repulsion uses the config defaults."""
    rep = "repulsion_scale=0.3"
    prune = [f"pruning_step={prune_t}", "pruning_keep=2"]
    return [
        ("4 independent", ["particle_num=4"]),
        ("4 repulsive", ["particle_num=4", rep]),
        ("4 → 2 pruned", ["particle_num=4", rep, *prune, "pruning.mode=prune"]),
        ("4 → 2 → 4 branched", ["particle_num=4", rep, *prune, "pruning.mode=branch"]),
        ("2 independent", ["particle_num=2"]),
        ("2 repulsive", ["particle_num=2", rep]),
    ]


def sweep() -> list[tuple[str, list[str]]]:
    """Four particles, no pruning: strength and mode of the repulsion."""
    rows = [("independent", ["repulsion_scale=0"])]
    for s in (0.03, 0.1, 0.3, 1.0):
        rows.append((f"score_relative {s}", [f"repulsion_scale={s}", "repulsion.mode=score_relative"]))
    for s in (1e4, 3e4, 1e5):
        rows.append((f"absolute {s:g}", [f"repulsion_scale={s}", "repulsion.mode=absolute"]))
    rows.append(("score_relative 0.3 linear", ["repulsion_scale=0.3", "repulsion.schedule=linear"]))
    rows.append(("score_relative 0.3 pixel 16", ["repulsion_scale=0.3", "repulsion.features=pixel",
                                                 "repulsion.pixel_size=16"]))
    return rows


def run_record(record: dict, prune_k: int) -> dict:
    """The numbers the tables need from one image's metric.json record."""
    final = [p for p in record["particles"] if p["pruned_at"] is None]
    late = [s["time_s"] for s in record["steps"] if s["k"] > prune_k]
    early = [s["time_s"] for s in record["steps"] if s["k"] <= prune_k]
    ratios = [s["repulsion_score_ratio"] for s in record["steps"][:10] if s.get("repulsion_score_ratio")]
    return {
        "index": record["index"], "both_modes": record["both_modes"], "gt_mode_found": record["gt_mode_found"],
        "fail": sum(p["mode"] == "fail" for p in final) / len(final), "particles": len(final),
        "mean_psnr": statistics.fmean(p["psnr"] for p in final), "max_psnr": record["best_oracle"]["psnr"],
        "time_s": record["total_time_s"],
        "step_ms_early": 1e3 * statistics.fmean(early), "step_ms_late": 1e3 * statistics.fmean(late),
        "ratio_first10": statistics.fmean(ratios) if ratios else 0.0,
        "modes": record["modes"], "pruning": record.get("pruning"),
        "both_modes_loss_only": loss_only_both_modes(record),
    }


def loss_only_both_modes(record: dict):
    """Counterfactual from the same run: would the two lowest-loss particles at the pruning step cover both modes?

    Kept particles are labelled by their final image, dropped ones by their image at the pruning step
    (particles have committed to a mode long before t = 400 on this benchmark). None without pruning.
    """
    pruning = record.get("pruning")
    if not pruning:
        return None
    originals = {int(i): loss for i, loss in pruning["losses"].items()}
    mode = {p["particle"]: p["mode"] for p in record["particles"]}
    best = sorted(originals, key=originals.get)[:2]
    return {mode[i] for i in best} == {"0", "180"}


def summarize(runs: list[dict]) -> dict:
    mean = lambda key: statistics.fmean(r[key] for r in runs)  # noqa: E731
    return {
        "runs": len(runs), "both_modes": mean("both_modes"), "gt_mode_found": mean("gt_mode_found"),
        "fail": mean("fail"), "mean_psnr": mean("mean_psnr"), "max_psnr": mean("max_psnr"),
        "max_psnr_worst": min(r["max_psnr"] for r in runs), "time_s": mean("time_s"),
        "step_ms_early": mean("step_ms_early"), "step_ms_late": mean("step_ms_late"),
        "ratio_first10": mean("ratio_first10"), "particles": mean("particles"),
        "mode_counts": {m: sum(r["modes"][m] for r in runs) for m in ("0", "180", "fail")},
        "both_modes_loss_only": (statistics.fmean(r["both_modes_loss_only"] for r in runs)
                                 if runs[0]["both_modes_loss_only"] is not None else None),
    }


def markdown(rows: list[tuple[str, dict]], late_from_t: int) -> str:
    head = ("| configuration | final particles | both modes | 0° found | failed particles | 0°/180°/fail | "
            "mean PSNR | "
            f"max PSNR (worst) | s / image | ms / step after t = {late_from_t} (before) | repulsion/score, steps 0-9 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, s in rows:
        c = s["mode_counts"]
        lines.append(
            f"| {label} | {s['particles']:.1f} | {100 * s['both_modes']:.0f} % | "
            f"{100 * s['gt_mode_found']:.0f} % | "
            f"{100 * s['fail']:.1f} % | {c['0']}/{c['180']}/{c['fail']} | {s['mean_psnr']:.2f} | "
            f"{s['max_psnr']:.2f} ({s['max_psnr_worst']:.1f}) | "
            f"{s['time_s']:.2f} | {s['step_ms_late']:.1f} ({s['step_ms_early']:.1f}) | {s['ratio_first10']:.3g} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="run the repulsion sweep instead of the comparison")
    ap.add_argument("--model", default="two_mode", choices=sorted(STACKS))
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2 (comparison), 100 (sweep)")
    ap.add_argument("--prune-t", type=int, default=400, help="pruning_step of the pruned/branched configurations")
    ap.add_argument("--out", default=None, help="JSON path (default results/study_particles[_sweep].json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)    # the machine is shared
    seeds = args.seeds or ([100] if args.sweep else [0, 1, 2])
    configs = sweep() if args.sweep else comparison(args.prune_t)
    suffix = ("_sweep" if args.sweep else "") + ("" if args.model == "two_mode" else f"_{args.model}")
    out = Path(args.out or ROOT / "results" / f"study_particles{suffix}.json")
    model_stack = stack(args.model)

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfgs = {label: compose("default", overrides=[*model_stack, *o, f"num_eval_images={args.images}",
                                                     "save_images=false"])
                for label, o in configs}
    base = next(iter(cfgs.values()))
    model = build_model(base.model, "cpu").float()
    operator = build_operator(base.task, model.image_shape[-1])
    dataset = build_dataset(base.data, base.model, base.data.start_index, args.images)
    # step times are split at the study's pruning step in every configuration, pruned or not
    late_k = trigger_step(args.prune_t, base.sampler.annealing.num_steps)

    runs = {label: [] for label in cfgs}
    t0 = time.perf_counter()
    # configurations interleaved per image so that the shared machine's load drifts over all of them alike
    for seed in seeds:
        for i in range(len(dataset)):
            name, gt = dataset[i]
            for label, cfg in cfgs.items():
                cfg = cfg.copy()
                cfg.seed = seed
                validate(cfg)
                rec = run_image(model, operator, name, gt, dataset.indices[i], cfg, torch.device("cpu"),
                                torch.float32)
                runs[label].append({"seed": seed, **run_record(rec, late_k)})
            print(f"seed {seed} image {i} ({name}) done, {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    rows = [(label, summarize(r)) for label, r in runs.items()]
    table = markdown(rows, args.prune_t)
    for label, s in rows:
        if s["both_modes_loss_only"] is not None:
            table += (f"\n\n{label}: both modes {100 * s['both_modes']:.0f} % with diversity-aware pruning; "
                      f"{100 * s['both_modes_loss_only']:.0f} % had the two lowest-loss particles been kept.")
    print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "kind": "sweep" if args.sweep else "comparison", "model": args.model, "images": args.images, "seeds": seeds,
        "prune_t": args.prune_t, "sampler": dict(base.sampler.mcmc), "wall_s": time.perf_counter() - t0,
        "configs": {label: o for label, o in configs}, "summary": dict(rows), "table": table, "runs": runs,
    }, indent=1, default=str))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
