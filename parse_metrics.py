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
import csv
import io
import json
import math
import os
import re
import sys
from pathlib import Path

import numpy as np

from evaluation.failures import KINDS
from analysis.paired import rate
from evaluation.summary import summarize
from evaluation.trajectory import committed_fraction
from stages import ordered
from tracking.metric_file import read_json

# keys that choose which images a run does or where it writes, never how it samples
# (seed: a run's measurements are (seed, image) pairs; several seeds of one setting are one experiment, its seeds
# clustered by image where statistics are computed)
SHARD_KEYS = ("data.start_index", "num_eval_images", "seed", "name", "save_dir", "resume", "overwrite", "save_images")


class InputError(ValueError):
    """Nothing to read, or an unreadable metric.json: reported in one line, exit status 2."""


# ---------------------------------------------------------------- reading and grouping

def find_metric_files(paths) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif (p / "metric.json").is_file():
            files.append(p / "metric.json")
        elif p.is_dir():
            found = sorted(p.rglob("metric.json"))
            if not found:
                raise InputError(f"no metric.json under {p}")
            files += found
        else:
            raise InputError(f"{p} does not exist")
    return list(dict.fromkeys(f.resolve() for f in files))  # a run named twice is read once


def load_run(path: Path) -> dict:
    try:
        metric = read_json(path)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    if not isinstance(metric, dict) or not isinstance(metric.get("images"), list):
        raise InputError(f"{path} is not a run's metric.json (no 'images' list)")
    run_dir = path.parent
    return {"dir": run_dir, "label": f"{run_dir.parent.name}/{run_dir.name}", "metric": metric}


def _drop(config: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.get(key)
        if not isinstance(config, dict):
            return
    config.pop(last, None)


def experiment_key(config: dict, ignore=(), folder: str = "") -> str:
    """Equal for shards of one experiment: same experiment folder, same config but for the shard keys."""
    config = json.loads(json.dumps(config))
    for key in (*SHARD_KEYS, *ignore):
        _drop(config, key)
    return json.dumps([folder, config], sort_keys=True)


def group_runs(runs: list[dict], mode: str = "config", ignore=()) -> list[list[dict]]:
    """Runs of one experiment together, in the order the first of each was given."""
    if mode == "none":
        return [[r] for r in runs]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = experiment_key(r["metric"].get("config", {}), ignore, r["dir"].parent.name)
        groups.setdefault(key, []).append(r)
    return list(groups.values())


def _ranges(indices) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    out, run = [], []
    for i in sorted(indices):
        if run and i != run[-1] + 1:
            out.append(run)
            run = []
        run.append(i)
    if run:
        out.append(run)
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in out)


def _expected_indices(config: dict) -> set[int]:
    start = (config.get("data") or {}).get("start_index")
    count = config.get("num_eval_images")
    return set(range(start, start + count)) if isinstance(start, int) and isinstance(count, int) else set()


def merge_images(group: list[dict], label: str, warn=None) -> tuple[list[dict], dict[tuple, Path]]:
    """The group's per-image records (each with its run's `seed`) merged by (seed, image index), first occurrence
    kept, and each measurement's run dir."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    by_key, source = {}, {}
    expected: dict = {}
    for r in group:
        seed = r["metric"].get("config", {}).get("seed")
        expected.setdefault(seed, set()).update(_expected_indices(r["metric"].get("config", {})))
        for im in r["metric"]["images"]:
            key = (seed, im["index"])
            if key in by_key:
                seen = f"image {key[1]}" + ("" if len(expected) == 1 else f" of seed {seed}")
                warn(f"{label}: {seen} appears in {source[key]} and {r['dir']}; keeping the first")
                continue
            by_key[key], source[key] = {**im, "seed": seed}, r["dir"]
    for seed, want in expected.items():
        have = {i for s, i in by_key if s == seed}
        if have or want:
            span = set(range(min(have | want), max(have | want) + 1))
            missing = (want | span) - have
            if missing:
                of = "" if len(expected) == 1 else f" of seed {seed}"
                warn(f"{label}: missing image(s) {_ranges(missing)}{of} (an unfinished run? finish it with "
                     f"resume=true, or run the shard that covers them)")
    keys = sorted(by_key, key=lambda k: (k[1], -1 if k[0] is None else k[0]))
    return [by_key[k] for k in keys], {k: source[k] for k in keys}


def group_label(group: list[dict]) -> str:
    """A run's parent/name; for several shards, their common prefix cut at a '_' (e.g. '…_n10_s0' -> '…_n10')."""
    labels = [r["label"] for r in group]
    if len(labels) == 1:
        return labels[0]
    prefix = os.path.commonprefix(labels)
    if not all(len(lab) == len(prefix) for lab in labels):
        cut = max(prefix.rfind("_"), prefix.rfind("/"))
        prefix = prefix[:cut] if cut > prefix.rfind("/") else prefix.rstrip("_/")
    return prefix or labels[0]


