"""Refine-stage step hook: after the MCMC step, pull each particle's z0 onto the measurement by latent optimisation."""
from __future__ import annotations

import time

import torch

from core.tensors import cuda_sync, per_row
from sampler.hooks import Hook
from sampler.precision import autocast

from sampler.optimize import optimize_latents
from .renoise import resample_weights


class RefineHook(Hook):
    """ReSample-style hard data consistency in latent space, at the refine stage's scheduled annealing steps.

    At refine steps k < K - 1 it runs when (k - refine_k) % every == 0, and at the last step iff `final`
    (after the last step z0 is the sampler's output, so that call is ReSample's closing optimisation);
    z0 <- argmin_z ||A(D(z)) - y||^2 / m from z0 (m = measurements per particle), Adam re-created per call
    as in ReSample, so no optimiser state persists between calls (nothing to slice when pruning). Each call
    leaves a `refine` row per particle (iterations, stop reason, losses, accepted) and one for the batch (its
    time, the resample weight) in the trace.
    """

    def __init__(self, refine_k: int, *, every: int, final: bool, lr: float, max_iters: int, eps, plateau_window: int,
                 accept_if_improve: bool, weight_decay: float, resample: str, gamma: float):
        """refine_k: from the flag (refine_step); the rest is the `refine` block as declared
        (resample_opt/__init__.py): no defaults of its own."""
        self.refine_k, self.every, self.final = refine_k, every, final
        self.lr, self.max_iters, self.eps = lr, max_iters, eps
        self.resample, self.gamma = resample, gamma
        self.plateau_window, self.accept_if_improve, self.weight_decay = plateau_window, accept_if_improve, weight_decay

    def threshold(self, operator, m: int) -> float:
        """The per-element MSE at which a particle stops: eps^2, or with eps auto the discrepancy principle
        (operator.loss_margin per element), so that a particle already as close to y as the ground truth is (whose
        noise may exceed sigma^2) is left alone rather than fitted to the noise."""
        if self.eps == "auto":
            return operator.loss_margin(m) / m
        return self.eps ** 2

    def runs_at(self, k: int, num_steps: int) -> bool:
        """Every `every`-th refine step before the last (ReSample's in-loop calls), and the last one iff `final`."""
        if k == num_steps - 1:
            return self.final
        return k >= self.refine_k and self.every > 0 and (k - self.refine_k) % self.every == 0

    def after_step(self, state, ctx):
        if not self.runs_at(ctx.k, ctx.num_steps):
            return state
        model, operator, y = ctx.model, ctx.operator, state.y
        m = y[0].numel()
        # ReSample thresholds torch's MSELoss (mean over the measurement) at eps^2; dividing by m keeps that
        # meaning and Adam's step sizes as theirs, while each particle keeps its own loss (no batch mean).
        def mse(z, index):
            with autocast(z.device.type, ctx.autocast_dtype):      # the sampler's decoder precision
                x = model.decode(z)
            return operator.loss(x.to(z.dtype), y[index]) / m

        device = state.z0.device
        cuda_sync(device)
        t0 = time.perf_counter()
        z_opt, info = optimize_latents(state.z0, mse, self.lr, self.max_iters, self.threshold(operator, m),
                                       self.plateau_window, weight_decay=self.weight_decay, frozen=~state.alive)
        before, after = info["loss_before"] * m, info["loss_after"] * m
        accept = torch.isfinite(after) & state.alive
        if self.accept_if_improve:
            accept &= after < before
        weight = 1.0
        if self.resample == "stochastic":
            # the next latent is drawn around a blend of the optimised and the sampler's own z0 (ReSample)
            weight, _ = resample_weights(ctx.sigma, ctx.sigma_next, self.gamma)
            z_opt = weight * z_opt + (1 - weight) * state.z0
        state.z0 = torch.where(per_row(accept, z_opt), z_opt, state.z0)
        state.loss = torch.where(accept, after, torch.where(state.alive, before, state.loss))
        cuda_sync(device)
        seconds = time.perf_counter() - t0

        iters = info["iterations"].tolist()
        ctx.trace.batch("refine", k=ctx.k, t=ctx.t, sigma=ctx.sigma, time_s=seconds, resample_weight=weight)
        ctx.trace.particles("refine", state.image_ids, state.particle_ids, k=ctx.k, iterations=iters,
                            stop_reason=info["stop_reason"], loss_before=before.detach(), loss_after=after.detach(),
                            accepted=accept)
        ctx.trace.batch("step", k=ctx.k, refine_time_s=seconds)
        ctx.trace.particles("step", state.image_ids, state.particle_ids, k=ctx.k, refine_iters=iters,
                            refine_accepted=[int(a) for a in accept.tolist()])
        return state

    def renoise_scale(self, ctx) -> float:
        """ReSample's stochastic resample draws the next latent with a lower noise after each call."""
        if self.resample != "stochastic" or not self.runs_at(ctx.k, ctx.num_steps):
            return 1.0
        return resample_weights(ctx.sigma, ctx.sigma_next, self.gamma)[1]
