"""Comparing configurations run on the same measurements (images x seeds, the same y): the endpoints named before
measuring, their rates and paired differences with 95 % intervals and exact tests, all clustered by image (two
seeds of one image share its difficulty, so the image, not the measurement, is the independent unit). scipy.stats
does the tests and statsmodels Holm's adjustment; the intervals are Student's t over images (binary endpoints with
a pseudo-image on each side, whose coverage tests/test_coverage.py measures), with no bootstrap, so no verdict
depends on a random seed. A verdict is one of better, worse, equivalent (within a margin declared before measuring)
or unresolved."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def final_particles(im: dict) -> list[dict]:
    return [p for p in im["particles"] if p.get("pruned_at") is None]


def best_psnr_up_to_symmetry(im: dict) -> float:
    """The best final particle's PSNR against the closest member of the truth's class (its rotation, shifts)."""
    return max(p.get("class_psnr", p["psnr"]) for p in final_particles(im))


# the endpoints, named before measuring, in the order of the question: (key, name, kind, per-measurement outcome)
ENDPOINTS = (
    ("found", "found", "binary", lambda im: float(im["found"])),                # the seeds' success: the image or
    # its rotation (any member of the class) is among the final particles
    ("in_class", "lowest-loss particle in the class", "binary",                 # the choice
     lambda im: float(im["best_by_loss"]["mode"] != "fail")),
    ("chosen_right", "chosen right", "binary",                                  # the answer, no ground truth
     lambda im: float(im["best_by_prior"]["mode"] == "0")),
    ("best_psnr", "best PSNR up to symmetry (dB)", "continuous", best_psnr_up_to_symmetry),
)
BINARY = tuple(k for k, _, kind, _ in ENDPOINTS if kind == "binary")
NAMES = {k: name for k, name, _, _ in ENDPOINTS}


def tflop(im: dict) -> float:
    """Every network call the configuration caused (compute_total), else the sampler's alone (older records)."""
    block = im.get("compute_total") or im.get("compute") or {}
    return math.nan if block.get("tflop") is None else float(block["tflop"])


def decoder_vjps(im: dict) -> float:
    """The decoder VJPs of every call the configuration caused: a relative cost where no cost model applies (the
    two-mode benchmarks' networks are closed-form)."""
    block = im.get("compute_total") or im.get("compute") or {}
    return float((block.get("rows") or {}).get("decoder_vjp", math.nan))


def relative_cost(images: list[dict]) -> float:
    """Mean TFLOP per image, or mean decoder VJPs where the model has no cost model (nan: neither recorded)."""
    for f in (tflop, decoder_vjps):
        values = [f(im) for im in images if not math.isnan(f(im))]
        if values:
            return sum(values) / len(values)
    return math.nan


def costs() -> tuple:
    """What a configuration costs and how it spreads, beside the endpoints, per image record (None: not recorded):
    its time, its largest step's memory, the particles' mean pairwise latent distance while they explore."""
    from evaluation.summary import explore_spread, step_memory_peak

    return (("time_s", lambda im: im.get("total_time_s")), ("memory_mb", step_memory_peak),
            ("spread", explore_spread))


def measurement_key(record: dict) -> tuple:
    """What makes two records the same measurement: the seed of its noise and the image."""
    return record["seed"], record["index"]


def outcomes(records: list[dict]) -> dict[tuple, dict[str, float]]:
    """measurement key -> every endpoint's outcome, and its TFLOP."""
    return {measurement_key(r): {**{k: f(r) for k, _, _, f in ENDPOINTS}, "tflop": tflop(r)} for r in records}


Z95, Z80 = 1.959963984540054, 0.8416212335729143     # two-sided 95 %; 80 % power


@dataclass
class Estimate:
    """A mean with its 95 % interval; method: how the interval was made."""

    value: float
    low: float
    high: float
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


VERDICTS = ("better", "worse", "equivalent", "unresolved")


@dataclass
class Difference(Estimate):
    """A paired difference (configuration - reference) with its test, clustered by image.

    margin: the equivalence margin declared before measuring (the endpoint's units; None: no equivalence claim);
    p_adjusted: Holm's adjustment over the comparisons named before the study (None: not one of them)."""

    p: float = 1.0
    test: str = ""
    margin: float | None = None
    p_adjusted: float | None = None

    @property
    def detectable(self) -> float:
        """The difference this comparison would have resolved with 80 % power: the interval's half-width times
        (z_0.975 + z_0.8) / z_0.975 (normal approximation; nan where the interval is not defined)."""
        return self.half_width * (Z95 + Z80) / Z95

    @property
    def verdict(self) -> str:
        """One of VERDICTS. better/worse: the interval excludes 0 and the test agrees (p < 0.05, Holm-adjusted
        where the comparison was named before the study): the two weigh images differently (the interval by their
        mean difference, the sign test by their count), and a difference one of them does not see is not resolved.
        equivalent: the whole interval lies within +-margin. Anything else is unresolved, never "no difference"."""
        p = self.p if self.p_adjusted is None else self.p_adjusted
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "unresolved"
        if (self.low > 0 or self.high < 0) and p < 0.05:
            return "better" if self.low > 0 else "worse"
        if self.margin is not None and -self.margin <= self.low and self.high <= self.margin:
            return "equivalent"
        return "unresolved"


