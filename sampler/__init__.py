"""LatentDAPS sampler: schedules, per-particle state, MCMC and the annealing loop with its hook points."""
from .hooks import Hook, StepContext
from .latent_daps import init_latents, latent_daps, ode_x0_estimate
from .schedule import annealing_sigmas, step_time, trigger_step
from .state import ParticleState, measurement_generator, particle_generator
from .trace import Trace

__all__ = ["Hook", "StepContext", "Trace", "ParticleState", "latent_daps", "init_latents", "ode_x0_estimate",
           "annealing_sigmas", "step_time", "trigger_step", "particle_generator", "measurement_generator"]
