"""ReSample (Song et al., ICLR 2024) as its code runs it (soominkwon/resample, ldm/models/diffusion/ddim.py): DDIM over
the LDM's DDPM schedule with a DPS-style step at every step and, at every `every`-th step of the last two thirds, hard
data consistency on a time-travelled x0 estimate followed by the stochastic resample. Each particle is its own run."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from core.settings import boolean, integer, number
from core.tensors import cuda_sync, per_row

from .hooks import Hook, StepContext
from .optimize import optimize_latents
from .precision import autocast
from .state import ParticleState
from .trace import Trace

TRAVEL = 5      # unguided DDIM steps ahead before each optimisation (ReSample's inter_timesteps: its code sets 5)
DDPM_STEPS = 1000   # the CompVis LDMs' schedule length (every model config here)
THIRDS = 3      # guidance only, then pixel (or latent) optimisation, then latent optimisation


def _optimiser(lr: float, max_iters: int, plateau: int | None) -> dict:
    block = {"lr": number(0, low_open=True, default=lr, help="AdamW's step"),
             "max_iters": integer(1, default=max_iters, help="AdamW steps per call at most"),
             "eps": number(0, default=1e-3, help="stop a particle once its MSE is below eps^2"),
             "weight_decay": number(0, default=0.01, help="AdamW's decoupled decay (torch's default, as ReSample)")}
    if plateau is not None:
        block["plateau_window"] = integer(0, default=plateau, help="stop when the MSE exceeds its value this many "
                                                                   "steps before (0: off)")
    return block


SETTINGS = {
    "num_steps": integer(2, 500, default=500, help="DDIM steps over the 1000-step DDPM schedule (--ddim_steps)"),
    "guidance_scale": number(0, default=0.5, help="the DPS step: x -= guidance_scale * abar_t * grad_x "
                                                  "||y - A(D(x0_hat(x)))||"),
    "every": integer(1, default=10, help="hard data consistency at the DDIM indices divisible by this"),
    "pixel": boolean(True, help="pixel optimisation in the middle third (ReSample's linear tasks); false: latent"),
    "gamma": number(0, low_open=True, default=40.0, help="the stochastic resample's variance scale"),
    "latent_opt": _optimiser(5e-3, 500, 200),
    "pixel_opt": _optimiser(1e-2, 2000, None),
}


@dataclass(frozen=True)
class DDIMSchedule:
    """ReSample's DDIM grid: DDPM timesteps (ascending) and abar at each and at the one before (abar_0 first)."""

    timesteps: tuple[int, ...]
    alphas: tuple[float, ...]
    alphas_prev: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.timesteps)

    def sigma(self, index: int) -> float:
        """The noise level of DDIM index `index` in the variance-exploding parameterisation: sqrt((1 - a) / a)."""
        a = self.alphas[index]
        return math.sqrt((1 - a) / a)


