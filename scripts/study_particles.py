"""Compute-matched particle study: do interacting particles find (and choose) the right solution more often than
independent runs at the same network compute? Independent N = 1, 2, 4, 8; repulsion (score-relative and Particle
Guidance); 4 -> 2 pruning and 4 -> 2 -> 4 branching; loss-guided resampling at N = 2, 4, 8 (docs/particle_search.md,
docs/resampling.md).

    python scripts/study_particles.py --model digits32ldm --images 6 --seeds 0 1 2
    python scripts/study_particles.py --model naturalldm --images 20 --seeds 0 --out a.json &   # two shards side
    python scripts/study_particles.py --model naturalldm --images 20 --seeds 1 --out b.json     # by side, then
    python scripts/study_particles.py --merge a.json b.json --plot docs/naturalldm_search.png   # one table

Every number is evaluation.summary.summarize over the runs' metric.json records, as parse_metrics computes it;
success is up to the measurement's symmetries (rotation, shifts). Prints a Markdown table, writes the records to
JSON and, with --plot, success against compute per method beside the independent runs' 1 - (1 - p)^N. One CPU
thread per process.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from data import build_dataset  # noqa: E402
from evaluation.summary import summarize  # noqa: E402
from models import build_model, mode_weights  # noqa: E402
from operators import build_operator  # noqa: E402
from pipeline.config import validate  # noqa: E402
from pipeline.run import run_image  # noqa: E402
from pipeline.stacks import STACKS, stack  # noqa: E402


def methods(args) -> list[tuple[str, str, int, list[str]]]:
    """(label, family, particles at the start, overrides) of every configuration of the study."""
    prune = [f"pruning_step={args.prune_t}", "pruning_keep=2"]
    rs = [f"resampling_interval={args.rs_interval}", f"resampling.start_t={args.rs_start}",
          f"resampling.end_t={args.rs_end}", f"resampling.temperature={args.rs_temperature}"]
    rows = [(f"{n} independent", "independent", n, [f"particle_num={n}"]) for n in (1, 2, 4, 8)]
    rows += [
        (f"4 repulsive {args.rep_scale:g} (score-relative)", "repulsion", 4,
         ["particle_num=4", f"repulsion_scale={args.rep_scale}"]),
        (f"4 Particle Guidance {args.pg_scale:g}", "particle guidance", 4,
         ["particle_num=4", f"repulsion_scale={args.pg_scale}", "repulsion.mode=particle_guidance",
          f"repulsion.sigma_min={args.pg_sigma_min}"]),
        (f"4 → 2 pruned at t = {args.prune_t}", "pruning", 4, ["particle_num=4", *prune]),
        (f"4 → 2 → 4 branched at t = {args.prune_t}", "branching", 4, ["particle_num=4", *prune,
                                                                        "pruning.mode=branch"]),
    ]
    rows += [(f"{n} resampling", "resampling", n, [f"particle_num={n}", *rs]) for n in (2, 4, 8)]
    if args.only:
        keep = [s.strip() for s in args.only.split(",")]
        rows = [r for r in rows if any(r[0].startswith(k) for k in keep)]
    return rows


def slim(record: dict) -> dict:
    """What the summary needs of a record: everything but the per-step lists."""
    return {k: v for k, v in record.items() if k != "steps"}


def table(summaries: dict[str, dict], compute: str) -> str:
    tflop = " TFLOP / image |" if compute == "tflop" else ""
    head = (f"| configuration | chosen right | chosen PSNR | found | particle success p | best-of-N PSNR | decoder VJPs "
            f"/ image |{tflop} s / image | both modes (exact posterior) | chosen right by the posterior rule |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, s in summaries.items():
        cost = f"{s['decoder_vjp_rows_per_image']:.0f}" + (f" | {s['tflop_per_image']:.3g}" if compute == "tflop" else "")
        both = f"{100 * s['both_modes_rate']:.0f} %"
        if s.get("both_modes_expected_rate") is not None:
            both += f" ({100 * s['both_modes_expected_rate']:.0f} %)"
        lines.append(f"| {label} | {100 * s['prior_success_rate']:.0f} % | {s['prior_choice_psnr_mean']:.2f} | "
                     f"{100 * s['search_success_rate']:.0f} % | {100 * s['particle_success_rate']:.1f} % | "
                     f"{s['best_of_n_psnr_mean']:.2f} | {cost} | {s['time_s_per_image']:.1f} | {both} | "
                     f"{100 * s['choice_success_rate']['posterior']:.0f} % |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], families: dict[str, str], compute: str, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    key = "tflop_per_image" if compute == "tflop" else "decoder_vjp_rows_per_image"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    markers = dict(zip(dict.fromkeys(families.values()), "osD^vx*"))
    for ax, metric, name in ((axes[0], "search_success_rate", "found (some particle in the class)"),
                             (axes[1], "prior_success_rate", "chosen right (no ground truth)")):
        for family in dict.fromkeys(families.values()):
            pts = sorted((s[key], s[metric]) for label, s in summaries.items() if families[label] == family)
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker=markers[family], label=family)
        indep = [s for label, s in summaries.items() if families[label] == "independent"]
        if indep and metric == "search_success_rate":
            one = min(indep, key=lambda s: s["particles"])
            p, cost = one["particle_success_rate"], one[key] / one["particles"]
            ns = [1, 2, 3, 4, 5, 6, 7, 8]
            ax.plot([n * cost for n in ns], [100 * (1 - (1 - p) ** n) for n in ns], "k:",
                    label=f"1 - (1 - p)^N, p = {100 * p:.0f} %")
        ax.set_xscale("log")
        costs = sorted({round(s[key], 6) for s in summaries.values()})
        ax.set_xticks([c for i, c in enumerate(costs) if i == 0 or c > 1.3 * costs[i - 1]])
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("TFLOP per image" if compute == "tflop" else "decoder VJPs per image")
        ax.set_ylabel(f"{name}, % of measurements")
        ax.grid(alpha=0.3)
    handles = [h for ax in axes for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in axes for lab in ax.get_legend_handles_labels()[1]]
    unique = dict(zip(labels, handles))
    axes[1].legend(unique.values(), unique.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(args) -> dict:
    torch.set_num_threads(1)    # the machine is shared
    configs = methods(args)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfgs = {label: compose("default", overrides=[*stack(args.model), *o, f"num_eval_images={args.images}",
                                                     f"data.start_index={args.start}", "save_images=false",
                                                     *args.overrides])
                for label, _, _, o in configs}
    base = next(iter(cfgs.values()))
    model = build_model(base.model, "cpu").float()
    operator = build_operator(base.task, model.image_shape[-1])
    dataset = build_dataset(base.data, base.model, base.data.start_index, args.images)
    records = {label: [] for label in cfgs}
    t0 = time.perf_counter()
    # configurations interleaved per image so that the shared machine's load drifts over all of them alike
    for seed in args.seeds:
        for i in range(len(dataset)):
            name, gt = dataset[i]
            for label, cfg in cfgs.items():
                cfg = cfg.copy()
                cfg.seed = seed
                validate(cfg)
                rec = run_image(model, operator, name, gt, dataset.indices[i], cfg, torch.device("cpu"),
                                torch.float32)
                rec["mode_weights"] = mode_weights(cfg.model)
                records[label].append({"seed": seed, **slim(rec)})
            print(f"seed {seed} image {i} ({name}) done, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return {"model": args.model, "images": args.images, "start": args.start, "seeds": args.seeds,
            "overrides": args.overrides, "families": {label: fam for label, fam, _, _ in configs},
            "configs": {label: o for label, _, _, o in configs}, "wall_s": time.perf_counter() - t0,
            "date": time.strftime("%Y-%m-%d"), "records": records}


def merge(paths: list[str]) -> dict:
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = dict(parts[0])
    out["seeds"] = sorted({s for p in parts for s in p["seeds"]})
    if len({p["start"] for p in parts}) > 1:                  # shards by image: their images add up
        out["images"] = sum(p["images"] for p in parts)
    out["wall_s"] = sum(p["wall_s"] for p in parts)
    out["records"] = {label: [r for p in parts for r in p["records"].get(label, [])] for label in parts[0]["records"]}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="two_mode", choices=sorted(STACKS))
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--start", type=int, default=0, help="first image of the data set")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--prune-t", type=int, default=200)
    ap.add_argument("--rep-scale", type=float, default=0.3, help="score-relative repulsion strength")
    ap.add_argument("--pg-scale", type=float, default=1.0, help="Particle Guidance strength")
    ap.add_argument("--pg-sigma-min", type=float, default=1.0)
    ap.add_argument("--rs-interval", type=int, default=5)
    ap.add_argument("--rs-start", type=int, default=900)
    ap.add_argument("--rs-end", type=int, default=200)
    ap.add_argument("--rs-temperature", type=float, default=0.2)
    ap.add_argument("--only", default="", help="comma list of label prefixes to run (e.g. '4 independent,4 resampling')")
    ap.add_argument("--merge", nargs="+", default=None, help="study JSON files to merge instead of running")
    ap.add_argument("--out", default=None, help="JSON path (default results/study_particles_<model>.json)")
    ap.add_argument("--plot", default=None, help="PNG of success against compute")
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for every configuration")
    args = ap.parse_args(argv)
    study = merge(args.merge) if args.merge else run(args)
    summaries = {label: summarize(recs) for label, recs in study["records"].items() if recs}
    compute = "tflop" if all(s.get("tflop_per_image") for s in summaries.values()) else "vjp"
    text = table(summaries, compute)
    print(text)
    if not args.merge or args.out:
        out = Path(args.out or ROOT / "results" / f"study_particles_{study['model']}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**study, "summary": summaries, "table": text}, indent=1, default=str))
        print(f"wrote {out}", file=sys.stderr)
    if args.plot:
        n = len(next(iter(study["records"].values())))
        plot(summaries, study["families"], compute, Path(args.plot),
             f"{study['model']}: {n} measurements ({study['images']} images x seeds {study['seeds']}), "
             f"{study['date']}")
        print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
