"""Refine: from refine_step on, ReSample-style latent optimisation with hard data consistency, each particle
optimised and stopped on its own (sampler/optimize.py the optimiser, hook.py the hook, renoise.py ReSample's stochastic resample)."""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from core.errors import ConfigError, is_number
from core.settings import Block, Setting, boolean, choice, integer, number
from .hook import RefineHook
from sampler.schedule import check_trigger, trigger_step
from sampler.stage import RunFacts, Stage


@dataclass(frozen=True)
class RefineSettings:
    """refine_step (t, -1 off) and its annealing step k; K the annealing steps; block: the `refine` block."""

    step: int
    k: int | None
    num_steps: int
    block: Block


def settings(values: Block, run: RunFacts) -> RefineSettings:
    """The refine settings; with refine_step set, some optimisation must run."""
    s = RefineSettings(values.refine_step, run.step_of(values.refine_step), run.num_steps, values.refine)
    check_trigger("refine_step", s.step, s.num_steps, "refine would never begin")
    if s.k is not None and not any(hook(s).runs_at(k, s.num_steps) for k in range(s.k, s.num_steps)):
        raise ConfigError(f"refine_step={s.step} leaves {s.num_steps - s.k} refine step(s), none of them "
                          "the last with refine.final=false: no optimisation would run")
    return s


def hook(s: RefineSettings) -> RefineHook:
    return RefineHook(s.k, **s.block)


def record(trace, s: RefineSettings) -> dict:
    """The refine stage's calls for this image, their iterations, stop reasons and time."""
    per_particle = [r for r in trace.of("refine") if "particle" in r]
    calls = []
    for c in (r for r in trace.of("refine") if "particle" not in r):
        mine = [r for r in per_particle if r["k"] == c["k"]]
        calls.append({"k": c["k"], "t": c["t"], "sigma": c["sigma"], "time_s": c["time_s"],
                      "resample_weight": c["resample_weight"], "particle_ids": [r["particle"] for r in mine],
                      **{key: [r[key] for r in mine]
                         for key in ("iterations", "stop_reason", "loss_before", "loss_after", "accepted")}})
    iters = [n for c in calls for n in c["iterations"]]
    # per particle: its iterations and stop reasons over the calls, and its share of the calls' time (a call
    # optimises the batch together, each iteration costing in proportion to the particles still running, so a
    # particle's share of a call is its share of the call's iterations)
    particles: dict[int, dict] = {}
    for c in calls:
        total = sum(c["iterations"])
        for pid, n, why in zip(c["particle_ids"], c["iterations"], c["stop_reason"]):
            mine = particles.setdefault(pid, {"iterations": 0, "stop_reasons": {}, "time_s": 0.0})
            mine["iterations"] += n
            mine["stop_reasons"][why] = mine["stop_reasons"].get(why, 0) + 1
            mine["time_s"] += c["time_s"] * n / total if total else 0.0
    return {"num_calls": len(calls), "total_iterations": sum(iters),
            "mean_iterations": statistics.fmean(iters) if iters else None,
            "total_time_s": sum(c["time_s"] for c in calls),
            "stop_reasons": dict(Counter(r for c in calls for r in c["stop_reason"])),
            "particles": {str(pid): v for pid, v in sorted(particles.items())}, "calls": calls}


def stop_reasons(done: list[dict]) -> dict:
    """Each stop reason's count over the refine records of several images."""
    return dict(sum((Counter(o["stop_reasons"]) for o in done), Counter()))


def summary(images: list[dict]) -> dict:
    """Per optimised image, the optimiser's iterations and time; per particle and call, the share that ran at least
    one iteration (None when no image was refined)."""
    done = [im["refine"] for im in images if im.get("refine")]
    mean = lambda v: statistics.fmean(v) if v else None          # noqa: E731
    per_call = [n for o in done for c in o["calls"] for n in c["iterations"]]
    return {"refine_iterations_per_image": mean([o["total_iterations"] for o in done]),
            "refine_time_s_per_image": mean([o["total_time_s"] for o in done]),
            "refine_optimised_share": mean([float(n > 0) for n in per_call]),
            "refine_stop_reasons": stop_reasons(done) if done else None}


def notes(images: list[dict]) -> list[str]:
    """What a reader must know before crediting refine with a difference: where it ran no optimisation at all."""
    done = [im["refine"] for im in images if im.get("refine")]
    if not done or any(o["total_iterations"] for o in done):
        return []
    return [f"refine ran no optimisation iteration on any particle (stop reasons {stop_reasons(done)}): any "
            f"difference it made comes from its re-noise (refine.resample), not from the optimiser"]


STAGE = Stage(
    name="refine", flag="refine_step", order=40,
    old_names={"optimization_step": "refine_step", "optimization": "refine"},     # its names until 2026-12
    flag_setting=integer(0, 1000, default=-1, off=-1,
                         help="diffusion time t from which ReSample-style latent optimisation runs (-1 = off)"),
    # eps auto + stochastic resample: the only setting that lowered no benchmark's PSNR beyond 0.1 dB (docs/refine.md)
    block={
        "every": integer(0, default=1, help="after every n-th refine step before the last, from the first; 0 = none"),
        "final": boolean(True, help="after the last annealing step (on the sampler's output), as ReSample ends"),
        "lr": number(0, default=5.0e-3, low_open=True, help="Adam step (ReSample's)"),
        "max_iters": integer(1, default=500, help="per call (ReSample's)"),
        "eps": Setting("auto", lambda v: v == "auto" or (is_number(v) and v >= 0),
                       "auto (the task's noise level) or a number >= 0 (0 = no threshold stop)",
                       "stop a particle when ||A(D(z)) - y||^2 / len(y) < eps^2 (ReSample's: 1e-3); auto: the noise "
                       "level (the discrepancy principle)"),
        "plateau_window": integer(0, default=200, help="stop a particle when its loss exceeds its loss this many "
                                                       "iterations earlier; 0 = off"),
        "accept_if_improve": boolean(False, help="keep the optimised latent only if its loss went down"),
        "weight_decay": number(0, default=0.0, help="AdamW's decoupled decay; 0 = Adam"),
        "resample": choice("replace", "stochastic", default="stochastic",
                           help="replace: z0 <- the optimised z0; stochastic: ReSample's resample around a blend"),
        "gamma": number(0, default=40.0, low_open=True, help="ReSample's gamma in the stochastic resample's variance"),
    },
    settings=settings, hook=hook, record=record, summary=summary, path_rows=True,      # its optimiser stops itself
    drift_end=lambda values, K: trigger_step(values.refine_step, K),       # latent optimisation is drift-free
    columns=[("refine_iterations_per_image", "refine iters/image", "1f"),
             ("refine_time_s_per_image", "refine time/image s", "2f"),
             ("refine_optimised_share", "refine: particles optimised", "pct")],
    notes=notes,
    step_facts={"refine_iters": [("refine_iters_mean", "mean"), ("refine_iters_max", "max")],
                "refine_accepted": [("refine_accepted", "sum")]},
    phases=lambda s: {"refine": s.k}, boundaries=lambda s: {"refine_k": s.k},
    fragment=lambda s: f"refine{s.step}",
)
