"""The experiments as tables: the headline, every column (--all), paired differences against a reference, the trust
lines and notes, as Markdown, CSV or LaTeX."""
from __future__ import annotations

import csv
import io
import json
import math
import re

import numpy as np

from analysis.paired import rate
from evaluation.failures import KINDS
from stages import ordered
from .load import SHARD_KEYS

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
