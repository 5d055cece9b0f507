"""How many images (and seeds per image) a paired comparison needs for a chosen half-width of its 95 % interval,
from a pilot study's per-measurement outcomes: the per-image mean difference has variance between + within / seeds
(between images; between seeds of one image), and the interval is Student's t over images."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import t

from analysis.paired import BINARY, NAMES

SEEDS = (1, 2, 4, 8)


def components(outcomes_a: list[dict], outcomes_b: list[dict], endpoint: str) -> tuple[float, float, int, int]:
    """(between, within, images, seeds per image) of the paired differences a - b on their shared measurements:
    within is the pooled variance between seeds of one image, between the variance of the per-image means less
    within's share of it (at least 0)."""
    b = {(o["seed"], o["index"]): o[endpoint] for o in outcomes_b}
    by_image: dict[int, list[float]] = {}
    for o in outcomes_a:
        key = (o["seed"], o["index"])
        if key in b and o[endpoint] is not None and b[key] is not None:
            by_image.setdefault(o["index"], []).append(o[endpoint] - b[key])
    groups = [np.array(v) for v in by_image.values()]
    if len(groups) < 2:
        return math.nan, math.nan, len(groups), 0
    dof = sum(len(g) - 1 for g in groups)
    within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / dof if dof else 0.0
    seeds = round(float(np.mean([len(g) for g in groups])))
    means = np.array([g.mean() for g in groups])
    between = max(float(means.var(ddof=1)) - within / seeds, 0.0)
    return between, within, len(groups), seeds


def half_width(between: float, within: float, images: int, seeds: int) -> float:
    return float(t.ppf(0.975, images - 1)) * math.sqrt((between + within / seeds) / images)


def images_needed(between: float, within: float, seeds: int, target: float, most: int = 100_000) -> int | None:
    """The fewest images (at least 3) whose interval's half-width is at most target with this many seeds each."""
    if between + within / seeds == 0:
        return 3
    n = max(3, math.ceil(1.96 ** 2 * (between + within / seeds) / target ** 2))
    while n <= most and half_width(between, within, n, seeds) > target:
        n += 1
    return n if n <= most else None


def plan_lines(pilot: dict[str, list[dict]], named: list[tuple[str, str, str]], points: float,
               cost: dict[str, float], unit: str, source: str, available: int | None = None) -> list[str]:
    """Per named comparison and binary endpoint: the images needed for a half-width of `points` with the pilot's
    seeds per image and with the cheapest of SEEDS, and what its two configurations cost there (cost: a
    configuration's label -> device-hours per measurement); available: the images the data set holds."""
    lines = [f"half-width plan from {source}: Student's t over images, with the pilot's variance between images and "
             f"between seeds of an image; the binary endpoints' intervals (a pseudo-image on each side) are a little "
             f"wider:"]
    for name, mine, against, *_ in named:
        if mine == against or not (pilot.get(mine) and pilot.get(against)):
            continue
        per = cost.get(mine, math.nan) + cost.get(against, math.nan)
        for k in BINARY:
            between, within, images, seeds = components(pilot[mine], pilot[against], k)
            if images < 2:
                continue
            options = {m: images_needed(between, within, m, points / 100) for m in sorted({seeds, *SEEDS})}
            options = {m: n for m, n in options.items() if n is not None}
            if seeds not in options:
                continue
            cheapest = min(options, key=lambda m: (options[m] * m, m))
            short = "" if available is None or options[seeds] <= available else \
                f" (the data set holds {available} images)"
            lines.append(
                f"- {name}, {NAMES[k]}: half-width now {100 * half_width(between, within, images, seeds):.1f} "
                f"points ({images} images x {seeds} seeds); half-width {points:g} points: N images = "
                f"{options[seeds]} x {seeds} seeds ({options[seeds] * seeds * per:.3g} {unit} for both), cheapest "
                f"{options[cheapest]} x {cheapest} ({options[cheapest] * cheapest * per:.3g} {unit}){short}")
    return lines
