"""Comparing configurations run on the same measurements (images x seeds, the same y): the endpoints named before
measuring, their rates and paired differences with 95 % intervals and exact tests, all clustered by image (two
seeds of one image share its difficulty, so the image, not the measurement, is the independent unit). scipy.stats
does the statistics: a cluster bootstrap (BCa over images) where it is well defined, exact intervals and tests
(Clopper-Pearson, the sign test over images) where it degenerates."""
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


def measurement_key(record: dict) -> tuple:
    """What makes two records the same measurement: the seed of its noise and the image."""
    return record["seed"], record["index"]


def outcomes(records: list[dict]) -> dict[tuple, dict[str, float]]:
    """measurement key -> every endpoint's outcome, and its TFLOP."""
    return {measurement_key(r): {**{k: f(r) for k, _, _, f in ENDPOINTS}, "tflop": tflop(r)} for r in records}


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


@dataclass
class Difference(Estimate):
    """A paired difference (configuration - reference) with its exact test, clustered by image."""

    p: float = 1.0
    test: str = ""

    @property
    def verdict(self) -> str:
        """better/worse only where the clustered interval excludes 0 and the exact test agrees (p < 0.05): the two
        weigh images differently (the interval by their mean difference, the sign test by their count), and a
        difference one of them does not see is not resolved."""
        excludes = self.low > 0 or self.high < 0
        if excludes and self.p < 0.05:
            return "better" if self.low > 0 else "worse"
        if excludes or self.p < 0.05:
            return "unresolved (interval and exact test disagree)"
        return "no difference"


