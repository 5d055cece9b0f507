"""Explore: a decaying repulsion between each image's particles (score-relative or as Particle Guidance), on while
repulsion_scale > 0 (force.py beside it has the force)."""
from __future__ import annotations

from core.errors import ConfigError, check
from core.settings import choice, integer, number, optional
from .force import DEFAULT_END_T, FEATURES, MODES, SCHEDULES, RepulsionHook, end_step
from sampler.stage import Stage
from resample_opt import refine_k          # the repulsion ends where refine begins, at the latest


def check_stage(cfg) -> None:
    if cfg.repulsion_scale > 0:
        check(cfg.particle_num >= 2, "repulsion_scale > 0 needs particle_num >= 2 (repulsion acts between particles)")
        end_k = end_step(cfg, refine_k(cfg))
        if end_k is None or end_k < 1:
            raise ConfigError(f"repulsion.end_t={cfg.repulsion.end_t} is invalid with "
                              f"{cfg.sampler.annealing.num_steps} annealing steps: the repulsion would end before step "
                              f"1 (use an end t below 1000, or refine_step below 1000)")


def hook(cfg) -> RepulsionHook:
    block = {k: v for k, v in cfg.repulsion.items() if k != "end_t"}       # end_t is read into end_k
    return RepulsionHook(float(cfg.repulsion_scale), end_step(cfg, refine_k(cfg)), refine_k(cfg), **block)


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
    on=lambda cfg: cfg.repulsion_scale > 0, check=check_stage, hook=hook,
    step_facts={"repulsion_score_ratio": [("repulsion_score_ratio", "mean")]},
    fragment=lambda cfg: f"rep{cfg.repulsion_scale:g}",
)
