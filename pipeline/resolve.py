"""The run's settings resolved once, after each setting's own check: every block a read-only core.settings.Block
(every declared setting present), the sampler's SamplerSettings (its schedule as data), each stage's own typed
settings (every step index computed) and the evaluation's EvalSettings. Below pipeline/, modules receive these;
only the builders (models, operators, data) take their config group."""
from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from core.settings import Block, resolve as resolve_block
from evaluation.record import EvalSettings
from sampler import SamplerSettings
from sampler.stage import RunFacts, Stage
from stages import ordered


@dataclass(frozen=True)
class RunSettings:
    """seed, particle_num, particle_offset: the run's flags; sampler: its SamplerSettings; stages: every stage's
    settings by name (LatentDAPS; none for ReSample, which runs no stage); active: the stages that are on, with
    their settings, in the order they act; eval: what evaluating an image reads; model, data: their resolved
    groups; per_step: the ground-truth hook's switch (eval.per_step)."""

    seed: int
    particle_num: int
    particle_offset: int
    sampler: SamplerSettings
    eval: EvalSettings
    model: Block
    data: Block
    per_step: bool = False
    stages: dict = field(default_factory=dict)
    active: tuple[tuple[Stage, object], ...] = ()


def block(node, schema=None) -> Block:
    """A config group or block as a read-only Block of plain values, resolved against its declarations when given:
    what the modules below the pipeline receive instead of the node."""
    values = OmegaConf.to_container(node, resolve=True)
    return Block(values) if schema is None else resolve_block(values, schema)


def stage_values(stage: Stage, cfg) -> Block:
    """A stage's own keys out of the config (its flag, its more flags, its block): what its `settings` reads."""
    return block(OmegaConf.masked_copy(cfg, [k for k in (stage.flag, *stage.more_flags, stage.name) if k in cfg]))


def sampler_name(cfg) -> str:
    """The sampler a config names (latent_daps unless its group says resample)."""
    import sampler

    return block(cfg.sampler, sampler.SETTINGS).name


def stage_settings(values: dict, cfg, num_steps: int) -> dict:
    """Every stage's typed settings from its values (stage_values), by name (each raises ConfigError on settings that
    do not go together)."""
    ends = [k for stage in ordered() if (k := stage.drift_end(values[stage.name], num_steps)) is not None]
    run = RunFacts(num_steps, int(cfg.particle_num), int(cfg.seed), min(ends, default=None))
    return {stage.name: stage.settings(values[stage.name], run) for stage in ordered()}


def resolve(cfg) -> RunSettings:
    """The settings every module below the pipeline reads, from a config whose settings passed their own checks
    (pipeline/validate.validate calls this last: the stages' checks across settings are made here)."""
    import data
    import models
    import sampler
    from evaluation import orientation, perceptual, trajectory, trust

    sampler_block = block(cfg.sampler, sampler.SETTINGS)
    sampler_settings = SamplerSettings.of(sampler_block)
    values = {stage.name: stage_values(stage, cfg) for stage in ordered()}
    # ReSample runs no stage (validate.check_sampler refused any that is on)
    stages = stage_settings(values, cfg, sampler_settings.num_steps) if sampler_settings.name == "latent_daps" else {}
    active = tuple((stage, stages[stage.name]) for stage in ordered()
                   if stage.name in stages and stage.is_on(values[stage.name]))
    evaluation = block(cfg.eval, {**perceptual.SETTINGS, **trajectory.SETTINGS})
    data_block = block(cfg.data, data.SETTINGS)
    return RunSettings(
        seed=int(cfg.seed), particle_num=int(cfg.particle_num), particle_offset=int(cfg.particle_offset),
        sampler=sampler_settings,
        eval=EvalSettings(int(cfg.seed), float(data_block.fail_psnr), block(cfg.orientation, orientation.SETTINGS),
                          block(cfg.trust, trust.SETTINGS)),
        model=block(cfg.model, models.SETTINGS), data=data_block, per_step=bool(evaluation.per_step),
        stages=stages, active=active)
