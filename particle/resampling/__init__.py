"""Resample: loss-guided resampling of each image's particles (Feynman-Kac steering) at events in a window of the
annealing, on while resampling_interval > 0 (draw.py beside it has the draw)."""
from __future__ import annotations

from core.errors import check
from core.settings import choice, integer, number
from .draw import SCHEMES, ResamplingHook
from sampler.stage import Stage


def events(cfg) -> list[int]:
    rc = cfg.resampling
    return ResamplingHook.event_steps(cfg.resampling_interval, rc.start_t, rc.end_t, cfg.sampler.annealing.num_steps)


def check_stage(cfg) -> None:
    rc = cfg.resampling
    check(rc.start_t >= rc.end_t, f"resampling.start_t={rc.start_t} is below end_t={rc.end_t}: the window runs from "
                                  f"start_t down to end_t")
    if cfg.resampling_interval > 0:
        check(cfg.particle_num >= 2, "resampling_interval > 0 needs particle_num >= 2 (it draws among particles)")
        check(bool(events(cfg)), f"resampling.start_t={rc.start_t}, end_t={rc.end_t} hold no annealing step of the "
                                 f"{cfg.sampler.annealing.num_steps}: no resampling would run")


def hook(cfg) -> ResamplingHook:
    block = {k: v for k, v in cfg.resampling.items() if k not in ("start_t", "end_t")}   # the window: the steps
    return ResamplingHook(events(cfg), cfg.seed, **block)


def record(trace, cfg) -> list[dict]:
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
    on=lambda cfg: cfg.resampling_interval > 0, check=check_stage, hook=hook, record=record,
    fragment=lambda cfg: f"rs{cfg.resampling_interval}",
)