def by_image(keys: list[tuple], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image (the cluster), in the order of the image ids: the sum of its measurements' values and their count."""
    images = sorted({k[1] for k in keys})
    where = {im: i for i, im in enumerate(images)}
    sums, counts = np.zeros(len(images)), np.zeros(len(images))
    for k, v in zip(keys, values):
        sums[where[k[1]]] += v
        counts[where[k[1]]] += 1
    return sums, counts


def per_image(keys: list[tuple], values: np.ndarray) -> np.ndarray:
    """Each image's mean over its measurements (the cluster's value), in the order of the image ids."""
    sums, counts = by_image(keys, values)
    return sums / np.maximum(counts, 1)


def student(values: np.ndarray) -> tuple:
    """95 % Student t interval of the mean of independent values along the last axis (unbounded with fewer than
    two)."""
    from scipy.stats import t

    n = values.shape[-1]
    if n < 2:
        return np.full(values.shape[:-1], -math.inf)[()], np.full(values.shape[:-1], math.inf)[()]
    mean = values.mean(-1)
    half = float(t.ppf(0.975, n - 1)) * values.std(-1, ddof=1) / math.sqrt(n)
    return mean - half, mean + half


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a rate of independent measurements (one run: one seed, its images)."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def adjusted_interval(values: np.ndarray, low_pseudo, high_pseudo) -> tuple:
    """Student's t over the clusters (the last axis) with one pseudo-cluster at each of low_pseudo and high_pseudo:
    the clustered analogue of Agresti and Min's (2005) added discordant pairs for matched proportions, which keeps
    the interval from collapsing where the outcomes rarely differ or differ one way."""
    shape = values.shape[:-1] + (1,)
    lo, hi = np.broadcast_to(np.asarray(low_pseudo, float)[..., None], shape), \
        np.broadcast_to(np.asarray(high_pseudo, float)[..., None], shape)
    return student(np.concatenate([values, lo, hi], axis=-1))


def binary_interval(d: np.ndarray) -> tuple:
    """The 95 % interval of the mean of per-image differences of a binary endpoint (d: (..., images), each in
    [-1, 1]): adjusted_interval with a pseudo-image at each of +-a, where a is the range's end (1) shrunk toward the
    largest |difference| seen, L, as more images differ: a = L + (1 - L) / (k + 1) with k images that differ (a = 1
    where none does; the largest seen says little of how far a rare difference can go).
    tests/test_coverage.py measures its coverage on clustered paired binaries."""
    k = (np.abs(d) > 1e-12).sum(-1)
    largest = np.abs(d).max(-1) if d.shape[-1] else np.zeros(d.shape[:-1])
    a = largest + (1 - largest) / (k + 1)
    return adjusted_interval(d, -a, a)


def rate(keys: list[tuple], values: np.ndarray) -> Estimate:
    """A binary endpoint's rate over measurements (the ratio estimator: successes over measurements, so an image with
    more measurements weighs more), its 95 % interval clustered by image: Student's t with the ratio's linearised
    variance over images, after one pseudo-image of the mean size that always succeeds and one that never does (so
    all found is not a point), clipped to [0, 1]."""
    from scipy.stats import t

    sums, counts = by_image(keys, values)
    if not len(sums):
        return Estimate(math.nan, math.nan, math.nan, "no measurement")
    value = float(sums.sum() / counts.sum())
    size = float(counts.mean())
    y, m = np.r_[sums, 0.0, size], np.r_[counts, size, size]
    n, ratio = len(y), float(y.sum() / m.sum())
    se = math.sqrt(n / (n - 1) * float(((y - ratio * m) ** 2).sum())) / float(m.sum())
    half = float(t.ppf(0.975, n - 1)) * se
    return Estimate(value, max(ratio - half, 0.0), min(ratio + half, 1.0),
                    "Student t over images (ratio estimator), a pseudo-image at 0 and at 1")


def difference(keys: list[tuple], a: np.ndarray, b: np.ndarray, binary: bool, margin: float | None = None) \
        -> Difference:
    """The mean paired difference a - b, clustered by image: each image's mean difference over its measurements
    (its seeds) is one observation, the estimate their mean, and no bootstrap (nothing depends on a random seed).

    Binary: the interval is Student's t over the images with a pseudo-image on each side (binary_interval); the
    test, the exact sign test over images (a binomial test of the images where a did better against those where b
    did; with one seed it is the exact McNemar test). Continuous: Student's t over the images, interval and test
    (they cannot disagree)."""
    from scipy.stats import binomtest, ttest_1samp

    d = per_image(keys, a - b)
    value = float(d.mean()) if len(d) else math.nan
    if binary:
        up, down = int((d > 1e-12).sum()), int((d < -1e-12).sum())
        p = 1.0 if up + down == 0 else float(binomtest(up, up + down, 0.5).pvalue)
        low, high = binary_interval(d)
        return Difference(value, float(low), float(high), "Student t over images, a pseudo-image on each side", p,
                          "exact sign test over images", margin)
    if len(d) >= 2 and np.ptp(d) > 0:
        res = ttest_1samp(d, 0.0)
        ci = res.confidence_interval(0.95)
        low, high, p = float(ci.low), float(ci.high), float(res.pvalue)
    elif len(d) >= 2:                                 # the same difference on every image
        low = high = value
        p = 1.0 if value == 0 else 0.0
    else:
        low, high, p = -math.inf, math.inf, 1.0
    return Difference(value, low, high, "Student t over images", p, "t-test over images", margin)


def holm(diffs: list[Difference]) -> None:
    """Holm's adjusted p-values (statsmodels) over a family of comparisons named before the study, written into
    each difference's p_adjusted."""
    from statsmodels.stats.multitest import multipletests

    if diffs:
        adjusted = multipletests([d.p for d in diffs], alpha=0.05, method="holm")[1]
        for d, q in zip(diffs, adjusted):
            d.p_adjusted = float(q)


@dataclass
class Comparison:
    """One configuration against a reference on the measurements both ran."""

    n: int                                   # paired measurements
    images: int                              # distinct images among them (the clusters)
    complete: bool                           # every measurement of the reference is among them
    rates: dict[str, Estimate]               # binary endpoint -> its rate
    means: dict[str, float]                  # every endpoint's mean, tflop and the costs()
    diffs: dict[str, Difference]             # endpoint -> configuration - reference
    ref_means: dict[str, float]              # the reference's costs() on the same measurements


def compare(records: list[dict], reference: list[dict], margins: dict[str, float] | None = None) -> Comparison:
    """records against reference on their shared measurements; margins: endpoint -> its equivalence margin, declared
    before measuring (in the endpoint's units: a share for the binary ones, dB for the PSNR)."""
    mine, ref = outcomes(records), outcomes(reference)
    keys = sorted(k for k in mine if k in ref)
    rates, diffs, means = {}, {}, {}
    for name in [*NAMES, "tflop"]:
        a = np.array([mine[k][name] for k in keys])
        means[name] = float(np.mean(a)) if len(a) else math.nan
        if name == "tflop" or not keys:
            continue
        b = np.array([ref[k][name] for k in keys])
        diffs[name] = difference(keys, a, b, name in BINARY, (margins or {}).get(name))
        if name in BINARY:
            rates[name] = rate(keys, a)
    by_key = [{measurement_key(r): r for r in rs} for rs in (records, reference)]
    ref_means = {}
    for name, f in costs():
        for where, recs in ((means, by_key[0]), (ref_means, by_key[1])):
            values = [v for v in (f(recs[k]) for k in keys) if v is not None]
            where[name] = float(np.mean(values)) if values else math.nan
    return Comparison(len(keys), len({k[1] for k in keys}), len(keys) == len(ref), rates, means, diffs, ref_means)


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}"


