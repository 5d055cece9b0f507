"""How far each trust label can be trusted, measured on a frontier study's records (evaluation/trust.py), and the fit
factor it rests on, chosen on half the images and judged on the other half (the ambiguity rule's one standard
deviation of the noise's ||n||^2 is fixed beforehand, not fitted). The split is by image, the independent unit: the
even-numbered images (every seed) tune, the odd-numbered ones are held out.

    python scripts/studies/trust_calibration.py --model naturalldm digits32ldm

The fit factor: the smallest f (in steps of 0.005) for which at least 97.5 % of the final particles that are the image
(up to the symmetries) have a loss within f x the noise margin, on the tuning images, pooled over the models: a right
particle then almost always fits, so `no fit` means the search failed. Then, on the held-out images, per label:
measurements, the answer right and the image found, with 95 % intervals clustered by image (analysis/paired.rate).
Prints Markdown; docs/orientation.md reports its output.
"""
from __future__ import annotations

import argparse

import numpy as np

from analysis.paired import rate
from evaluation.trust import (COVER, LABELS, SETTINGS, loss_sd_of, relabel, right_loss_ratios,
                              smallest_factor)
from pipeline.study import records


def loaded(model: str) -> tuple[list[dict], tuple[int, ...]]:
    import study_frontier as sf

    study = sf.build_study(sf.parse(["report", "--model", model]))
    return [im for rs in records(study).values() for im in rs], study.seeds


def labels_of(images: list[dict], factor: float, ambiguity_sd: float, sigma: float = 0.05) -> list[str]:
    return [relabel(im, factor, ambiguity_sd, loss_sd=loss_sd_of(im["trust"]["margin"], sigma)) for im in images]


def table(images: list[dict], factor: float, ambiguity_sd: float) -> list[str]:
    lines = ["| label | measurements | chosen right % [95 % CI] | found % [95 % CI] |", "|---|---|---|---|"]
    labels = labels_of(images, factor, ambiguity_sd)
    for lab in LABELS:
        sel = [im for im, lb in zip(images, labels) if lb == lab]
        if not sel:
            lines.append(f"| {lab} | 0 | – | – |")
            continue
        keys = [(im["seed"], im["index"]) for im in sel]
        cells = []
        for f in (lambda im: im["best_by_prior"]["mode"] == "0", lambda im: im["found"]):
            e = rate(keys, np.array([float(f(im)) for im in sel]))
            cells.append(f"{100 * e.value:.0f} [{100 * e.low:.0f}, {100 * e.high:.0f}]")
        lines.append(f"| {lab} | {len(sel)} ({100 * len(sel) / len(images):.0f} %) | {cells[0]} | {cells[1]} |")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["naturalldm", "digits32ldm"])
    args = ap.parse_args(argv)
    data = {m: loaded(m) for m in args.model}
    tuning = {m: [im for im in images if im["index"] % 2 == 0] for m, (images, _) in data.items()}
    held = {m: [im for im in images if im["index"] % 2 == 1] for m, (images, _) in data.items()}
    r = np.concatenate([right_loss_ratios(v) for v in tuning.values()])
    factor = smallest_factor(r)
    print(f"fit factor: {factor:.3f} (the smallest f with >= {100 * COVER:.1f} % of {len(r)} right final particles "
          f"within f x the noise margin on the tuning images (even-numbered); at f = 1: {100 * (r <= 1).mean():.1f} %)\n")
    amb = SETTINGS["ambiguity_sd"].default
    for m in args.model:
        print(f"### {m}: held-out images (odd-numbered, every seed: {len(held[m])} measurements), fit factor "
              f"{factor:.3f}, ambiguity within {amb:g} sd; then at the factor 1 with any two different fits "
              f"ambiguous (the first rule) for comparison\n")
        print("\n".join(table(held[m], factor, amb)))
        print()
        print("\n".join(table(held[m], 1.0, float("inf"))))
        print()


if __name__ == "__main__":
    main()
