"""The samplers: LatentDAPS (schedules, MCMC and the annealing loop with its hook points) and the ReSample baseline,
on one per-particle state; which one runs is the sampler config group's `name`."""
from dataclasses import dataclass

from core.settings import Block, choice, optional, text

from . import mcmc as _mcmc, precision as _precision, resample as _resample, schedule as _schedule
from .hooks import Hook, StepContext
from .latent_daps import init_latents, latent_daps, ode_x0_estimate
from .schedule import annealing_sigmas, step_time, trigger_step
from .state import ParticleState, measurement_generator, particle_generator
from .trace import Trace

# the sampler config group's settings, each block declared by the module that reads it
SETTINGS = {"name": choice("latent_daps", "resample", default="latent_daps",
                           help="the sampler: LatentDAPS (annealing, ode, mcmc) or ReSample (its resample block)"),
            "for_model": optional(text(), help="the model this preset is tuned for (null: any)"),
            **_schedule.SETTINGS, "mcmc": _mcmc.SETTINGS, "precision": _precision.SETTINGS,
            "resample": _resample.SETTINGS}


@dataclass(frozen=True)
class SamplerSettings:
    """The sampler group resolved once (pipeline/resolve.py): which sampler, its schedule as data and its blocks as
    plain values. LatentDAPS: sigmas (sigma_0 … sigma_K = 0), the ode and mcmc blocks; ReSample: its DDIM grid's
    length and its resample block; both: the decoder's autocast dtype (None: fp32)."""

    name: str
    num_steps: int                      # the steps the tracker counts (ReSample: its DDIM steps and the closing one)
    start_scale: float                  # the first latent's standard deviation
    autocast_dtype: object
    sigmas: tuple[float, ...] = ()
    ode: Block | None = None
    mcmc: Block | None = None
    resample: Block | None = None

    @staticmethod
    def of(block: Block) -> "SamplerSettings":
        """From the resolved sampler block (every declared setting present)."""
        dtype = _precision.decoder_autocast_dtype(block.precision)
        if block.name == "resample":
            r = block.resample
            return SamplerSettings("resample", len(_resample.ddim_timesteps(r.num_steps)) + 1, 1.0, dtype, resample=r)
        a = block.annealing
        return SamplerSettings("latent_daps", a.num_steps, a.sigma_max, dtype,
                               tuple(float(s) for s in annealing_sigmas(a.num_steps, a.sigma_max, a.sigma_min)),
                               block.ode, block.mcmc)


def run_sampler(model, operator, state, settings: SamplerSettings, hooks, trace):
    """The configured sampler over the whole schedule; returns the final state (state.z the output latents)."""
    if settings.name == "resample":
        schedule = _resample.ddim_schedule(model.alphas_cumprod, settings.resample.num_steps)
        return _resample.resample(model, operator, state, schedule, settings.resample, hooks, trace,
                                  settings.autocast_dtype)
    return latent_daps(model, operator, state, settings.sigmas, settings.ode, settings.mcmc, hooks, trace,
                       settings.autocast_dtype)


def phase_of(settings: SamplerSettings):
    """k -> the phase name of a ReSample step; None for LatentDAPS (its phases are its stages')."""
    if settings.name != "resample":
        return None
    return _resample.phase_of(settings.num_steps - 1, settings.resample)


def sampler_record(trace, settings: SamplerSettings) -> dict:
    """The sampler's own section of an image's record: ReSample's `resample` (its optimisation calls); none for
    LatentDAPS (its stages write theirs)."""
    return {"resample": _resample.record(trace)} if settings.name == "resample" else {}

__all__ = ["SETTINGS", "SamplerSettings", "run_sampler", "phase_of", "sampler_record", "Hook", "StepContext", "Trace", "ParticleState", "latent_daps", "init_latents", "ode_x0_estimate",
           "annealing_sigmas", "step_time", "trigger_step", "particle_generator", "measurement_generator"]
