"""Resample: loss-guided resampling of each image's particles (Feynman-Kac steering) at events in a window of the
annealing, on while resampling_interval > 0 (draw.py beside it has the draw)."""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import check
from core.settings import Block, choice, integer, number
from .draw import SCHEMES, ResamplingHook
from sampler.stage import RunFacts, Stage


@dataclass(frozen=True)
class ResamplingSettings:
    """resampling_interval; events: the annealing steps at which it resamples; seed: the run's; block: the
    `resampling` block but its window (start_t, end_t: read into events)."""

    interval: int
    events: tuple[int, ...]
    seed: int
    block: Block


def settings(values: Block, run: RunFacts) -> ResamplingSettings:
    rc = values.resampling
    check(rc.start_t >= rc.end_t, f"resampling.start_t={rc.start_t} is below end_t={rc.end_t}: the window runs from "
                                  f"start_t down to end_t")
    events = []
    if values.resampling_interval > 0:
        events = ResamplingHook.event_steps(values.resampling_interval, rc.start_t, rc.end_t, run.num_steps)
        check(run.particle_num >= 2, "resampling_interval > 0 needs particle_num >= 2 (it draws among particles)")
        check(bool(events), f"resampling.start_t={rc.start_t}, end_t={rc.end_t} hold no annealing step of the "
                            f"{run.num_steps}: no resampling would run")
    return ResamplingSettings(values.resampling_interval, tuple(events), run.seed,
                              Block({k: v for k, v in rc.items() if k not in ("start_t", "end_t")}))


def hook(s: ResamplingSettings) -> ResamplingHook:
    return ResamplingHook(list(s.events), s.seed, **s.block)


def record(trace, s: ResamplingSettings) -> list[dict]:
    """The resampling events for this image: ESS, whether it resampled, every particle's weight, loss and number
    of offspring, the dropped ones, and each new copy's parent (its ancestry)."""
    events = []
    for e in (r for r in trace.of("resample") if "particle" not in r):
        mine = [r for r in trace.of("resample") if "particle" in r and r["k"] == e["k"]]
        events.append({"k": e["k"], "t": e["t"], "ess": e["ess"], "resampled": e["resampled"],
                       "temperature": e["temperature"], "weights": {r["particle"]: r["weight"] for r in mine},
                       "losses": {r["particle"]: r["loss"] for r in mine},
                       "offspring": {r["particle"]: r["offspring"] for r in mine},
                       "dropped": [r["particle"] for r in mine if r["offspring"] == 0],
                       "children": {r["particle"]: r["parent"] for r in trace.of("birth") if r["k"] == e["k"]}})
    return events


STAGE = Stage(
    name="resampling", flag="resampling_interval", order=20, drops=("resample",),
    flag_setting=integer(0, default=0, help="annealing steps between loss-guided resampling events in the "
                                            "resampling window (0 = off)"),
    block={
        "start_t": integer(0, 1000, default=900, help="the window of events: from the first step with t <= start_t"),
        "end_t": integer(0, 1000, default=200, help="... to the last with t >= end_t, every resampling_interval steps"),
        "temperature": number(0, default=0.2, low_open=True,
                              help="weights exp(-(L - L_min) / (temperature L_min)), per image, L the loss at z0"),
        "ess_threshold": number(0, 1, default=1.0, low_open=True,
                                help="resample an image when its ESS < ess_threshold x particles; 1 = at every event"),
        "scheme": choice(*SCHEMES, default="systematic", help="systematic | multinomial"),
    },
    settings=settings, hook=hook, record=record, fragment=lambda s: f"rs{s.interval}",
)