def load_experiments(paths, mode="config", ignore=(), warn=None) -> list[dict]:
    runs = [load_run(f) for f in find_metric_files(paths)]
    experiments, seen = [], {}
    for group in group_runs(runs, mode, ignore):
        label = group_label(group)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:  # two experiments that would print alike
            label = f"{label} #{seen[label]}"
        images, sources = merge_images(group, label, warn)
        experiments.append({"label": label, "runs": group, "images": images, "sources": sources,
                            "summary": summarize(images)})
    return experiments


# ---------------------------------------------------------------- the table

def phases_of(experiments) -> list[str]:
    """Every phase of the experiments, in the order they ran (each summary lists its phases so; the stages and
    samplers name them, this file does not)."""
    return list(dict.fromkeys(ph for e in experiments for ph in (e["summary"].get("phase_time_s") or {})))


# what a memory column measures (tracking/tracker.py): the GPU's peak per phase, or the CPU process's lifetime peak
MEMORY = {"cuda_max_allocated": "peak MB (GPU max allocated, per phase)",
          "peak_rss": "peak MB (CPU process peak RSS, lifetime)"}


def memory_kind_of(experiments) -> str | None:
    kinds = {e["summary"].get("memory_kind") for e in experiments} - {None}
    return kinds.pop() if len(kinds) == 1 else None