def bound(v: float, digits: int) -> str:
    """A signed number; a bound of exactly 0 prints unsigned ("0.0"), one that rounds to 0 with one more digit,
    so that no bound reads as excluding 0 when it does not."""
    if not math.isfinite(v):
        return "−∞" if v < 0 else "+∞"
    if v == 0:
        return f"{0:.{digits}f}"
    if round(v, digits) == 0:
        digits += 1
    return f"{v:+.{digits}f}".replace("-", "−")


def verdict_text(d: Difference, scale: float, unit: str) -> str:
    word = d.verdict
    if word == "equivalent":
        word += f" within ±{scale * d.margin:g}{unit}"
    return word


def formatted(d: Difference, binary: bool) -> str:
    """value [low, high], p (Holm-adjusted beside it where there is one): verdict."""
    scale, digits, unit = (100, 1, " points") if binary else (1, 2, " dB")
    p = f"p = {d.p:.2g}" + ("" if d.p_adjusted is None else f" (Holm {d.p_adjusted:.2g})")
    return (f"{bound(scale * d.value, digits)} [{bound(scale * d.low, digits)}, {bound(scale * d.high, digits)}], "
            f"{p}: {verdict_text(d, scale, unit)}")


def rates_table(comparisons: dict[str, Comparison]) -> str:
    """A Markdown table: per configuration its compute (every network call), measurements and images, each binary
    endpoint's rate with its clustered 95 % interval, and the best PSNR up to symmetry; a row not measured on every
    measurement of the reference is marked †."""
    head = ("| configuration | TFLOP / image (all network calls) | measurements (images) | "
            + " | ".join(f"{NAMES[k]} % [95 % CI]" for k in BINARY) + " | best PSNR up to symmetry (dB) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, c in comparisons.items():
        mark = "" if c.complete else " †"
        cells = [label + mark, "–" if math.isnan(c.means["tflop"]) else f"{c.means['tflop']:.3g}",
                 f"{c.n} ({c.images})"]
        cells += [f"{_pct(c.rates[k].value)} [{_pct(c.rates[k].low)}, {_pct(c.rates[k].high)}]" for k in BINARY]
        cells.append(f"{c.means['best_psnr']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus(mine: float, ref: float, unit: str, digits: int) -> str:
    """mine − ref in the unit, and mine as a share of ref: "−0.12 s (82 %)"; "–" where either is missing."""
    if math.isnan(mine) or math.isnan(ref):
        return "–"
    share = f" ({100 * mine / ref:.0f} %)" if ref else ""
    return f"{bound(mine - ref, digits)} {unit}{share}"


def differences_table(rows: list[tuple[str, Comparison, float]]) -> str:
    """A Markdown table of comparisons (name, comparison, compute ratio): compute, time per image and the largest
    step's memory against the reference's on the same measurements, the particles' spread while exploring as a
    ratio to the reference's; each endpoint's paired difference in points (dB for the PSNR) with its clustered 95 %
    interval, its test's p (and Holm's where adjusted) and the verdict; then each one's difference detectable with
    80 % power."""
    head = ("| comparison | measurements (images) | compute | time / image | peak step memory | pairwise latent "
            "distance, explore (ratio) | " + " | ".join(
                f"{NAMES[k]}, points [95 % CI], p" if k in BINARY else f"{NAMES[k]} [95 % CI], p" for k in NAMES)
            + " | detectable with 80 % power (" + ", ".join(NAMES[k] for k in NAMES) + ") |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, c, ratio in rows:
        mark = "" if c.complete else " †"
        mine, ref = c.means, c.ref_means
        spread_ratio = mine["spread"] / ref["spread"] if ref["spread"] else math.nan
        cells = [name + mark, f"{c.n} ({c.images})", "–" if math.isnan(ratio) else f"{100 * ratio:.0f} %",
                 versus(mine["time_s"], ref["time_s"], "s", 2), versus(mine["memory_mb"], ref["memory_mb"], "MB", 0),
                 "–" if math.isnan(spread_ratio) else f"{mine['spread']:.3g} (×{spread_ratio:.2f})"]
        cells += [formatted(c.diffs[k], k in BINARY) for k in NAMES]
        cells.append(" / ".join(f"{100 * c.diffs[k].detectable:.1f}" if k in BINARY else
                                f"{c.diffs[k].detectable:.2f} dB" for k in NAMES))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choices_table(records: dict[str, list[dict]]) -> str:
    """A Markdown table of where each configuration's answer is won or lost: its final particles' failure kinds, the
    lowest-loss particle in the class, that particle right as sampled (not turned), the answer right (turned the way
    the prior prefers) and the difference of those two on the same measurements, clustered by image (the sign test
    over images), the posterior rule's answer."""
    from evaluation.failures import KINDS, kind_shares

    head = ("| configuration | measurements | failed particles: " + " / ".join(KINDS) + " | lowest-loss particle in "
            "the class | right as sampled | answer right (turned by the prior) | turned − as sampled, points [95 % "
            "CI], sign test over images | answer right by the posterior rule |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, recs in records.items():
        if not recs:
            continue
        finals = [p for im in recs for p in final_particles(im)]
        shares = kind_shares(finals)
        keys = [measurement_key(im) for im in recs]
        in_class = np.array([im["best_by_loss"]["mode"] != "fail" for im in recs], dtype=float)
        as_sampled = np.array([im["best_by_loss"]["mode"] == "0" for im in recs], dtype=float)
        turned = np.array([im["best_by_prior"]["mode"] == "0" for im in recs], dtype=float)
        posterior = np.array([im["choices"]["posterior"]["mode"] == "0" for im in recs], dtype=float)
        lines.append(f"| {label} | {len(recs)} | {' / '.join(f'{100 * shares[k]:.1f}' for k in KINDS)} % | "
                     f"{_pct(in_class.mean())} % | {_pct(as_sampled.mean())} % | {_pct(turned.mean())} % | "
                     f"{formatted(difference(keys, turned, as_sampled, True), True)} | {_pct(posterior.mean())} % |")
    return "\n".join(lines)
