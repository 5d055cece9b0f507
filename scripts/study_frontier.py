"""The compute frontier: do interacting particles give four independent runs' answers for less compute, or better
answers for the same? Every configuration runs on the same measurements (images x seeds, a paired design) of a
mini LDM's decoded ground truths; each is compared with four independent particles by a 95 % interval and the exact
McNemar test (evaluation/paired.py). docs/particle_search.md has the results.

    OMP_NUM_THREADS=1 python scripts/study_frontier.py --model naturalldm run &     # one worker per core: they
    OMP_NUM_THREADS=1 python scripts/study_frontier.py --model naturalldm run       # share the jobs
    python scripts/study_frontier.py --model naturalldm report --plot docs/naturalldm_frontier.png

Each (configuration, seed) is an ordinary run folder under --out (default results/frontier/<model>): an interrupted
study continues where it stopped; `report` reads whatever has finished.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.paired import BINARY, choices_table, compare, table  # noqa: E402
from pipeline.stacks import STACKS  # noqa: E402
from pipeline.study import Configuration, compose_config, records, run_study  # noqa: E402

REFERENCE = "4 independent"
FULL, SMALL = 50, 30              # images per seed: 100 measurements at four runs' budget, 60 elsewhere (2 seeds)
# the resampling window where the loss tells failing particles apart on decoded truths (scripts/loss_predicts_failure.py
# on held-out tuning images, docs/resampling.md): natural, within-image AUC 0.6 or below above t = 600 and 0.67 to 0.93
# from t = 560 down (crops 50-63, seeds 0 and 1); digits, 0.2 to 0.73 above t = 240 and 0.8 to 0.93 from t = 200
# down (test digits 200-219, seed 0)
RESAMPLING = {"naturalldm": ("resampling_interval=2", "resampling.start_t=500", "resampling.end_t=200",
                             "resampling.temperature=0.2"),
              "digits32ldm": ("resampling_interval=2", "resampling.start_t=200", "resampling.end_t=60",
                              "resampling.temperature=0.2")}


def configurations(model: str) -> list[Configuration]:
    """Every configuration of the frontier, the budget of four independent runs at FULL images."""
    mcmc = compose_config(model, []).sampler.mcmc.num_steps
    c = [Configuration(f"{n} independent", "independent", (f"particle_num={n}",), FULL if n == 4 else SMALL)
         for n in (1, 2, 4, 8)]
    c += [Configuration("2 x 2 MCMC steps", "longer runs", ("particle_num=2", f"sampler.mcmc.num_steps={2 * mcmc}"),
                        FULL),
          Configuration("1 x 4 MCMC steps", "longer runs", ("particle_num=1", f"sampler.mcmc.num_steps={4 * mcmc}"),
                        FULL),
          Configuration("4 -> 2 pruned at t=200", "pruning", ("particle_num=4", "pruning_step=200",
                                                             "pruning_keep=2"), FULL),
          Configuration("4 -> 1 pruned at t=400", "pruning", ("particle_num=4", "pruning_step=400",
                                                             "pruning_keep=1"), SMALL),
          Configuration("8 -> 2 pruned at t=400", "pruning", ("particle_num=8", "pruning_step=400",
                                                             "pruning_keep=2"), SMALL),
          Configuration("8 -> 4 -> 2 -> 1 halving at t=600,400,200", "successive halving",
                        ("particle_num=8", "pruning_step=[600,400,200]", "pruning_keep=[4,2,1]"), FULL),
          Configuration("6 -> 3 -> 1 halving at t=400,200", "successive halving",
                        ("particle_num=6", "pruning_step=[400,200]", "pruning_keep=[3,1]"), FULL),
          Configuration("4 -> 2 -> 1 halving at t=600,400", "successive halving",
                        ("particle_num=4", "pruning_step=[600,400]", "pruning_keep=[2,1]"), SMALL),
          Configuration("4 -> 2 -> 4 branched at t=200", "branching",
                        ("particle_num=4", "pruning_step=200", "pruning_keep=2", "pruning.mode=branch"), FULL),
          Configuration("4 resampling", "resampling", ("particle_num=4", *RESAMPLING[model]), FULL),
          Configuration("4 repulsive 0.3 (score-relative)", "repulsion", ("particle_num=4", "repulsion_scale=0.3"),
                        FULL),
          # Particle Guidance at the strength that pushes about as hard as score-relative 0.3 on the mini LDMs
          # (repulsion / score ratio 0.1 to 0.4 in the first steps; docs/particle_search.md)
          Configuration("4 Particle Guidance 3e5", "particle guidance",
                        ("particle_num=4", "repulsion_scale=3e5", "repulsion.mode=particle_guidance",
                         "repulsion.sigma_min=1.0"), FULL)]
    return c


def verdict(comparisons: dict, reference) -> list[str]:
    """The targets stated before measuring (issue 31): four runs' answers for at most 60 % of their compute, found and
    chosen right each at most 3 points below; or +10 points of chosen right at <= 5 % more compute with the paired
    interval above zero."""
    ref_tflop = comparisons[reference].means["tflop"]
    lines = []
    for label, c in comparisons.items():
        if label == reference:
            continue
        ratio = c.means["tflop"] / ref_tflop
        cheaper = ratio <= 0.6 and all(c.diffs[k][0] >= -0.03 for k in BINARY)
        better = ratio <= 1.05 and c.diffs["chosen_right"][0] >= 0.10 and c.diffs["chosen_right"][1] > 0
        if cheaper or better:
            lines.append(f"{label} meets the target ({'cheaper' if cheaper else 'better'}): {100 * ratio:.0f} % of the "
                         f"compute, chosen right {100 * c.diffs['chosen_right'][0]:+.0f} points")
    return lines or ["no configuration meets either target"]


def plot(comparisons: dict, families: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    markers = dict(zip(dict.fromkeys(families.values()), "osD^v<>xP*"))
    for ax, name, text in ((axes[0], "found", "found (some particle in the class)"),
                           (axes[1], "chosen_right", "chosen right (no ground truth)")):
        for family in dict.fromkeys(families.values()):
            pts = sorted((c.means["tflop"], *c.rates[name]) for label, c in comparisons.items()
                         if families[label] == family and c.n)
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [100 * p[1] for p in pts]
            err = [[100 * (p[1] - p[2]) for p in pts], [100 * (p[3] - p[1]) for p in pts]]
            ax.errorbar(x, y, yerr=err, marker=markers[family], capsize=3, label=family)
        ax.set_xscale("log")
        ax.set_xticks(sorted(c.means["tflop"] for label, c in comparisons.items()
                             if families[label] == "independent" and c.n))       # 1, 2, 4, 8 runs' compute
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("TFLOP per image (log)")
        ax.set_ylabel(f"{text}, % of measurements")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def report(args, configs) -> None:
    recs = records(args.out, configs, args.seeds)
    missing = [c.label for c in configs if not recs[c.label]]
    comparisons = {c.label: compare(recs[c.label], recs[REFERENCE]) for c in configs if recs[c.label]}
    lines = [f"{args.model}, decoded ground truths, images {args.start}-{args.start + FULL - 1} x seeds {args.seeds}; "
             f"{time.strftime('%Y-%m-%d')}; 95 % intervals (Wilson; paired bootstrap for differences), exact McNemar "
             f"p against {REFERENCE}", "", table(comparisons, REFERENCE), ""]
    if missing:
        lines.append(f"not run yet: {', '.join(missing)}")
    if REFERENCE in comparisons:
        lines += verdict(comparisons, REFERENCE)
    lines += ["", "Where the answer is won or lost (shares of final particles; rates of measurements):", "",
              choices_table({c.label: recs[c.label] for c in configs})]
    text = "\n".join(lines)
    print(text)
    summary = {label: {"n": c.n, "rates": c.rates, "means": c.means, "diffs": c.diffs, "p_values": c.p_values}
               for label, c in comparisons.items()}
    (args.out / "frontier.json").write_text(json.dumps({"model": args.model, "seeds": args.seeds, "start": args.start,
                                                        "date": time.strftime("%Y-%m-%d"), "table": text,
                                                        "comparisons": summary}, indent=1,
                                                       default=lambda v: None if isinstance(v, float) and
                                                       math.isnan(v) else v))
    if args.plot:
        n = comparisons[REFERENCE].n if REFERENCE in comparisons else 0
        plot(comparisons, {c.label: c.family for c in configs}, Path(args.plot),
             f"{args.model}: decoded truths, {n} measurements at four runs' budget, {time.strftime('%Y-%m-%d')}; "
             f"bars: 95 % Wilson intervals")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("run", "report"))
    ap.add_argument("--model", default="naturalldm", choices=sorted(STACKS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--start", type=int, default=0, help="first image of the data set")
    ap.add_argument("--only", default="", help="comma list of configuration labels to run")
    ap.add_argument("--images-per-batch", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args(argv)
    args.out = args.out or ROOT / "results" / "frontier" / args.model
    configs = configurations(args.model)
    if args.what == "run":
        chosen = [c for c in configs if not args.only or c.label in args.only.split(",")]
        run_study(args.model, chosen, args.seeds, args.start, args.out, args.images_per_batch)
    else:
        report(args, configs)


if __name__ == "__main__":
    main()
