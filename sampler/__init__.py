"""LatentDAPS sampler: schedules, per-particle state, MCMC and the annealing loop with its hook points."""
from core.settings import optional, text

from . import mcmc as _mcmc, precision as _precision, schedule as _schedule
from .hooks import Hook, StepContext
from .latent_daps import init_latents, latent_daps, ode_x0_estimate
from .schedule import annealing_sigmas, sigmas_of, step_time, trigger_step
from .state import ParticleState, measurement_generator, particle_generator
from .trace import Trace

# the sampler config group's settings, each block declared by the module that reads it
SETTINGS = {"for_model": optional(text(), help="the model this preset is tuned for (null: any)"),
            **_schedule.SETTINGS, "mcmc": _mcmc.SETTINGS, "precision": _precision.SETTINGS}

__all__ = ["SETTINGS", "Hook", "StepContext", "Trace", "ParticleState", "latent_daps", "init_latents", "ode_x0_estimate",
           "annealing_sigmas", "sigmas_of", "step_time", "trigger_step", "particle_generator", "measurement_generator"]
