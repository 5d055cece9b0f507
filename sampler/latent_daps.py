"""LatentDAPS: decoupled annealing posterior sampling in a diffusion model's latent space, for a batch of particles."""
from __future__ import annotations

import dataclasses
import math

import torch

from core.tensors import per_row

from .hooks import Hook, StepContext
from .mcmc import mcmc, step_size
from .schedule import lr_ratio, ode_sigmas, step_time
from .state import ParticleState
from .trace import Trace


@torch.no_grad()
def ode_x0_estimate(model, z, sigma: float, num_steps: int, sigma_min: float):
    """z0_hat: Euler steps of the probability-flow ODE dz/dsigma = (z - D(z, sigma)) / sigma."""
    grid = ode_sigmas(sigma, num_steps, sigma_min)
    for s, s_next in zip(grid[:-1], grid[1:]):
        z = z + (s_next - s) * (z - model.denoise(z, float(s))) / s
    return z


def init_latents(state_generators, latent_shape, sigma_max: float, device, dtype):
    """z ~ N(0, sigma_0^2 I), one draw per particle generator."""
    return torch.stack([
        torch.randn(latent_shape, generator=g, device=device, dtype=dtype) for g in state_generators
    ]) * sigma_max


def latent_daps(model, operator, state: ParticleState, sigmas, ode, mcmc_settings, hooks: list[Hook] = (),
                trace: Trace | None = None, autocast_dtype=None) -> ParticleState:
    """Run the annealing over sigmas = sigma_0 … sigma_K (sigma_K = 0; schedule.annealing_sigmas); ode: the x0
    estimate's num_steps and sigma_min; mcmc_settings: the mcmc block (mcmc.SETTINGS); autocast_dtype: the decoder's
    precision (None: fp32). Hooks observe and extend each step and write into `trace`.

        for k in 0 … K-1:
            z0_hat = ode_x0_estimate(z, sigma_k)                   # no grad
            z0     = mcmc(z0_hat, sigma_k, y, + hooks' drifts)     # grad through the decoder
            state  = hooks' after_step(state)                      # prune, resample, refine
            z      = z0 + r sigma_{k+1} eps                        # r: the hooks' re-noise scales (1 = DAPS)
    """
    K = len(sigmas) - 1
    trace = Trace() if trace is None else trace
    for k in range(K):
        ctx = StepContext(k=k, t=step_time(k, K), sigma=float(sigmas[k]), sigma_next=float(sigmas[k + 1]),
                          num_steps=K, model=model, operator=operator, trace=trace, autocast_dtype=autocast_dtype)
        for h in hooks:
            h.begin_step(state, ctx)

        z0_hat = ode_x0_estimate(model, state.z, ctx.sigma, ode.num_steps, ode.sigma_min)

        def drift(z, score, alive, _state=state, _ctx=ctx):
            now = dataclasses.replace(_state, alive=alive)         # who is still alive at this MCMC iteration
            terms = [d for d in (h.drift(z, score, now, _ctx) for h in hooks) if d is not None]
            return sum(terms) if terms else None
        lr = step_size(lr_ratio(k, K), mcmc_settings.lr, mcmc_settings.lr_min_ratio)
        z0, loss, alive = mcmc(state, z0_hat, ctx.sigma, lr, mcmc_settings, model, operator, drift, autocast_dtype)
        # a particle that diverged at an earlier step stays frozen: its z0, loss and z no longer change
        was_alive = state.alive
        state.z0 = z0 if state.z0 is None else torch.where(per_row(was_alive, z0), z0, state.z0)
        state.loss = torch.where(was_alive, loss, state.loss)
        state.z0_hat, state.alive = z0_hat, alive

        for h in hooks:
            state = h.after_step(state, ctx)
        renoise = math.prod(h.renoise_scale(ctx) for h in hooks)
        noise = renoise * ctx.sigma_next * state.randn()
        state.z = torch.where(per_row(state.alive, state.z), state.z0 + noise, state.z)
        for h in hooks:
            h.end_step(state, ctx)
    return state
