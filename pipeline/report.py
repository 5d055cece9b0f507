"""What a run prints on stdout: a header, one row per image as soon as it is finished (so a log shows progress), and
the summary with what its columns mean."""
from __future__ import annotations

import sys

from evaluation.failures import KINDS


# the trust label as the row shows it (evaluation/trust.LABELS)
TRUST = {"determined": "determined", "orientation undetermined": "orient. undet.", "ambiguous": "ambiguous",
         "no fit": "no fit"}


def header(particles: int) -> str:
    return (f"{'image':>5} {'name':<16} {'answer':>6} {'answer dB':>9} {'trust':<14} {'found':>5} "
            f"{'modes 0/180/fail':>16} {'failed t/u/f/s':>14} {f'DAPS best-of-{particles} dB':>19} {'time s':>7}")


def row(im: dict) -> str:
    m, c, f = im["modes"], im["best_by_prior"], im.get("failures", {})
    kinds = "/".join(str(f.get(k, 0)) for k in KINDS)
    trust = TRUST[im["trust"]["label"]] if im.get("trust") else "–"
    return (f"{im['index']:>5} {im['name'][:16]:<16} {'right' if c['mode'] == '0' else 'wrong':>6} {c['psnr']:>9.2f} "
            f"{trust:<14} {'yes' if im['found'] else 'no':>5} {m['0']:>6}/{m.get('180', '-')}/{m['fail']:<6} {kinds:>14} "
            f"{im['best_of_n']['psnr']:>19.2f} {im['total_time_s']:>7.1f}")


def legend() -> str:
    return ("answer: the tool's choice without the ground truth, turned as the prior prefers (answer.png), right up "
            "to the measurement's symmetries; trust: how far to trust it without the ground truth (no fit, ambiguous, "
            "orientation undetermined, determined: docs/workflow.md); found: some particle is the image; failed: t twin, u unrepresentable, "
            "f fits within the noise, s search; DAPS best-of-N: the best particle as sampled against the unturned "
            "truth (an oracle)")


def trust_line(s: dict) -> str:
    shares = s.get("trust_shares") or {}
    return ", ".join(f"{100 * v:.0f} % {k}" for k, v in shares.items() if v)


def summary_line(s: dict) -> str:
    return (f"summary: {s['images']} image(s): the answer is right in {100 * s['prior_success_rate']:.0f} % "
            f"({s['prior_choice_psnr_mean']:.2f} dB; trust: {trust_line(s)}); some particle found it in {100 * s['search_success_rate']:.0f} % "
            f"(particle success {100 * s['particle_success_rate']:.0f} %); DAPS best-of-{s['particles']:g} PSNR "
            f"{s['best_of_n_psnr_mean']:.2f} dB; {s['time_s_per_image']:.1f} s/image")


def representable_note(summary: dict) -> str | None:
    """One line when under 90 % of the images are ones the model can make: then failures are the first stage's."""
    rate = summary.get("representable_rate")
    if rate is None or rate >= 0.9:
        return None
    return (f"the model can make only {100 * rate:.0f} % of these ground truths (its first stage's reconstruction "
            f"fits y within the noise): failures there are the autoencoder's, not the sampler's; "
            f"data.ground_truth=decoded benchmarks on truths it can make")


def echo(line: str) -> None:
    print(line, flush=True)


def finish(summary: dict) -> None:
    """The summary lines after the last row, and the representability note on stderr when it applies."""
    echo(summary_line(summary))
    echo(legend())
    note = representable_note(summary)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)


from hydra.experimental.callback import Callback  # noqa: E402  (Hydra comes with the entry point)


class SweepReport(Callback):
    """A Hydra callback: after a --multirun whose jobs ran in other processes (submitit, local or SLURM: their
    stdout went to the .submitit logs), every run's rows and summary on the console, read from its metric.json."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from pathlib import Path

        from tracking.metric_file import read_json

        if "submitit" not in str(config.hydra.launcher.get("_target_", "")):
            return                                  # the basic launcher ran the jobs here: their rows are printed
        for path in sorted(Path(str(config.hydra.sweep.dir)).glob("*/metric.json")):
            metric = read_json(path)
            if not metric.get("images"):
                continue
            echo(f"{path.parent}:")
            echo(header(metric["config"]["particle_num"]))
            for im in metric["images"]:
                echo(row(im))
            echo(summary_line(metric["summary"]))
