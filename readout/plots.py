"""The experiments as plots: time and memory per phase and step, the headline rates, the particles' spread and mode
commitment over t, the PSNR distributions, and a grid of every image's particles."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from evaluation.trajectory import committed_fraction
from .tables import HEADLINE, differing_settings, phases_of, rate_with_interval

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


class Canvas:
    """Where the plots go (out), and the one look all of them share: curve styles that tell apart runs lying on top
    of each other, the legend outside the axes; `written` lists every file saved."""

    STYLES = ["-", "--", ":", "-."]
    MARKERS = ["o", "s", "^", "v", "D", "x"]

    def __init__(self, out: Path, plt):
        self.out, self.plt, self.written = out, plt, []

    def curve_style(self, i: int) -> dict:
        """Runs that share a seed can lie exactly on top of each other: line style, marker and staggered marker
        positions tell them apart (and curve_labels says so)."""
        return {"linestyle": self.STYLES[i % len(self.STYLES)], "marker": self.MARKERS[i % len(self.MARKERS)],
                "markersize": 4, "alpha": 0.85, "markevery": (i % 4, 4)}

    @staticmethod
    def legend_outside(ax) -> None:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)

    def save(self, fig, name: str) -> None:
        path = self.out / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        self.plt.close(fig)
        self.written.append(path)


def _width(experiments) -> float:
    return max(5.0, 1.1 * len(experiments))


def _memory_kinds(experiments) -> set:
    return {p.get("memory_kind") for e in experiments for im in e["images"] for p in im["phases"].values()}


def plot_time_per_phase(c: Canvas, experiments) -> None:
    """Time per image, stacked by phase (a log axis where one run takes over 20 times another)."""
    labels, phases = [e["label"] for e in experiments], phases_of(experiments)
    fig, ax = c.plt.subplots(figsize=(_width(experiments), 4))
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
    c.legend_outside(ax)
    c.save(fig, "time_per_phase.png")


def plot_memory_per_phase(c: Canvas, experiments) -> None:
    """Peak memory per phase, side by side: GPU runs only (max allocated, reset at each phase); a CPU's peak RSS is
    one number for the whole process, so no per-phase plot is drawn from it."""
    if _memory_kinds(experiments) != {"cuda_max_allocated"}:
        print("note: memory_per_phase.png is not drawn: these runs' memory is the CPU process's lifetime peak RSS, "
              "which cannot be reset per phase (GPU runs record their peak per phase)", file=sys.stderr)
        return
    labels, phases = [e["label"] for e in experiments], phases_of(experiments)
    fig, ax = c.plt.subplots(figsize=(_width(experiments), 4))
    bar = 0.8 / max(1, len(phases))
    for j, ph in enumerate(phases):
        vals = [(e["summary"].get("phase_peak_memory_mb") or {}).get(ph) or 0.0 for e in experiments]
        ax.bar([i + (j - (len(phases) - 1) / 2) * bar for i in range(len(labels))], vals, width=bar, label=ph)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("peak GPU memory (MB, torch.cuda.max_memory_allocated)")
    ax.set_title("peak memory, by phase")
    c.legend_outside(ax)
    c.save(fig, "memory_per_phase.png")


def plot_memory_per_step(c: Canvas, experiments) -> None:
    """Memory over the steps, for any run: each step's own figure (GPU: the peak allocated within the step; CPU: the
    resident size at its end, tracking/tracker.py), averaged over images, against t."""
    labels = [e["label"] for e in experiments]
    curves = [over_t(e["images"], "memory_mb") for e in experiments]
    if not any(ts for ts, _ in curves):
        return
    fig, ax = c.plt.subplots(figsize=(7, 4))
    for i, ((ts, ys), label) in enumerate(zip(curves, curve_labels(labels, [cv[1] for cv in curves]))):
        if ts:
            ax.plot(ts, ys, label=label, **c.curve_style(i))
    ax.set_xlim(1000, 0)
    ax.set_xlabel("diffusion time t")
    gpu = _memory_kinds(experiments) == {"cuda_max_allocated"}
    ax.set_ylabel("MB per step: " + ("peak allocated within the step (GPU)" if gpu else
                                     "resident size at the step's end (CPU)"))
    ax.set_title("memory over the steps")
    c.legend_outside(ax)
    c.save(fig, "memory_per_step.png")


def plot_headline(c: Canvas, experiments) -> None:
    """How often the tool's answer is right and some particle found the image, 95 % intervals clustered by image."""
    fig, ax = c.plt.subplots(figsize=(max(5.0, 1.2 * len(experiments)), 4))
    for j, (name, hit) in enumerate(HEADLINE):
        rates = [rate_with_interval(e["images"], hit) for e in experiments]
        x = [i + (j - 0.5) * 0.3 for i in range(len(experiments))]
        y = [100 * (r[0] or 0.0) for r in rates]
        err = [[100 * ((r[0] or 0.0) - r[1]) for r in rates], [100 * (r[2] - (r[0] or 0.0)) for r in rates]]
        ax.bar(x, y, width=0.3, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(experiments)), differing_settings(experiments), rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of images (95 % interval clustered by image)")
    ax.set_title("chosen right (no ground truth) and found, per experiment")
    c.legend_outside(ax)
    c.save(fig, "headline.png")