def columns(phases, memory_kind: str | None = None) -> list[tuple]:
    """(csv key, header, value getter from a summary, kind) in table order."""
    def get(key):
        return lambda s: s.get(key)

    def phase(block, ph):
        return lambda s: (s.get(block) or {}).get(ph)

    cols = [
        ("images", "images", get("images"), "int"),
        ("particles", "particles", get("particles"), "g"),
        # what a user gets without the ground truth, then the search (up to rotation and shifts)
        ("prior_success_rate", "chosen right", get("prior_success_rate"), "pct"),
        ("prior_choice_psnr_mean", "answer PSNR", get("prior_choice_psnr_mean"), "db"),
        ("search_success_rate", "found", get("search_success_rate"), "pct"),
        ("particle_success_rate", "particle success p", get("particle_success_rate"), "pct"),
        ("loss_choice_in_class_rate", "lowest loss found", get("loss_choice_in_class_rate"), "pct"),
        # best-of-N as DAPS reports it: max PSNR, max SSIM, min LPIPS per image, each on its own
        ("best_of_n_psnr_mean", "DAPS best-of-N PSNR", get("best_of_n_psnr_mean"), "pm:best_of_n_psnr_std"),
        ("best_of_n_psnr_std", None, get("best_of_n_psnr_std"), "db"),
        ("best_of_n_ssim_mean", "DAPS best-of-N SSIM", get("best_of_n_ssim_mean"), "pm3:best_of_n_ssim_std"),
        ("best_of_n_ssim_std", None, get("best_of_n_ssim_std"), "3f"),
        ("best_of_n_lpips_mean", "DAPS best-of-N LPIPS", get("best_of_n_lpips_mean"), "pm3:best_of_n_lpips_std"),
        ("best_of_n_lpips_std", None, get("best_of_n_lpips_std"), "3f"),
        # up to the measurement's symmetries (a particle in the 180° mode is not a failure), beside DAPS's unturned
        ("best_psnr_sym_mean", "best PSNR up to symmetry", get("best_psnr_sym_mean"), "pm:best_psnr_sym_std"),
        ("best_psnr_sym_std", None, get("best_psnr_sym_std"), "db"),
        ("particle_psnr_sym_std", "PSNR std over particles up to symmetry", get("particle_psnr_sym_std"), "db"),
        ("mean_psnr", "mean PSNR (unturned)", get("mean_psnr"), "db"),
        ("particle_psnr_std", "PSNR std over particles (unturned, DAPS)", get("particle_psnr_std"), "db"),
        # mode coverage: shares of the final particles in each mode
        *[(f"mode_{m}", f"particles {m}" + (" deg" if m != "fail" else ""),
           lambda s, m=m: (s.get("mode_shares") or {}).get(m), "pct") for m in ("0", "180", "fail")],
        ("success_rate", "upright found (oracle)", get("success_rate"), "pct"),
        ("both_modes_rate", "both modes", get("both_modes_rate"), "pct"),
        ("both_modes_expected_rate", "both modes, exact posterior", get("both_modes_expected_rate"), "pct"),
        ("fail_rate", "fail", get("fail_rate"), "pct"),
        # why particles failed (evaluation/failures.py), shares of all final particles, and the images the model
        # can make at all
        *[(f"failure_{k}", f"failed: {k}", lambda s, k=k: (s.get("failure_kinds") or {}).get(k), "pct")
          for k in KINDS],
        ("representable_rate", "representable", get("representable_rate"), "pct"),
        ("chosen_psnr_mean", "lowest-loss PSNR", get("chosen_psnr_mean"), "db"),
        ("loss_choice_gt_rate", "lowest loss upright", get("loss_choice_gt_rate"), "pct"),
        ("time_s_per_image", "time/image s", get("time_s_per_image"), "2f"),
        ("decoder_vjp_rows_per_image", "decoder VJPs/image", get("decoder_vjp_rows_per_image"), "0f"),
        ("unet_rows_per_image", "UNet rows/image", get("unet_rows_per_image"), "0f"),
        ("unet_vjp_rows_per_image", "UNet VJPs/image", get("unet_vjp_rows_per_image"), "0f"),
        ("resample_iterations_per_image", "ReSample optimisation steps/image", get("resample_iterations_per_image"),
         "0f"),
        ("resample_optimisation_time_s_per_image", "ReSample optimisation time/image s",
         get("resample_optimisation_time_s_per_image"), "2f"),
        ("tflop_per_image", "TFLOP/image", get("tflop_per_image"), "3g"),
        ("explore_pairwise_distance_mean", "pairwise latent distance (explore)", get("explore_pairwise_distance_mean"),
         "3g"),
    ]
    cols += [(f"time_{ph}_s", f"{ph} time s", phase("phase_time_s", ph), "2f") for ph in phases]
    what = MEMORY.get(memory_kind, "peak MB")
    cols += [(f"peak_memory_{ph}_mb", f"{ph} {what}", phase("phase_peak_memory_mb", ph), "0f") for ph in phases]
    cols += [(key, header, get(key), kind) for stage in ordered() for key, header, kind in stage.columns]
    cols.append(("mode_commit_t_median", "mode commit t", get("mode_commit_t_median"), "0f"))
    return cols


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differing_settings(experiments, most: int = 4) -> list[str]:
    """Per experiment, the settings whose values differ between the experiments (top-level flags first, at most
    `most`, then how many more); its label where nothing differs."""
    flats = [_flat(e["runs"][0]["metric"].get("config", {})) for e in experiments]
    for f in flats:
        for key in SHARD_KEYS:
            f.pop(key, None)
    keys = sorted({k for f in flats for k in f if len({json.dumps(g.get(k)) for g in flats}) > 1},
                  key=lambda k: (k.count("."), k))
    out = []
    for e, f in zip(experiments, flats):
        shown = [f"{k}={json.dumps(f.get(k)) if isinstance(f.get(k), str) else f.get(k)}" for k in keys[:most]]
        more = f" (+{len(keys) - most} more)" if len(keys) > most else ""
        out.append(", ".join(shown) + more if shown else e["label"])
    return out


