"""Comparison table (Markdown, CSV, LaTeX) and plots from the metric.json files of any set of runs.

`python parse_metrics.py RUN_DIR [RUN_DIR ...] [--reference RUN_DIR] [--all] [--format md|csv|latex] [--out DIR]
[--group config|none]`

By default a short headline table: the settings that differ between the experiments, how often the tool's answer
is right and how often some particle found the image (95 % intervals clustered by image), DAPS's best-of-N PSNR and the
compute; `--all` adds every other column (failure kinds, mode coverage, PSNR up to symmetry, phases, memory, each
stage's own) and the independent success curve. `--out DIR` also writes images.csv (every measurement's modes,
answer and trust label) and the plots. Then every image whose
answer is not `determined` (how far to trust it, without the ground truth: docs/workflow.md says what to do).
`--reference RUN_DIR` adds each experiment's paired differences against that one on the measurements they share
(same images and seeds: the same y), with intervals and exact tests clustered by image (analysis/paired.py).

A RUN_DIR is a run folder (holding metric.json), a metric.json, or any folder above runs (searched recursively).
Runs in experiment folders of the same name (the run folder's parent, e.g. exp1_repulsion/) whose resolved configs
are equal except for the keys that only pick images or seeds or say where to write (data.start_index,
num_eval_images, seed, name, save_dir, resume, overwrite, save_images, and any --ignore-key) are shards of one
experiment: their images are merged by (seed, index) (duplicates and gaps are reported on stderr) and form one row.
Every number comes from evaluation.summary.summarize over the merged per-image records, the same function that
writes each metric.json's summary block.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from readout.load import InputError, find_metric_files, load_experiments
from readout.plots import plot_all
from readout.tables import FORMATS, format_headline, format_images, format_notes, format_paired, format_trust


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Shards of one experiment (same experiment folder name, equal configs but "
                                        "for data.start_index / num_eval_images / name / save_dir) are merged "
                                        "into one row.")
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                    help="run folders, metric.json files, or folders above them")
    ap.add_argument("--format", choices=sorted(FORMATS), default="md", help="table format (default md)")
    ap.add_argument("--all", action="store_true", help="every column, not just the headline (csv and latex always "
                                                       "have every column)")
    ap.add_argument("--out", type=Path, help="also write the table and plots (PNG) into this folder")
    ap.add_argument("--group", choices=("config", "none"), default="config",
                    help="config: merge the shards of an experiment (default); none: a row per run")
    ap.add_argument("--ignore-key", action="append", default=[], metavar="KEY",
                    help="another dotted config key that may differ between shards of one experiment (repeatable)")
    ap.add_argument("--reference", metavar="RUN_DIR", default=None,
                    help="compare every experiment with this one, paired on their shared measurements")
    ap.add_argument("--margin", type=float, default=None, metavar="POINTS",
                    help="--reference: the equivalence margin of the binary endpoints, declared before measuring; a "
                         "difference whose whole interval lies within +-POINTS reads `equivalent` (default: none)")
    args = ap.parse_args(argv)
    if args.margin is not None and not (0 < args.margin < 100):
        print(f"error: --margin is a number of points between 0 and 100, not {args.margin:g}", file=sys.stderr)
        return 2
    try:
        experiments = load_experiments(args.run_dirs + ([args.reference] if args.reference else []), args.group,
                                       args.ignore_key)
        reference = None
        if args.reference:
            wanted = {r.resolve() for r in find_metric_files([args.reference])}
            reference = next((e for e in experiments if any((r["dir"] / "metric.json").resolve() in wanted
                                                            for r in e["runs"])), None)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    formatter, filename = FORMATS[args.format]
    if args.format == "md" and not args.all:
        formatter = format_headline
    text = formatter(experiments)
    if args.format == "md":
        text += format_trust(experiments) + format_notes(experiments)
        if reference is not None:
            text += "\n" + format_paired(experiments, reference, args.margin)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / filename).write_text(text)
        (args.out / "images.csv").write_text(format_images(experiments))
        written = plot_all(experiments, args.out)
        print(f"wrote {args.out / filename} and {len(written)} plot(s) under {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