def by_image(keys: list[tuple], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image (the cluster): the sum of its measurements' values and their count."""
    images = sorted({k[1] for k in keys})
    where = {im: i for i, im in enumerate(images)}
    sums, counts = np.zeros(len(images)), np.zeros(len(images))
    for k, v in zip(keys, values):
        sums[where[k[1]]] += v
        counts[where[k[1]]] += 1
    return sums, counts


def cluster_bootstrap(sums: np.ndarray, counts: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % BCa interval of the mean over measurements, resampling whole images (scipy.stats.bootstrap, paired sums
    and counts: the ratio estimator of a cluster sample); nan where it is not defined."""
    import warnings

    from scipy.stats import bootstrap

    if len(sums) < 2:
        return math.nan, math.nan

    def ratio(s, n, axis=-1):
        return s.sum(axis=axis) / n.sum(axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # a degenerate sample gives nan, handled by the caller
        res = bootstrap((sums, counts), ratio, paired=True, vectorized=True, n_resamples=10_000, method="BCa",
                        confidence_level=0.95, random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a rate of independent measurements (one run: one seed, its images)."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    if n == 0:
        return 0.0, 1.0
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def _degenerate(low: float, high: float) -> bool:
    return not (math.isfinite(low) and math.isfinite(high)) or high - low <= 1e-12


def rate(keys: list[tuple], values: np.ndarray) -> Estimate:
    """A binary endpoint's rate over measurements, its interval clustered by image; where every image has the same
    rate (all found, say) the bootstrap has nothing to resample and the exact Clopper-Pearson interval over images
    is used instead (each image's outcome its rate, so k = rate x images)."""
    sums, counts = by_image(keys, values)
    value = float(sums.sum() / counts.sum()) if len(sums) else math.nan
    low, high = cluster_bootstrap(sums, counts)
    per_image = sums / np.maximum(counts, 1)
    if _degenerate(low, high) or len(set(np.round(per_image, 12))) < 2:
        low, high = clopper_pearson(int(round(value * len(sums))), len(sums))
        return Estimate(value, low, high, "Clopper-Pearson over images")
    return Estimate(value, low, high, "cluster bootstrap (BCa over images)")


# fewer images than this with a non-zero paired difference, or all of them one way: the bootstrap's interval is not
# to be trusted (it can exclude 0 where the exact test does not), so the exact interval is used
MIN_DISCORDANT = 10


def difference(keys: list[tuple], a: np.ndarray, b: np.ndarray, binary: bool) -> Difference:
    """The mean paired difference a - b over measurements, clustered by image.

    Test: binary, the exact sign test over images (a binomial test of the images where a did better against those
    where b did; with one seed per image it is the exact McNemar test); continuous, the Wilcoxon signed-rank test of
    the per-image mean differences. Interval: the cluster bootstrap; for a binary endpoint with fewer than
    MIN_DISCORDANT discordant images, or all of them one way, the exact conditional interval instead: Clopper-
    Pearson for the share pi of discordant images where a did better, times the mean absolute per-image difference
    (with one seed: ((b + c) / n) (2 pi - 1), the exact interval for paired proportions); with no discordant image,
    +- the Clopper-Pearson upper bound of the discordant share."""
    from scipy.stats import binomtest, wilcoxon

    d = a - b
    sums, counts = by_image(keys, d)
    value = float(d.mean()) if len(d) else math.nan
    per_image = sums / np.maximum(counts, 1)
    up, down = int((per_image > 1e-12).sum()), int((per_image < -1e-12).sum())
    if binary:
        p = 1.0 if up + down == 0 else float(binomtest(up, up + down, 0.5).pvalue)
        test = "exact sign test over images"
    else:
        nonzero = per_image[np.abs(per_image) > 1e-12]
        p = 1.0 if len(nonzero) == 0 else float(wilcoxon(nonzero).pvalue)
        test = "Wilcoxon signed-rank over images"
    low, high = cluster_bootstrap(sums, counts)
    if binary and (up + down < MIN_DISCORDANT or up == 0 or down == 0 or _degenerate(low, high)):
        n = len(per_image)
        if up + down == 0:
            bound = clopper_pearson(0, n)[1]
            return Difference(value, -bound, bound, "exact: no discordant image", p, test)
        scale = float(np.abs(per_image).sum() / n)
        lo, hi = clopper_pearson(up, up + down)
        return Difference(value, scale * (2 * lo - 1), scale * (2 * hi - 1), "exact conditional over images", p,
                          test)
    if not binary and len(per_image) < MIN_DISCORDANT:  # too few images for a bootstrap: Student's t over images
        from scipy.stats import ttest_1samp

        if np.ptp(per_image) > 0:
            ci = ttest_1samp(per_image, 0.0).confidence_interval(0.95)
            return Difference(value, float(ci.low), float(ci.high), "Student t over images", p, test)
    if _degenerate(low, high):                         # a continuous difference that never varies
        low = high = value
    return Difference(value, low, high, "cluster bootstrap (BCa over images)", p, test)


@dataclass
class Comparison:
    """One configuration against a reference on the measurements both ran."""

    n: int                                   # paired measurements
    images: int                              # distinct images among them (the clusters)
    complete: bool                           # every measurement of the reference is among them
    rates: dict[str, Estimate]               # binary endpoint -> its rate
    means: dict[str, float]                  # every endpoint's mean, and tflop
    diffs: dict[str, Difference]             # endpoint -> configuration - reference


def compare(records: list[dict], reference: list[dict]) -> Comparison:
    """records against reference on their shared measurements."""
    mine, ref = outcomes(records), outcomes(reference)
    keys = sorted(k for k in mine if k in ref)
    rates, diffs, means = {}, {}, {}
    for name in [*NAMES, "tflop"]:
        a = np.array([mine[k][name] for k in keys])
        means[name] = float(np.mean(a)) if len(a) else math.nan
        if name == "tflop" or not keys:
            continue
        b = np.array([ref[k][name] for k in keys])
        diffs[name] = difference(keys, a, b, name in BINARY)
        if name in BINARY:
            rates[name] = rate(keys, a)
    return Comparison(len(keys), len({k[1] for k in keys}), len(keys) == len(ref), rates, means, diffs)


def _pct(v: float) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}"


def _points(d: Difference) -> str:
    return f"{100 * d.value:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}], p = {d.p:.2g}: {d.verdict}"


def _db(d: Difference) -> str:
    return f"{d.value:+.2f} [{d.low:+.2f}, {d.high:+.2f}], p = {d.p:.2g}: {d.verdict}"


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


def differences_table(rows: list[tuple[str, Comparison, float]]) -> str:
    """A Markdown table of named comparisons (name, comparison, compute ratio): each endpoint's paired difference
    in points (dB for the PSNR) with its clustered 95 % interval, its exact test's p and the verdict."""
    head = ("| comparison | measurements (images) | compute | " + " | ".join(
        f"{NAMES[k]}, points [95 % CI], p" if k in BINARY else f"{NAMES[k]} [95 % CI], p" for k in NAMES) + " |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, c, ratio in rows:
        mark = "" if c.complete else " †"
        cells = [name + mark, f"{c.n} ({c.images})", "–" if math.isnan(ratio) else f"{100 * ratio:.0f} %"]
        cells += [_points(c.diffs[k]) if k in BINARY else _db(c.diffs[k]) for k in NAMES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p-value (two-sided) of paired binary outcomes a, b: a binomial test of the discordant pairs
    (each pair its own unit; difference() clusters them by image)."""
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def choices_table(records: dict[str, list[dict]]) -> str:
    """A Markdown table of where each configuration's answer is won or lost: its final particles' failure kinds, the
    lowest-loss particle in the class, that particle right as sampled (not turned), the answer right (turned the way
    the prior prefers) and the exact McNemar p of those two on the same measurements, the posterior rule's answer."""
    from evaluation.failures import KINDS, kind_shares

    head = ("| configuration | measurements | failed particles: " + " / ".join(KINDS) + " | lowest-loss particle in "
            "the class | right as sampled | answer right (turned by the prior) | turned − as sampled, McNemar p | "
            "answer right by the posterior rule |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, recs in records.items():
        if not recs:
            continue
        finals = [p for im in recs for p in final_particles(im)]
        shares = kind_shares(finals)
        in_class = np.array([im["best_by_loss"]["mode"] != "fail" for im in recs], dtype=float)
        as_sampled = np.array([im["best_by_loss"]["mode"] == "0" for im in recs], dtype=float)
        turned = np.array([im["best_by_prior"]["mode"] == "0" for im in recs], dtype=float)
        posterior = np.array([im["choices"]["posterior"]["mode"] == "0" for im in recs], dtype=float)
        lines.append(f"| {label} | {len(recs)} | {' / '.join(f'{100 * shares[k]:.1f}' for k in KINDS)} % | "
                     f"{_pct(in_class.mean())} % | {_pct(as_sampled.mean())} % | {_pct(turned.mean())} % | "
                     f"{100 * (turned.mean() - as_sampled.mean()):+.0f}, p = {mcnemar(turned, as_sampled):.2g} | "
                     f"{_pct(posterior.mean())} % |")
    return "\n".join(lines)
