"""Comparing configurations run on the same measurements: per-measurement outcomes, 95 % intervals (Wilson for a
rate, a paired bootstrap for a difference) and the exact McNemar test against a reference, by scipy.stats."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# the per-measurement outcomes a comparison reads from each image record of metric.json
OUTCOMES = {
    "found": lambda im: float(im["found"]),                                    # some final particle is in the class
    "chosen_right": lambda im: float(im["best_by_prior"]["mode"] == "0"),      # the tool's answer, no ground truth
    "particle_success": lambda im: float(np.mean([p["mode"] != "fail" for p in im["particles"]
                                                  if p.get("pruned_at") is None])),
    "best_of_n_psnr": lambda im: float(im["best_of_n"]["psnr"]),
    "tflop": lambda im: float(im["compute"]["tflop"]) if im["compute"].get("tflop") is not None else math.nan,
    "decoder_vjps": lambda im: float(im["compute"]["rows"].get("decoder_vjp", 0)),
}
BINARY = ("found", "chosen_right")


def measurement_key(record: dict) -> tuple:
    """What makes two records the same measurement: the image and the seed of its noise."""
    return record["seed"], record["index"]


def outcomes(records: list[dict]) -> dict[tuple, dict[str, float]]:
    """measurement key -> every outcome of OUTCOMES."""
    return {measurement_key(r): {k: f(r) for k, f in OUTCOMES.items()} for r in records}


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a rate."""
    from scipy.stats import binomtest

    if n == 0:
        return math.nan, math.nan
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p-value (two-sided) of paired binary outcomes a, b: a binomial test of the discordant pairs."""
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    return 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_interval(d: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of paired differences d (10,000 resamples, fixed seed)."""
    from scipy.stats import bootstrap

    if len(d) < 2 or np.all(d == d[0]):
        return float(d[0]) if len(d) else math.nan, float(d[0]) if len(d) else math.nan
    res = bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=10_000, method="percentile",
                    random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class Comparison:
    """One configuration against the reference on the measurements both ran."""

    n: int                                  # paired measurements
    rates: dict[str, tuple[float, float, float]]       # binary outcome -> (rate, low, high)
    means: dict[str, float]                 # every outcome's mean
    diffs: dict[str, tuple[float, float, float]]       # outcome -> (mean difference, low, high) against the reference
    p_values: dict[str, float]              # binary outcome -> exact McNemar p against the reference


def compare(records: list[dict], reference: list[dict]) -> Comparison:
    """records against reference on their shared measurements (the reference may have more)."""
    mine, ref = outcomes(records), outcomes(reference)
    keys = sorted(k for k in mine if k in ref)
    rates, diffs, p_values, means = {}, {}, {}, {}
    for name in OUTCOMES:
        a = np.array([mine[k][name] for k in keys])
        b = np.array([ref[k][name] for k in keys])
        means[name] = float(np.mean(a)) if len(a) else math.nan
        if name in ("tflop", "decoder_vjps"):
            continue
        diffs[name] = (float(np.mean(a - b)) if len(a) else math.nan, *paired_interval(a - b))
        if name in BINARY:
            rates[name] = (means[name], *wilson(int(a.sum()), len(a)))
            p_values[name] = mcnemar(a, b)
    return Comparison(len(keys), rates, means, diffs, p_values)


def _pct(v: float) -> str:
    return "–" if math.isnan(v) else f"{100 * v:.0f}"


def table(comparisons: dict[str, Comparison], reference: str) -> str:
    """A Markdown table: per configuration its compute, the rates with 95 % intervals, the paired difference to the
    reference with its interval and the exact McNemar p, the particle success and DAPS's best-of-N PSNR."""
    head = ("| configuration | TFLOP / image | decoder VJPs / image | measurements | found % [95 % CI] | "
            f"found − {reference} (points) [95 % CI], McNemar p | chosen right % [95 % CI] | chosen right − "
            f"{reference} [95 % CI], p | particle success % | best-of-N PSNR (dB) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, c in comparisons.items():
        tflop = c.means["tflop"]
        cells = [label, "–" if math.isnan(tflop) else f"{tflop:.3g}", f"{c.means['decoder_vjps']:.0f}", str(c.n)]
        for name in BINARY:
            rate, low, high = c.rates[name]
            d, dl, dh = c.diffs[name]
            cells.append(f"{_pct(rate)} [{_pct(low)}, {_pct(high)}]")
            cells.append("–" if label == reference else
                         f"{100 * d:+.0f} [{100 * dl:+.0f}, {100 * dh:+.0f}], p = {c.p_values[name]:.2g}")
        cells.append(_pct(c.means["particle_success"]))
        cells.append(f"{c.means['best_of_n_psnr']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
        finals = [p for im in recs for p in im["particles"] if p.get("pruned_at") is None]
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