def rate_with_interval(images: list[dict], hit) -> tuple[float | None, float, float]:
    """The share of measurements where hit(image), with its 95 % interval clustered by image (several seeds of one
    image are not independent: analysis/paired.rate)."""
    if not images:
        return None, math.nan, math.nan
    e = rate([(im.get("seed"), im["index"]) for im in images], np.array([float(bool(hit(im))) for im in images]))
    return e.value, e.low, e.high


HEADLINE = (("chosen right", lambda im: im["best_by_prior"]["mode"] == "0"), ("found", lambda im: im["found"]))


def format_headline(experiments) -> str:
    """The short table: settings that differ, images, chosen right and found with 95 % intervals, best-of-N PSNR,
    TFLOP per image."""
    lines = ["| settings | images | chosen right [95 % CI] | found [95 % CI] | best PSNR up to symmetry | "
             "best-of-N PSNR (DAPS, unturned) | TFLOP/image |", "|---|---|---|---|---|---|---|"]
    for e, label in zip(experiments, differing_settings(experiments)):
        s = e["summary"]
        cells = [label, str(s.get("images", 0))]
        for _, hit in HEADLINE:
            rate, low, high = rate_with_interval(e["images"], hit)
            cells.append("" if rate is None else f"{100 * rate:.0f} % [{100 * low:.0f}, {100 * high:.0f}]")
        cells += [_fmt(s.get("best_psnr_sym_mean"), "db", s), _fmt(s.get("best_of_n_psnr_mean"), "db", s),
                  _fmt(s.get("tflop_per_image"), "3g", s)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_paired(experiments, reference: dict, margin: float | None = None) -> str:
    """Each experiment against the reference on the measurements they share (same seed and image: the same y): its
    paired differences in found, the lowest-loss particle in the class, chosen right and the best PSNR up to
    symmetry, with 95 % intervals and tests clustered by image (analysis/paired.py, as the studies); margin: the
    binary endpoints' equivalence margin in points, declared before measuring (None: no verdict is `equivalent`).
    An experiment that shares none is named as such, one whose records come from code versions that give other
    results than the reference's is not compared."""
    from analysis.paired import BINARY, differences_table, relative_cost
    from analysis.study_report import compared

    margins = None if margin is None else {k: margin / 100 for k in BINARY}
    rows, apart, refused = [], [], []
    ref_cost = relative_cost(reference["images"])
    for e in experiments:
        if e is reference:
            continue
        c, why = compared(e["images"], reference["images"], margins)
        if why:
            refused.append(f"{e['label']}: {why}")
            continue
        if not c.n:
            apart.append(e["label"])
            continue
        rows.append((e["label"], c, relative_cost(e["images"]) / ref_cost))
    text = f"Paired against {reference['label']} (configuration − reference; † = not on every measurement of " \
           f"the reference; equivalence margin: {'none declared' if margin is None else f'±{margin:g} points'}):\n\n"
    text += differences_table(rows) + "\n" if rows else "(no experiment shares a measurement with it)\n"
    if apart:
        text += (f"\nno measurement shared with the reference (other images or seeds, so no paired comparison): "
                 f"{', '.join(apart)}\n")
    if refused:
        text += "\nnot compared: " + "; ".join(refused) + "\n"
    return text


def format_trust(experiments) -> str:
    """Per experiment, the images whose answer is not `determined`, with their label: the ones to act on."""
    from evaluation.trust import not_determined

    lines = []
    for e in experiments:
        todo = not_determined(e["images"])
        if not todo:
            continue
        seeds = {im.get("seed") for im in e["images"]}
        by_label: dict[str, list] = {}
        for im in e["images"]:
            lab = (im.get("trust") or {}).get("label")
            if lab and lab != "determined":
                name = im["index"] if len(seeds) == 1 else f"{im['index']}/s{im['seed']}"
                by_label.setdefault(lab, []).append(name)
        lines.append(f"{e['label']}: not determined: " + "; ".join(
            f"{lab} {', '.join(map(str, ids))}" for lab, ids in by_label.items()))
    if not lines:
        return ""
    return ("\nAnswers to act on (docs/workflow.md: no fit -> more particles, or new particles on the same y with "
            "--particle_offset N; ambiguous -> the measurement cannot decide, keep both; orientation undetermined -> "
            "answer_rotated.png is as likely):\n" + "\n".join(lines) + "\n")


def format_notes(experiments) -> str:
    """Each stage's notes on each experiment (sampler/stage.py: Stage.notes), e.g. refine that ran no
    optimisation."""
    lines = [f"{e['label']}: {note}" for e in experiments for stage in ordered() for note in stage.notes(e["images"])]
    return ("\nNotes:\n" + "\n".join(lines) + "\n") if lines else ""


def _fmt(value, kind, summary, pm="±") -> str:
    if value is None:
        return ""
    if kind == "int":
        return str(int(value))
    if kind == "g":
        return f"{value:g}"
    if kind == "3g":                     # a mini LDM's 0.34 TFLOP and a full-size one's 5,000 alike
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if kind == "pct":
        return f"{100 * value:.0f} %"
    if kind == "db":
        return f"{value:.2f}"
    if kind.startswith("pm"):
        digits, key = (3, kind[4:]) if kind.startswith("pm3:") else (2, kind[3:])
        std = summary.get(key)
        return f"{value:.{digits}f}" + (f" {pm} {std:.{digits}f}" if std is not None else "")
    return f"{value:.{kind[0]}f}"


def table_rows(experiments, pm="±"):
    """Header and formatted rows (the ± column folds its std in; the std's own column is CSV-only)."""
    cols = [c for c in columns(phases_of(experiments), memory_kind_of(experiments)) if c[1] is not None]
    header = ["experiment", *(c[1] for c in cols)]
    rows = [[e["label"], *(_fmt(c[2](e["summary"]), c[3], e["summary"], pm) for c in cols)] for e in experiments]
    return header, rows


def format_markdown(experiments) -> str:
    header, rows = table_rows(experiments)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + format_curve(experiments)


def format_curve(experiments) -> str:
    """How many particles were needed: what N independent particles of each experiment's per-particle success p
    would find, 1 - (1 - p)^N (summary.independent_success_curve), beside what it found."""
    from evaluation.summary import CURVE_N

    lines = ["Independent success curve (N particles of success p each would find 1 − (1 − p)^N):", "",
             "| experiment | particle success p | found | " + " | ".join(f"N = {n}" for n in CURVE_N) + " |",
             "|---|---|---|" + "---|" * len(CURVE_N)]
    for e in experiments:
        s = e["summary"]
        curve = s.get("independent_success_curve") or {}
        lines.append(f"| {e['label']} | {_fmt(s.get('particle_success_rate'), 'pct', s)} | "
                     f"{_fmt(s.get('search_success_rate'), 'pct', s)} | "
                     + " | ".join(_fmt(curve.get(str(n)), "pct", s) for n in CURVE_N) + " |")
    return "\n".join(lines) + "\n"


def format_images(experiments) -> str:
    """Every measurement as a CSV row: experiment, seed, image, its particles per mode, found, the answer and its
    trust label (the per-image mode coverage)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["experiment", "seed", "index", "name", "particles_0", "particles_180", "particles_fail", "found",
                "answer_right", "answer_psnr", "trust"])
    for e in experiments:
        for im in e["images"]:
            m = im.get("modes", {})
            w.writerow([e["label"], im.get("seed"), im["index"], im.get("name"), m.get("0"), m.get("180"),
                        m.get("fail"), im["found"], im["best_by_prior"]["mode"] == "0",
                        repr(im["best_by_prior"]["psnr"]), (im.get("trust") or {}).get("label")])
    return buf.getvalue()


def format_csv(experiments) -> str:
    """Raw numbers (Python repr, so they read back exactly); empty where a run has no such value."""
    cols = columns(phases_of(experiments), memory_kind_of(experiments))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["experiment", "runs", *(c[0] for c in cols)])
    for e in experiments:
        values = [c[2](e["summary"]) for c in cols]
        w.writerow([e["label"], len(e["runs"]), *("" if v is None else repr(v) for v in values)])
    return buf.getvalue()


def _latex_escape(s: str) -> str:
    return re.sub(r"([_%&#$])", r"\\\1", s)


def format_latex(experiments) -> str:
    header, rows = table_rows(experiments, pm="$\\pm$")
    out = ["\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
           " & ".join(_latex_escape(h) for h in header) + " \\\\", "\\midrule"]
    out += [" & ".join(_latex_escape(cell) if i == 0 else cell.replace("%", "\\%") for i, cell in enumerate(r))
            + " \\\\" for r in rows]
    out += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


FORMATS = {"md": (format_markdown, "table.md"), "csv": (format_csv, "table.csv"), "latex": (format_latex, "table.tex")}


# ---------------------------------------------------------------- plots

def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")


def time_scale(totals: list[float]) -> str:
    """The time axis: linear, or log where one run's time is over 20 times another's (one long bar would flatten
    the rest)."""
    positive = [t for t in totals if t and t > 0]
    return "log" if positive and max(positive) > 20 * min(positive) else "linear"


def curve_labels(labels: list[str], series: list[list[float]]) -> list[str]:
    """Legend labels, with "(= earlier label)" on a curve equal to an earlier one: it lies exactly on top of it."""
    out = []
    for i, (label, ys) in enumerate(zip(labels, series)):
        same = next((labels[j] for j in range(i) if ys and series[j] == ys), None)
        out.append(f"{label} (= {same})" if same else label)
    return out


def over_t(images: list[dict], key: str) -> tuple[list[int], list[float]]:
    """A step fact against t, averaged over the images that record it: (t from 1000 down, means)."""
    per_t: dict[int, list[float]] = {}
    for im in images:
        for st in im.get("steps", []):
            if st.get(key) is not None:
                per_t.setdefault(st["t"], []).append(st[key])
    ts = sorted(per_t, reverse=True)
    return ts, [sum(per_t[t]) / len(per_t[t]) for t in ts]


def plot_all(experiments, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    labels = [e["label"] for e in experiments]
    phases = phases_of(experiments)
    written = []

    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "v", "D", "x"]

    def curve_style(i):
        """Runs that share a seed can lie exactly on top of each other: line style, marker and staggered marker
        positions tell them apart (and curve_labels says so)."""
        return {"linestyle": styles[i % len(styles)], "marker": markers[i % len(markers)], "markersize": 4,
                "alpha": 0.85, "markevery": (i % 4, 4)}

    def legend_outside(ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)

    def save(fig, name):
        path = out / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    # time per phase, stacked; peak memory per phase, side by side
    width = max(5.0, 1.1 * len(labels))
    fig, ax = plt.subplots(figsize=(width, 4))
    totals = [sum(((e["summary"].get("phase_time_s") or {}).get(ph) or 0.0) for ph in phases) for e in experiments]
    scale = time_scale(totals)
    # on a log axis the stack starts a little above 0 (log 0 is not drawn)
    floor = min([t for t in totals if t > 0] or [1.0]) / 100 if scale == "log" else 0.0
    bottom = [floor] * len(labels)
    for ph in phases:
        vals = [(e["summary"].get("phase_time_s") or {}).get(ph) or 0.0 for e in experiments]
        ax.bar(range(len(labels)), vals, bottom=bottom, label=ph)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_yscale(scale)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("time per image (s)" + (", log scale" if scale == "log" else ""))
    ax.set_title("time per image, by phase")
    legend_outside(ax)
    save(fig, "time_per_phase.png")

    # per-phase memory exists only on CUDA (max allocated, reset at each phase); a CPU's peak RSS is one number
    # for the whole process, so no per-phase plot is drawn from it
    kinds = {p.get("memory_kind") for e in experiments for im in e["images"] for p in im["phases"].values()}
    if kinds != {"cuda_max_allocated"}:
        print("note: memory_per_phase.png is not drawn: these runs' memory is the CPU process's lifetime peak RSS, "
              "which cannot be reset per phase (GPU runs record their peak per phase)", file=sys.stderr)
    else:
        fig, ax = plt.subplots(figsize=(width, 4))
        bar = 0.8 / max(1, len(phases))
        for j, ph in enumerate(phases):
            vals = [(e["summary"].get("phase_peak_memory_mb") or {}).get(ph) or 0.0 for e in experiments]
            ax.bar([i + (j - (len(phases) - 1) / 2) * bar for i in range(len(labels))], vals, width=bar, label=ph)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("peak GPU memory (MB, torch.cuda.max_memory_allocated)")
        ax.set_title("peak memory, by phase")
        legend_outside(ax)
        save(fig, "memory_per_phase.png")

    # memory over the steps, for any run: each step's own figure (GPU: the peak allocated within the step; CPU: the
    # resident size at its end, tracking/tracker.py), averaged over images, against t
    fig, ax = plt.subplots(figsize=(7, 4))
    curves = [over_t(e["images"], "memory_mb") for e in experiments]
    if any(ts for ts, _ in curves):
        for i, ((ts, ys), label) in enumerate(zip(curves, curve_labels(labels, [c[1] for c in curves]))):
            if ts:
                ax.plot(ts, ys, label=label, **curve_style(i))
        ax.set_xlim(1000, 0)
        ax.set_xlabel("diffusion time t")
        gpu = kinds == {"cuda_max_allocated"}
        ax.set_ylabel("MB per step: " + ("peak allocated within the step (GPU)" if gpu else
                                         "resident size at the step's end (CPU)"))
        ax.set_title("memory over the steps")
        legend_outside(ax)
        save(fig, "memory_per_step.png")
    else:
        plt.close(fig)

    # the headline: how often the tool's answer is right and some particle found the image, 95 % intervals clustered
    # by image
    settings = differing_settings(experiments)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels)), 4))
    for j, (name, hit) in enumerate(HEADLINE):
        rates = [rate_with_interval(e["images"], hit) for e in experiments]
        x = [i + (j - 0.5) * 0.3 for i in range(len(labels))]
        y = [100 * (r[0] or 0.0) for r in rates]
        err = [[100 * ((r[0] or 0.0) - r[1]) for r in rates], [100 * (r[2] - (r[0] or 0.0)) for r in rates]]
        ax.bar(x, y, width=0.3, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(labels)), settings, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of images (95 % interval clustered by image)")
    ax.set_title("chosen right (no ground truth) and found, per experiment")
    legend_outside(ax)
    save(fig, "headline.png")

    # mean pairwise latent distance against t, averaged over images: one panel per latent space (distances of two
    # models' latents are not comparable)
    spaces: dict[str, list[int]] = {}
    for i, e in enumerate(experiments):
        model = e["runs"][0]["metric"].get("config", {}).get("model", {})
        spaces.setdefault(json.dumps(model, sort_keys=True), []).append(i)
    fig, axes = plt.subplots(1, len(spaces), figsize=(6 * len(spaces), 4), squeeze=False)
    for ax, (space, members) in zip(axes[0], spaces.items()):
        spreads = [over_t(experiments[i]["images"], "mean_pairwise_distance") for i in members]
        names = curve_labels([labels[i] for i in members], [sp[1] for sp in spreads])
        for i, ((ts, ys), label) in enumerate(zip(spreads, names)):
            if ts:
                ax.plot(ts, ys, label=label, **curve_style(i))
        model = json.loads(space)
        ax.set_xlim(1000, 0)
        ax.set_xlabel("diffusion time t")
        ax.set_ylabel("mean pairwise latent distance")
        ax.set_title(f"particle spread: model {model.get('name')} {model.get('ckpt_path') or ''}".strip(),
                     fontsize=8)
        legend_outside(ax)
    save(fig, "pairwise_distance.png")

    # eval.per_step runs: when do particles settle in their final mode (is a pruning step late enough?)
    curves = {e["label"]: [committed_fraction(im) for im in e["images"]] for e in experiments}
    curves = {label: [c for c in cs if c] for label, cs in curves.items()}
    if any(curves.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (label, cs) in enumerate(curves.items()):
            if cs:
                ts = sorted({t for c in cs for t in c}, reverse=True)
                ax.plot(ts, [sum(c[t] for c in cs if t in c) / sum(t in c for c in cs) for t in ts], label=label,
                        **curve_style(i))
        ax.set_xlim(1000, 0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("diffusion time t")
        ax.set_ylabel("final particles already in their final mode")
        ax.set_title("mode commitment (eval.per_step)")
        legend_outside(ax)
        save(fig, "mode_commitment.png")

    # PSNR distributions: best particle per image, and every final particle
    fig, axes = plt.subplots(1, 2, figsize=(2 * width, 4))
    def sym(p):
        return p.get("class_psnr", p["psnr"])
    panels = [("best PSNR up to symmetry per image",
               lambda e: [max(sym(p) for p in im["particles"] if p.get("pruned_at") is None) for im in e["images"]]),
              ("PSNR up to symmetry of every final particle",
               lambda e: [sym(p) for im in e["images"] for p in im["particles"] if p.get("pruned_at") is None])]
    for ax, (title, values) in zip(axes, panels):
        data = [[v for v in values(e) if v is not None] for e in experiments]
        ax.boxplot([d or [float("nan")] for d in data])
        for i, d in enumerate(data, start=1):
            ax.plot([i] * len(d), d, "k.", alpha=0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("PSNR against the closest member of the truth's class (dB)")
        ax.set_title(title)
    save(fig, "psnr_distribution.png")

    for e in experiments:
        written += plot_grids(e, out / "grids" / _slug(e["label"]), plt)
    return written


def _particle_caption(p, chosen_id) -> str:
    psnr = p["psnr_180"] if p.get("mode") == "180" else p["psnr"]
    text = f"particle {p['particle']}\nmode {p.get('mode')}" + (f", {psnr:.1f} dB" if psnr is not None else "")
    if p.get("pruned_at"):
        text += f"\npruned at t={p['pruned_at'].get('t')}"
    elif p["particle"] == chosen_id:
        text += "\n(lowest loss)"
    return text


def plot_grids(experiment, out: Path, plt) -> list[Path]:
    """GT, y and every particle (pruned ones too) of each image, from the PNGs run.py saved."""
    import matplotlib.image as mpimg

    written = []
    for im in experiment["images"]:
        folder = experiment["sources"][(im.get("seed"), im["index"])] / "images" / f"{im['index']:05d}"
        if not folder.is_dir():
            continue
        chosen = im.get("best_by_loss", {}).get("particle")
        tiles = [("gt.png", "ground truth"), ("measurement.png", "y (log |F x|)")]
        for p in im["particles"]:
            prefix = "pruned_particle" if p.get("pruned_at") else "particle"
            tiles.append((f"{prefix}_{p['particle']}.png", _particle_caption(p, chosen)))
        tiles = [(folder / f, c) for f, c in tiles if (folder / f).is_file()]
        if not tiles:
            continue
        fig, axes = plt.subplots(1, len(tiles), figsize=(1.9 * len(tiles), 2.5), squeeze=False)
        for ax, (f, caption) in zip(axes[0], tiles):
            ax.imshow(mpimg.imread(f), cmap="gray")
            ax.set_title(caption, fontsize=7)
            ax.axis("off")
        fig.suptitle(f"{experiment['label']}: image {im['index']} ({im.get('name', '')})", fontsize=8)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{im['index']:05d}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


# ---------------------------------------------------------------- command line

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
