"""A study's report: every configuration's endpoints with clustered intervals, the comparisons named before
measuring as paired differences with their verdicts, the targets, how far each trust label can be trusted, where the
answer is won or lost; printed, saved as JSON (with every measurement's outcomes, so it can be analysed again) and
plotted."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from analysis.paired import (BINARY, NAMES, Comparison, Difference, choices_table, compare, differences_table, holm,
                             outcomes, rate, rates_table, relative_cost)
from evaluation.failures import relabel_failures
from evaluation.trust import LABELS, SETTINGS, loss_sd_of, relabel


def trust_label(im: dict, sigma: float, fit_factor: float) -> str:
    """An image's trust label by the one rule at the declared settings (evaluation/trust.relabel) and the operator's
    fit factor, from the fields its record stores, never the label it was written with: records made before a
    setting changed read as the tool labels now; sigma: the measurement noise (for records without loss_sd)."""
    settings = {k: v.default for k, v in SETTINGS.items()}
    return relabel(im, fit_factor, settings["ambiguity_sd"], settings["threshold"],
                   loss_sd_of(im["trust"]["margin"], sigma))


def judged_again(im: dict, sigma: float, fit_factor: float) -> dict:
    """A copy of an image record whose derived labels (failure kinds, representability, the trust label) are judged
    again by the one rule from its stored fields (evaluation/failures.relabel_failures, trust_label)."""
    out = relabel_failures(im, fit_factor)
    if out.get("trust"):
        out = {**out, "trust": {**out["trust"], "label": trust_label(out, sigma, fit_factor)}}
    return out


def version_of(im: dict) -> tuple:
    """(commit, clean, results version) an image record names; Nones for a record made before they were kept."""
    v = im.get("provenance") or {}
    return v.get("commit"), v.get("clean"), v.get("results")


def versions_table(recs: dict[str, list[dict]]) -> list[str]:
    """One line per code version the records came from: commit, clean or modified tree, results version, records."""
    counts: dict[tuple, int] = {}
    for rs in recs.values():
        for im in rs:
            counts[version_of(im)] = counts.get(version_of(im), 0) + 1
    lines = []
    for (commit, clean, results), n in sorted(counts.items(), key=lambda kv: -kv[1]):
        tree = {True: "clean", False: "modified tree"}.get(clean, "tree unrecorded")
        lines.append(f"- {commit[:12] if commit else 'commit unrecorded'} ({tree}), results version "
                     f"{results or 'unrecorded'}: {n} records")
    return lines


def incomparable(a: list[dict], b: list[dict]) -> str | None:
    """Why two sets of records may not be compared (they came from code versions whose results differ), or None."""
    found = sorted({version_of(im)[2] for im in a + b} - {None})
    return None if len(found) < 2 else f"records from code versions whose results differ ({', '.join(found)})"


def compared(a: list[dict], b: list[dict], margins: dict[str, float] | None) -> tuple[Comparison | None, str | None]:
    """a against b (analysis/paired.compare), or None and why they may not be compared."""
    why = incomparable(a, b)
    return (None, why) if why else (compare(a, b, margins), None)


def targets(comparisons: dict[str, Comparison], reference: str) -> list[str]:
    """The targets stated before measuring (issue 31), judged by the clustered intervals: four runs' answers for at
    most 60 % of their compute, every binary endpoint's interval reaching no lower than 3 points below; or chosen
    right at least 10 points up at <= 5 % more compute, resolved as better (interval above zero, exact test p < 0.05)."""
    ref = comparisons[reference].means["tflop"]
    lines = []
    for label, c in comparisons.items():
        if label == reference or not c.n:
            continue
        ratio = c.means["tflop"] / ref
        cheaper = ratio <= 0.6 and all(c.diffs[k].low >= -0.03 for k in BINARY)
        better = ratio <= 1.05 and c.diffs["chosen_right"].value >= 0.10 and c.diffs["chosen_right"].verdict == "better"
        if cheaper or better:
            lines.append(f"{label} meets the target ({'cheaper' if cheaper else 'better'}): {100 * ratio:.0f} % of "
                         f"the compute, chosen right {100 * c.diffs['chosen_right'].value:+.0f} points")
    return lines or ["no configuration meets either target"]


def calibration(records: dict[str, list[dict]]) -> dict[str, dict]:
    """Per trust label over every configuration's measurements (judged again: judged_again): how many, and the share
    of right answers and of found images with clustered 95 % intervals (analysis/paired.rate) - does the label tell
    right from wrong?"""
    labelled = [(im["trust"]["label"], im) for rs in records.values() for im in rs if im.get("trust")]
    out = {}
    for lab in LABELS:
        recs = [im for lb, im in labelled if lb == lab]
        if not recs:
            out[lab] = {"n": 0}
            continue
        keys = [(im["seed"], im["index"]) for im in recs]
        row = {"n": len(recs)}
        for key, f in (("chosen_right", lambda im: im["best_by_prior"]["mode"] == "0"),
                       ("found", lambda im: im["found"])):
            e = rate(keys, np.array([float(f(im)) for im in recs]))
            row[key] = [e.value, e.low, e.high]
        out[lab] = row
    return out


def calibration_table(cal: dict[str, dict]) -> str:
    lines = ["| trust label | measurements | chosen right % [95 % CI] | found % [95 % CI] |", "|---|---|---|---|"]
    total = sum(v["n"] for v in cal.values())
    for lab, v in cal.items():
        if not v["n"]:
            lines.append(f"| {lab} | 0 | – | – |")
            continue
        cell = lambda r: f"{100 * r[0]:.0f} [{100 * r[1]:.0f}, {100 * r[2]:.0f}]"  # noqa: E731
        lines.append(f"| {lab} | {v['n']} ({100 * v['n'] / total:.0f} %) | {cell(v['chosen_right'])} | "
                     f"{cell(v['found'])} |")
    return "\n".join(lines)


def plot(comparisons: dict[str, Comparison], families: dict[str, str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(BINARY), figsize=(5 * len(BINARY), 4.2), sharex=True)
    markers = dict(zip(dict.fromkeys(families.values()), "osD^v<>xP*"))
    for ax, name in zip(axes, BINARY):
        for label, c in comparisons.items():
            if not c.n:
                continue
            r = c.rates[name]
            err = [[100 * (r.value - r.low)], [100 * (r.high - r.value)]]
            ax.errorbar([c.means["tflop"]], [100 * r.value], yerr=err, marker=markers[families[label]], capsize=3,
                        label=label + ("" if c.complete else " †"))
        ax.set_xscale("log")
        ax.set_xlabel("TFLOP per image, every network call (log)")
        ax.set_ylabel(f"{NAMES[name]}, % of measurements")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plain(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Difference):                  # with what it concludes: the verdict and the power it had
        return {**{k: _plain(x) for k, x in v.__dict__.items()}, "verdict": v.verdict,
                "detectable": _plain(v.detectable)}
    if hasattr(v, "__dict__"):
        return {k: _plain(x) for k, x in v.__dict__.items()}
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def named_rows(recs: dict[str, list[dict]], named: list[tuple], margins: dict[str, float] | None
               ) -> tuple[list[tuple[str, Comparison, float]], list[str]]:
    """The comparisons named before the study (row, configuration, its reference, and optionally the family of
    questions it belongs to) that have records: each with its compute ratio, Holm's adjustment per endpoint over
    its family (default: one family); and a line for each refused (records of code versions whose results
    differ)."""
    rows, refused, family = [], [], {}
    for name, mine, against, *rest in named:
        family[name] = rest[0] if rest else ""
        if not (recs.get(mine) and recs.get(against)):
            continue
        c, why = compared(recs[mine], recs[against], margins)
        if why:
            refused.append(f"{name}: not compared, {why}")
            continue
        rows.append((name, c, relative_cost(recs[mine]) / relative_cost(recs[against])))
    for k in NAMES:
        for f in set(family.values()):
            holm([c.diffs[k] for name, c, _ in rows if family[name] == f])
    return rows, refused


def report(study, recs: dict[str, list[dict]], named: list[tuple[str, str, str]], reference: str, sigma: float,
           fit_factor: float, margins: dict[str, float] | None = None, plot_path: str | None = None,
           save: str | None = None) -> str:
    """Print the study's report and write it (frontier.json in the study's folder, or `save`); `sigma` and
    `fit_factor` are the measurement noise and the operator's fit factor of the study's task (derived labels are
    judged again with them: judged_again); margins: each endpoint's equivalence margin, declared in the study's
    design."""
    recs = {label: [judged_again(im, sigma, fit_factor) for im in r] for label, r in recs.items()}
    missing = [label for label, r in recs.items() if not r]
    ref = recs.get(reference) or []
    comparisons, refused = {}, []
    for label, r in recs.items():
        if r and ref:
            c, why = compared(r, ref, margins)
            if why:
                refused.append(f"{label} against {reference}: not compared, {why}")
            else:
                comparisons[label] = c
    rows, refused_named = named_rows(recs, named, margins)
    date = time.strftime("%Y-%m-%d")
    versions = versions_table(recs)
    margin_text = ("none declared: no verdict can be `equivalent`" if not margins else ", ".join(
        f"{NAMES[k]} ±{100 * v:g} points" if k in BINARY else f"{NAMES[k]} ±{v:g} dB" for k, v in margins.items()))
    lines = [f"{study.model}{' ' + study.sampler if study.sampler else ''}, images {study.start}-"
             f"{study.start + study.images - 1} x seeds {list(study.seeds)}; {date}. Endpoints named before measuring: "
             f"found (the seeds' success: the image or its rotation among the final particles), the lowest-loss "
             f"particle in the class (the choice), chosen right (the answer, no ground truth). 95 % intervals "
             f"clustered by image (Student's t over images; binary endpoints with a pseudo-image on each side, "
             f"tests/test_coverage.py); p: exact sign test over images (t-test over images for the PSNR), Holm's "
             f"adjustment over the named comparisons of its family beside it (the particle methods; ReSample's "
             f"baseline comparison its own); verdicts: better, worse, equivalent (the whole "
             f"interval within the margin), unresolved; equivalence margins: {margin_text}; † = not every "
             f"measurement of {reference}", "", "Code versions the records came from:", *versions, "",
             "Every configuration:", "", rates_table(comparisons) if comparisons else "(no reference yet)", "",
             "The comparisons named before measuring (configuration − its reference):", "",
             differences_table(rows) if rows else "(none finished yet)", ""]
    lines += refused + refused_named
    if missing:
        lines.append(f"not run yet: {', '.join(missing)}")
    if reference in comparisons:
        lines += targets(comparisons, reference)
    itself = {name for name, mine, against, *_ in named if mine == against}    # no comparison: left out
    own = [c for name, c, _ in rows if name not in itself]
    if own:
        half = {k: max(c.diffs[k].half_width for c in own) for k in NAMES}
        lines.append("largest half-width of a named comparison's interval: " + ", ".join(
            f"{NAMES[k]} {100 * v:.1f} points" if k in BINARY else f"{NAMES[k]} {v:.2f} dB" for k, v in half.items()))
    cal = calibration(recs)
    lines += ["", "How far each trust label can be trusted (every configuration's measurements, labels judged again "
                  "by the one rule at the declared settings):", "",
              calibration_table(cal), "", "Where the answer is won or lost (shares of final particles; rates of "
              "measurements):", "", choices_table(recs)]
    text = "\n".join(lines)
    print(text)
    out = Path(save) if save else study.out / "frontier.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_plain({
        "model": study.model, "sampler": study.sampler, "seeds": list(study.seeds), "start": study.start,
        "images": study.images, "date": date, "table": text, "margins": margins, "versions": versions,
        "comparisons": {k: c for k, c in comparisons.items()},
        "named": {name: c for name, c, _ in rows}, "calibration": cal,
        # every measurement's endpoints, TFLOP and trust label (judged again): the study analysed again without
        # its run folders; the operator's fit factor the labels were judged with
        "fit_factor": fit_factor,
        "outcomes": {label: [{"seed": im["seed"], "index": im["index"], **outcomes([im])[(im["seed"], im["index"])],
                              "trust": (im.get("trust") or {}).get("label")} for im in r]
                     for label, r in recs.items()},
    }), indent=None, separators=(",", ":")))
    if plot_path:
        n = comparisons[reference].n if reference in comparisons else 0
        plot(comparisons, {c.label: c.family for c in study.configurations}, Path(plot_path),
             f"{study.model}: {n} measurements per configuration ({date}); bars: 95 % intervals clustered by image")
    return text