def ddim_timesteps(num_steps: int, ddpm_steps: int = DDPM_STEPS) -> tuple[int, ...]:
    """The uniform DDIM grid of the CompVis code: every c-th DDPM timestep plus one, c = T // num_steps (12 steps
    asked give 13)."""
    return tuple(t + 1 for t in range(0, ddpm_steps, ddpm_steps // num_steps))


def ddim_schedule(alphas_cumprod, num_steps: int) -> DDIMSchedule:
    """ddim_timesteps on the model's own DDPM schedule, with abar at each grid point and the one before."""
    abar = [float(a) for a in alphas_cumprod]
    ts = ddim_timesteps(num_steps, len(abar))
    alphas = tuple(abar[t] for t in ts)
    return DDIMSchedule(ts, alphas, (abar[0], *alphas[:-1]))


def ddim_update(x, e, a: float, a_prev: float):
    """(x_prev, pred_x0, pseudo_x0) of a deterministic DDIM step (eta = 0) from abar a to a_prev, given eps e.
    pseudo_x0 is ReSample's x0 estimate for its guidance and optimisation: its code scales eps by 1 - abar where
    Tweedie's formula has sqrt(1 - abar) (kept: this is ReSample as it runs)."""
    pred = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
    x_prev = math.sqrt(a_prev) * pred + math.sqrt(1 - a_prev) * e
    pseudo = (x - (1 - a) * e) / math.sqrt(a)
    return x_prev, pred, pseudo


def timestep(x, t: int):
    return torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)


def guided_step(model, operator, y, x, t: int, a: float, a_prev: float, scale: float, autocast_dtype=None):
    """One DDIM step with ReSample's DPS step: x_prev - scale * abar_t * grad_x ||y - A(D(pseudo_x0(x)))||, each
    particle's norm its own. Returns (x_prev, pseudo_x0, squared residual per particle)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        e = model.eps(x, timestep(x, t)).to(x.dtype)
        x_prev, _, pseudo = ddim_update(x, e, a, a_prev)
        with autocast(x.device.type, autocast_dtype):
            decoded = model.decode(pseudo)
        loss = operator.loss(decoded.to(x.dtype), y)
        (grad,) = torch.autograd.grad(loss.sqrt().sum(), x)
    return x_prev.detach() - scale * a * grad, pseudo.detach(), loss.detach()


@torch.no_grad()
def travel(model, x, schedule: DDIMSchedule, i: int):
    """ReSample's time travel: up to TRAVEL unguided DDIM steps from x (the latent after step i); the last step's
    pseudo_x0. As its code does, the network sees the timestep one grid point below the abar the update uses."""
    S = len(schedule)
    pseudo = None
    for k in range(i, min(i + TRAVEL, S - 1)):
        index = S - k - 1
        e = model.eps(x, timestep(x, schedule.timesteps[index - 1])).to(x.dtype)
        x, _, pseudo = ddim_update(x, e, schedule.alphas[index], schedule.alphas_prev[index])
    return pseudo


def stochastic_resample(x0, x_t, a: float, sigma: float, noise):
    """ReSample's resample: x ~ N((sigma sqrt(a) x0 + (1 - a) x_t) / (sigma + 1 - a), 1 / (1/sigma + 1/(1 - a)))."""
    return (sigma * math.sqrt(a) * x0 + (1 - a) * x_t) / (sigma + 1 - a) + noise * math.sqrt(1 / (1 / sigma + 1 / (1 - a)))


def resample_sigma(gamma: float, a: float, a_prev: float) -> float:
    """The resample's sigma at a DDIM step from abar a to a_prev: gamma (1 - a') / (1 - a) (1 - a / a')."""
    return gamma * (1 - a_prev) / (1 - a) * (1 - a / a_prev)


def optimise(z, loss_fn, block, plateau: bool, frozen):
    """ReSample's latent or pixel optimisation, each particle its own AdamW and its own stop (its code steps once
    more after the rule fires: step_past_stop)."""
    return optimize_latents(z, loss_fn, block.lr, block.max_iters, block.eps ** 2,
                            block.plateau_window if plateau else 0, weight_decay=block.weight_decay, frozen=frozen,
                            step_past_stop=True)


def latent_optimisation(model, operator, y, z, block, frozen, autocast_dtype=None):
    """argmin_z ||y - A(D(z))||^2 from z, each particle's loss its MSE (as torch's MSELoss on one run)."""
    m = y[0].numel()

    def mse(z, index):
        with autocast(z.device.type, autocast_dtype):
            x = model.decode(z)
        return operator.loss(x.to(z.dtype), y[index]) / m
    return optimise(z, mse, block, True, frozen)


def pixel_optimisation(operator, y, x, block, frozen):
    """argmin_x ||y - A(x)||^2 from the image x (no plateau rule: ReSample's pixel loop has none)."""
    m = y[0].numel()
    return optimise(x, lambda x, index: operator.loss(x, y[index]) / m, block, False, frozen)


def consistency(model, operator, y, z0, kind: str, settings, frozen, autocast_dtype=None):
    """Hard data consistency from the x0 estimate z0: the latent optimisation, or the pixel optimisation from D(z0)
    encoded back (ReSample encodes without the LDM's scale factor: the first stage's own latent)."""
    if kind == "latent":
        return latent_optimisation(model, operator, y, z0, settings.latent_opt, frozen, autocast_dtype)
    with torch.no_grad():
        x0 = model.decode(z0)
    x, info = pixel_optimisation(operator, y, x0, settings.pixel_opt, frozen)
    with torch.no_grad():
        return model.encode(x), info


def consistency_kind(index: int, S: int, every: int, pixel: bool) -> str | None:
    """Which optimisation ReSample runs after DDIM index `index` (counting down): none in the first third and at
    the indices not divisible by `every`; pixel in the middle third where `pixel`; latent otherwise."""
    if not (0 < index <= S - S // THIRDS and index % every == 0):
        return None
    return "pixel" if pixel and index >= S // THIRDS else "latent"


def rows_at_most(num_steps: int, settings) -> dict[str, int]:
    """Network rows one ReSample particle causes at most (every optimisation running to max_iters), by kind: a
    guidance step is a UNet VJP and a decoder VJP; time travel unguided UNet rows; a latent optimisation step a decoder
    VJP; a pixel call a decode and an encode. A study's plan costs ReSample by this bound."""
    S = len(ddim_timesteps(num_steps))
    rows = {"unet_vjp": S, "decoder_vjp": S + settings.latent_opt.max_iters, "unet": 0, "decoder_forward": 0, "encoder": 0}
    for i in range(S):
        kind = consistency_kind(S - i - 1, S, settings.every, settings.pixel)
        if kind is None:
            continue
        rows["unet"] += len(range(i, min(i + TRAVEL, S - 1)))
        if kind == "latent":
            rows["decoder_vjp"] += settings.latent_opt.max_iters
        else:
            rows["decoder_forward"] += 1
            rows["encoder"] += 1
    return rows


def phase_of(schedule_size: int, settings):
    """k -> the phase of DDIM step k: `guidance` before the first optimisation, then `pixel` and `latent` (the thirds
    whose steps carry those optimisations), `final` for the closing latent optimisation (k = S)."""
    S = schedule_size

    def phase(k: int) -> str:
        if k >= S:
            return "final"
        index = S - k - 1
        if index > S - S // THIRDS:
            return "guidance"
        return "pixel" if settings.pixel and index >= S // THIRDS else "latent"
    return phase


def _record_call(trace, state, k: int, kind: str, info, seconds: float) -> None:
    trace.batch("consistency", k=k, space=kind, time_s=seconds)
    trace.particles("consistency", state.image_ids.tolist(), state.particle_ids.tolist(), k=k, space=kind,
                    iterations=info["iterations"], stop_reason=info["stop_reason"])


def _timed_consistency(model, operator, state, z0, kind, settings, k, trace, autocast_dtype):
    cuda_sync(z0.device)
    t0 = time.perf_counter()
    z, info = consistency(model, operator, state.y, z0, kind, settings, ~state.alive, autocast_dtype)
    cuda_sync(z0.device)
    _record_call(trace, state, k, kind, info, time.perf_counter() - t0)
    return z


def resample(model, operator, state: ParticleState, schedule: DDIMSchedule, settings, hooks: list[Hook] = (),
             trace: Trace | None = None, autocast_dtype=None) -> ParticleState:
    """Run ReSample from state.z (x_T ~ N(0, I)); settings: the sampler config's `resample` block. Hooks observe the
    loop (the tracker: begin_step, end_step); the closing optimisation is step k = S.

        for i, index = S-1 ... 0 (DDPM timestep t):
            x, x0_hat = DDIM step of x, then x -= scale abar_t grad_x ||y - A(D(x0_hat))||
            if 0 < index <= S - S/3 and index % every == 0:
                z0 = x0_hat after TRAVEL unguided DDIM steps from x
                z0 = argmin ||y - A(D(z))||^2 from z0          (pixel space in the middle third if `pixel`)
                x  = stochastic resample around z0 and x, sigma = gamma (1 - a') / (1 - a) (1 - a / a')
        x = argmin ||y - A(D(z))||^2 from x                    (k = S)
    """
    S = len(schedule)
    trace = Trace() if trace is None else trace

    def context(k, t, sigma, sigma_next):
        return StepContext(k=k, t=t, sigma=sigma, sigma_next=sigma_next, num_steps=S, model=model, operator=operator,
                           trace=trace, autocast_dtype=autocast_dtype)

    for i in range(S):
        index = S - i - 1
        a, a_prev = schedule.alphas[index], schedule.alphas_prev[index]
        ctx = context(i, schedule.timesteps[index], schedule.sigma(index), math.sqrt((1 - a_prev) / a_prev))
        for h in hooks:
            h.begin_step(state, ctx)
        x, z0, loss = guided_step(model, operator, state.y, state.z, schedule.timesteps[index], a, a_prev,
                                  settings.guidance_scale, autocast_dtype)
        kind = consistency_kind(index, S, settings.every, settings.pixel)
        if kind is not None:
            start = travel(model, x, schedule, i)
            z0 = _timed_consistency(model, operator, state, start, kind, settings, i, trace, autocast_dtype)
            x = stochastic_resample(z0, x, a_prev, resample_sigma(settings.gamma, a, a_prev), state.randn())
        alive = state.alive & torch.isfinite(x).flatten(1).all(1)
        state.z = torch.where(per_row(alive, x), x, state.z)
        state.z0 = z0 if state.z0 is None else torch.where(per_row(alive, z0), z0, state.z0)
        state.loss = torch.where(alive, loss, state.loss)
        state.alive = alive
        for h in hooks:
            h.end_step(state, ctx)

    ctx = context(S, 0, 0.0, 0.0)
    for h in hooks:
        h.begin_step(state, ctx)
    z = _timed_consistency(model, operator, state, state.z, "latent", settings, S, trace, autocast_dtype)
    with torch.no_grad():
        loss = operator.loss(model.decode(z).to(z.dtype), state.y)
    alive = state.alive & torch.isfinite(z).flatten(1).all(1)
    state.z = state.z0 = torch.where(per_row(alive, z), z, state.z)
    state.loss = torch.where(alive, loss, state.loss)
    state.alive = alive
    for h in hooks:
        h.end_step(state, ctx)
    return state


def record(trace) -> dict:
    """An image's `resample` section: each hard-data-consistency call (step, kind, time, iterations and stop reason
    per particle), and the totals: optimisation time, iterations per particle, the DDIM steps' time without them."""
    calls = [{"k": r["k"], "space": r["space"], "time_s": r["time_s"], "iterations": {}, "stop_reason": {}}
             for r in trace.of("consistency") if "particle" not in r]
    by_k = {c["k"]: c for c in calls}
    for r in trace.of("consistency"):
        if "particle" in r:
            by_k[r["k"]]["iterations"][str(r["particle"])] = r["iterations"]
            by_k[r["k"]]["stop_reason"][str(r["particle"])] = r["stop_reason"]
    per_particle: dict[str, int] = {}
    for c in calls:
        for p, n in c["iterations"].items():
            per_particle[p] = per_particle.get(p, 0) + n
    optimisation = sum(c["time_s"] for c in calls)
    steps = sum(r["time_s"] for r in trace.of("phase"))
    return {"calls": calls, "iterations_per_particle": per_particle,
            "optimisation_time_s": optimisation, "ddim_time_s": steps - optimisation,
            "pixel_calls": sum(c["space"] == "pixel" for c in calls),
            "latent_calls": sum(c["space"] == "latent" for c in calls)}