def plot_spread(c: Canvas, experiments) -> None:
    """Mean pairwise latent distance against t, averaged over images: one panel per latent space (distances of two
    models' latents are not comparable)."""
    labels = [e["label"] for e in experiments]
    spaces: dict[str, list[int]] = {}
    for i, e in enumerate(experiments):
        model = e["runs"][0]["metric"].get("config", {}).get("model", {})
        spaces.setdefault(json.dumps(model, sort_keys=True), []).append(i)
    fig, axes = c.plt.subplots(1, len(spaces), figsize=(6 * len(spaces), 4), squeeze=False)
    for ax, (space, members) in zip(axes[0], spaces.items()):
        spreads = [over_t(experiments[i]["images"], "mean_pairwise_distance") for i in members]
        names = curve_labels([labels[i] for i in members], [sp[1] for sp in spreads])
        for i, ((ts, ys), label) in enumerate(zip(spreads, names)):
            if ts:
                ax.plot(ts, ys, label=label, **c.curve_style(i))
        model = json.loads(space)
        ax.set_xlim(1000, 0)
        ax.set_xlabel("diffusion time t")
        ax.set_ylabel("mean pairwise latent distance")
        ax.set_title(f"particle spread: model {model.get('name')} {model.get('ckpt_path') or ''}".strip(),
                     fontsize=8)
        c.legend_outside(ax)
    c.save(fig, "pairwise_distance.png")


def plot_commitment(c: Canvas, experiments) -> None:
    """eval.per_step runs: when do particles settle in their final mode (is a pruning step late enough?)."""
    curves = {e["label"]: [committed_fraction(im) for im in e["images"]] for e in experiments}
    curves = {label: [cv for cv in cs if cv] for label, cs in curves.items()}
    if not any(curves.values()):
        return
    fig, ax = c.plt.subplots(figsize=(6, 4))
    for i, (label, cs) in enumerate(curves.items()):
        if cs:
            ts = sorted({t for cv in cs for t in cv}, reverse=True)
            ax.plot(ts, [sum(cv[t] for cv in cs if t in cv) / sum(t in cv for cv in cs) for t in ts], label=label,
                    **c.curve_style(i))
    ax.set_xlim(1000, 0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("final particles already in their final mode")
    ax.set_title("mode commitment (eval.per_step)")
    c.legend_outside(ax)
    c.save(fig, "mode_commitment.png")


def _class_psnr(p) -> float | None:
    return p.get("class_psnr", p["psnr"])


PSNR_PANELS = (("best PSNR up to symmetry per image",
                lambda e: [max(_class_psnr(p) for p in im["particles"] if p.get("pruned_at") is None)
                           for im in e["images"]]),
               ("PSNR up to symmetry of every final particle",
                lambda e: [_class_psnr(p) for im in e["images"] for p in im["particles"]
                           if p.get("pruned_at") is None]))


def plot_psnr(c: Canvas, experiments) -> None:
    """PSNR distributions: the best particle per image, and every final particle."""
    labels = [e["label"] for e in experiments]
    fig, axes = c.plt.subplots(1, 2, figsize=(2 * _width(experiments), 4))
    for ax, (title, values) in zip(axes, PSNR_PANELS):
        data = [[v for v in values(e) if v is not None] for e in experiments]
        ax.boxplot([d or [float("nan")] for d in data])
        for i, d in enumerate(data, start=1):
            ax.plot([i] * len(d), d, "k.", alpha=0.5)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("PSNR against the closest member of the truth's class (dB)")
        ax.set_title(title)
    c.save(fig, "psnr_distribution.png")


PLOTS = (plot_time_per_phase, plot_memory_per_phase, plot_memory_per_step, plot_headline, plot_spread,
         plot_commitment, plot_psnr)


def plot_all(experiments, out: Path) -> list[Path]:
    """Every plot into `out`, and each experiment's image grids under out/grids/; the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    canvas = Canvas(out, plt)
    for plot in PLOTS:
        plot(canvas, experiments)
    for e in experiments:
        canvas.written += plot_grids(e, out / "grids" / _slug(e["label"]), plt)
    return canvas.written


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
