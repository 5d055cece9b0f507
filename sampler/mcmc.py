"""MCMC on the clean latent z0 given y and the ODE estimate: Langevin (default) or damped HMC, as DAPS."""
from __future__ import annotations

import math

import torch

from core.settings import choice, integer, number
from core.tensors import per_row

from .precision import autocast
from .state import ParticleState


SETTINGS = {
    "algo": choice("langevin", "hmc", help="Langevin dynamics or DAPS's damped HMC"),
    "num_steps": integer(1, help="MCMC steps per annealing step"),
    "lr": number(0, low_open=True, help="step size at the first annealing step"),
    "lr_min_ratio": number(0, low_open=True, help="the last step size as a fraction of lr (linear decay)"),
    "tau": number(0, low_open=True, help="the likelihood's temperature: the measurement term is divided by tau^2"),
    "momentum": number(0, 1, help="HMC's momentum (damping 1 - momentum)"),
}


def measurement_loss_and_grad(model, operator, z, y, autocast_dtype=None):
    """Per-particle ||A(D(z)) - y||^2 and its gradient w.r.t. z, through the decoder."""
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        with autocast(z.device.type, autocast_dtype):     # bf16 lever: the decoder's forward and VJP only
            x = model.decode(z)
        loss = operator.loss(x.to(z.dtype), y)
        (grad,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), grad.to(z.dtype)


def step_size(k_ratio: float, lr: float, lr_min_ratio: float) -> float:
    """Linear decay from lr to lr * lr_min_ratio over the annealing steps."""
    return lr * (1.0 + k_ratio * (lr_min_ratio - 1.0))


def mcmc(state: ParticleState, z0_hat, sigma: float, lr: float, settings, model, operator,
         drift=None, autocast_dtype=None):
    """Sample z0 ~ p(z0 | z_t, y) starting from z0_hat; returns (z0_y, last loss, alive) per particle.

    score = -clamp(grad ||A(D(z)) - y||^2, -1, 1) / tau^2 + (z0_hat - z) / sigma^2 (+ drift)
    A particle whose iterate stops being finite is frozen at its last finite one and no longer alive.
    """
    x = z0_hat.clone()
    alive = state.alive
    hmc = settings.algo == "hmc"
    if hmc:
        velocity = state.randn()      # redrawn at every annealing step, as DAPS does
    loss = state.loss
    for _ in range(settings.num_steps):
        loss, grad = measurement_loss_and_grad(model, operator, x, state.y, autocast_dtype)
        score = -grad.clamp(-1, 1) / settings.tau ** 2 + (z0_hat - x) / sigma ** 2
        if drift is not None:
            extra = drift(x, score, alive)
            if extra is not None:
                score = score + extra
        eps = state.randn()
        if hmc:
            h = math.sqrt(lr)
            velocity = settings.momentum * velocity + h * score + math.sqrt(2 * (1 - settings.momentum)) * eps
            x_new = x + h * velocity
        else:
            x_new = x + lr * score + math.sqrt(2 * lr) * eps
        # a particle that blows up is frozen and marked failed; the others go on
        alive = torch.isfinite(x_new).flatten(1).all(1) & alive
        x = torch.where(per_row(alive, x), x_new, x)
    return x.detach(), loss, alive
