"""Explore: a decaying repulsion between each image's particles (score-relative or as Particle Guidance), on while
repulsion_scale > 0 (force.py beside it has the force)."""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigError, check
from core.settings import Block, choice, integer, number, optional
from .force import DEFAULT_END_T, FEATURES, MODES, SCHEDULES, RepulsionHook, end_step
from sampler.stage import RunFacts, Stage


@dataclass(frozen=True)
class RepulsionSettings:
    """repulsion_scale; end_k: the step from which the strength is 0; stop_k: the step from which no stage adds a
    drift (RunFacts.drift_end_k); block: the `repulsion` block but its end_t (read into end_k)."""

    scale: float
    end_k: int | None
    stop_k: int | None
    block: Block


def settings(values: Block, run: RunFacts) -> RepulsionSettings:
    block = values.repulsion
    end_k = end_step(run.step_of(block.end_t) if block.end_t is not None else None, run.drift_end_k, run.num_steps)
    s = RepulsionSettings(float(values.repulsion_scale), end_k, run.drift_end_k,
                          Block({k: v for k, v in block.items() if k != "end_t"}))
    if s.scale > 0:
        check(run.particle_num >= 2, "repulsion_scale > 0 needs particle_num >= 2 (repulsion acts between particles)")
        if end_k is None or end_k < 1:
            raise ConfigError(f"repulsion.end_t={block.end_t} is invalid with {run.num_steps} annealing steps: the "
                              f"repulsion would end before step 1 (use an end t below 1000, or refine_step below 1000)")
    return s


def hook(s: RepulsionSettings) -> RepulsionHook:
    return RepulsionHook(s.scale, s.end_k, s.stop_k, **s.block)


STAGE = Stage(
    name="repulsion", flag="repulsion_scale", order=10,
    flag_setting=number(0, default=0.0, help="initial repulsion strength, decaying to 0 (0 = independent particles, "
                                             "recommended)"),
    block={
        "mode": choice(*MODES, default="score_relative",
                       help="score_relative: |force| = strength |score|; absolute: strength x RBF-kernel gradient; "
                            "particle_guidance: constant strength x kernel gradient while sigma >= sigma_min"),
        "sigma_min": number(0, default=1.0, help="particle_guidance only: off below this sigma (Particle Guidance's "
                                                 "S_min)"),
        "schedule": choice(*SCHEDULES, default="cosine", help="decay of repulsion_scale to 0"),
        "end_t": optional(integer(0, 999), help=f"t at which the strength reaches 0; null = refine_step when set, "
                                                f"else t = {DEFAULT_END_T}"),
        "features": choice(*FEATURES, default="latent", help="latent, or pixel (decoded, average-pooled to "
                                                             "pixel_size; force through a decoder VJP)"),
        "pixel_size": integer(1, default=64, help="side of the pooled pixel features"),
    },
    settings=settings, hook=hook,
    step_facts={"repulsion_score_ratio": [("repulsion_score_ratio", "mean")]},
    fragment=lambda s: f"rep{s.scale:g}",
)
