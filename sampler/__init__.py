"""The samplers: LatentDAPS (schedules, MCMC and the annealing loop with its hook points) and the ReSample baseline,
on one per-particle state; which one runs is the sampler config group's `name`."""
from core.settings import choice, optional, text, value

from . import mcmc as _mcmc, precision as _precision, resample as _resample, schedule as _schedule
from .hooks import Hook, StepContext
from .latent_daps import init_latents, latent_daps, ode_x0_estimate
from .schedule import annealing_sigmas, sigmas_of, step_time, trigger_step
from .state import ParticleState, measurement_generator, particle_generator
from .trace import Trace

# the sampler config group's settings, each block declared by the module that reads it
SETTINGS = {"name": choice("latent_daps", "resample", default="latent_daps",
                           help="the sampler: LatentDAPS (annealing, ode, mcmc) or ReSample (its resample block)"),
            "for_model": optional(text(), help="the model this preset is tuned for (null: any)"),
            **_schedule.SETTINGS, "mcmc": _mcmc.SETTINGS, "precision": _precision.SETTINGS,
            "resample": _resample.SETTINGS}


def name_of(sampler_cfg) -> str:
    return value(sampler_cfg, SETTINGS, "name")


def ddim_schedule_of(model, sampler_cfg):
    """ReSample's DDIM grid on the model's own DDPM schedule."""
    return _resample.ddim_schedule(model.alphas_cumprod, sampler_cfg.resample.num_steps)


def steps_of(sampler_cfg) -> int:
    """The sampler's steps as the tracker sees them: LatentDAPS's annealing steps; ReSample's DDIM steps and its
    closing optimisation."""
    if name_of(sampler_cfg) == "resample":
        num = sampler_cfg.resample.num_steps
        return len(_resample.ddim_timesteps(num)) + 1
    return sampler_cfg.annealing.num_steps


def start_scale(sampler_cfg) -> float:
    """The standard deviation of the first latent: LatentDAPS's sigma_max, ReSample's x_T ~ N(0, I)."""
    return 1.0 if name_of(sampler_cfg) == "resample" else sampler_cfg.annealing.sigma_max


def run_sampler(model, operator, state, sampler_cfg, hooks, trace):
    """The configured sampler over the whole schedule; returns the final state (state.z the output latents)."""
    if name_of(sampler_cfg) == "resample":
        dtype = _precision.decoder_autocast_dtype(sampler_cfg.precision)
        return _resample.resample(model, operator, state, ddim_schedule_of(model, sampler_cfg), sampler_cfg.resample,
                                  hooks, trace, dtype)
    return latent_daps(model, operator, state, sigmas_of(sampler_cfg.annealing), sampler_cfg, hooks, trace)


def phase_of(sampler_cfg):
    """k -> the phase name of a ReSample step; None for LatentDAPS (its phases are its stages')."""
    if name_of(sampler_cfg) != "resample":
        return None
    return _resample.phase_of(steps_of(sampler_cfg) - 1, sampler_cfg.resample)


def sampler_record(trace, sampler_cfg) -> dict:
    """The sampler's own section of an image's record: ReSample's `resample` (its optimisation calls); none for
    LatentDAPS (its stages write theirs)."""
    return {"resample": _resample.record(trace)} if name_of(sampler_cfg) == "resample" else {}

__all__ = ["SETTINGS", "name_of", "steps_of", "start_scale", "run_sampler", "phase_of", "sampler_record", "Hook", "StepContext", "Trace", "ParticleState", "latent_daps", "init_latents", "ode_x0_estimate",
           "annealing_sigmas", "sigmas_of", "step_time", "trigger_step", "particle_generator", "measurement_generator"]
