"""Refine-stage step hook: after the MCMC step, pull each particle's z0 onto the measurement by latent optimisation."""
from __future__ import annotations

import math
import statistics
import time
from collections import Counter

import torch

from pipeline.checks import ConfigError, is_int, is_number
from sampler.hooks import Hook, PerParticle
from sampler.state import rows
from sampler.precision import autocast, decoder_autocast_dtype
from tracking.tracker import cuda_sync

from .optimize import optimize_latents
from .resample import resample_weights

# key -> (check, description) for the config's `optimization:` block
_RULES = {
    "every": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 = no in-loop calls)"),
    "final": (lambda v: isinstance(v, bool), "true or false"),
    "lr": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "max_iters": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "eps": (lambda v: v == "auto" or (is_number(v) and v >= 0),
            "auto (the task's noise sigma) or a number >= 0 (0 = no threshold stop)"),
    "resample": (lambda v: v in ("replace", "stochastic"), "replace or stochastic (ReSample's resample)"),
    "gamma": (lambda v: is_number(v) and v > 0, "a number > 0 (ReSample's 40)"),
    "plateau_window": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0 = no plateau stop)"),
    "accept_if_improve": (lambda v: isinstance(v, bool), "true or false"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
}


def validate_optimization(opt) -> dict:
    """The `optimization:` block as a plain dict, or ConfigError naming the bad key and its valid range."""
    if opt is None:
        raise ConfigError("optimization_step is set but the config has no `optimization:` block "
                          "(see configs/default.yaml)")
    opt = dict(opt)
    unknown = sorted(set(opt) - set(_RULES))
    missing = sorted(set(_RULES) - set(opt))
    if unknown or missing:
        raise ConfigError(f"optimization block: unknown keys {unknown}, missing keys {missing}; "
                          f"keys are: {', '.join(_RULES)}")
    for key, (ok, what) in _RULES.items():
        if not ok(opt[key]):
            raise ConfigError(f"optimization.{key}={opt[key]!r} is invalid: must be {what}")
    return opt


def _floats(t: torch.Tensor) -> list:
    return [float(v) for v in t.detach().cpu()]


class RefineHook(Hook):
    """ReSample-style hard data consistency in latent space, at the refine stage's scheduled annealing steps.

    At refine steps k < K - 1 it runs when (k - refine_k) % every == 0, and at the last step iff `final`
    (after the last step z0 is the sampler's output, so that call is ReSample's closing optimisation);
    z0 <- argmin_z ||A(D(z)) - y||^2 / m from z0 (m = measurements per particle), Adam re-created per call
    as in ReSample, so no optimiser state persists between calls (nothing to slice when pruning).
    """

    def __init__(self, refine_k: int, every: int = 1, final: bool = True, lr: float = 5e-3, max_iters: int = 500,
                 eps: float = 1e-3, plateau_window: int = 200, accept_if_improve: bool = False,
                 weight_decay: float = 0.0, resample: str = "replace", gamma: float = 40.0, autocast_dtype=None):
        self.refine_k, self.every, self.final = refine_k, every, final
        self.lr, self.max_iters, self.eps = lr, max_iters, eps
        self.resample, self.gamma = resample, gamma
        self.plateau_window, self.accept_if_improve, self.weight_decay = plateau_window, accept_if_improve, weight_decay
        self.autocast_dtype = autocast_dtype
        self.calls: list[dict] = []

    @classmethod
    def from_config(cls, cfg, refine_k: int) -> "RefineHook":
        opt = validate_optimization(cfg.get("optimization"))
        hook = cls(refine_k, autocast_dtype=decoder_autocast_dtype(cfg.sampler.precision), **opt)
        K = cfg.sampler.annealing.num_steps
        if not any(hook.runs_at(k, K) for k in range(refine_k, K)):
            raise ConfigError(f"optimization_step={cfg.optimization_step} leaves {K - refine_k} refine step(s), "
                              "none of them the last with optimization.final=false: no optimisation would run")
        return hook

    def threshold(self, sigma: float, m: int) -> float:
        """The per-element MSE at which a particle stops: eps^2, or with eps auto the discrepancy principle: the
        noise's own mean square sigma^2, raised by three standard deviations of its chi-square (1 + 3 sqrt(2 / m)),
        so that a particle already as close to y as the ground truth is (whose noise may exceed sigma^2) is left
        alone rather than fitted to the noise."""
        if self.eps == "auto":
            return sigma ** 2 * (1 + 3 * math.sqrt(2 / m))
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
            with autocast(z.device.type, self.autocast_dtype):     # the sampler's decoder precision
                x = model.decode(z)
            return operator.loss(x.to(z.dtype), y[index]) / m

        device = state.z0.device
        cuda_sync(device)
        t0 = time.perf_counter()
        z_opt, info = optimize_latents(state.z0, mse, self.lr, self.max_iters, self.threshold(operator.sigma, m),
                                       self.plateau_window, weight_decay=self.weight_decay, frozen=~state.alive)
        before, after = info["loss_before"] * m, info["loss_after"] * m
        accept = torch.isfinite(after) & state.alive
        if self.accept_if_improve:
            accept &= after < before
        weight = 1.0
        if self.resample == "stochastic":
            # the next latent is drawn around a blend of the optimised and the sampler's own z0 (ReSample)
            weight, ctx.renoise_scale = resample_weights(ctx.sigma, ctx.sigma_next, self.gamma)
            z_opt = weight * z_opt + (1 - weight) * state.z0
        state.z0 = torch.where(rows(accept, z_opt), z_opt, state.z0)
        state.loss = torch.where(accept, after, torch.where(state.alive, before, state.loss))
        cuda_sync(device)
        seconds = time.perf_counter() - t0

        iters, images = info["iterations"].tolist(), state.image_ids.tolist()
        self.calls.append({
            "k": ctx.k, "t": ctx.t, "sigma": ctx.sigma, "time_s": seconds, "image_ids": images,
            "particle_ids": state.particle_ids.tolist(), "iterations": iters, "stop_reason": info["stop_reason"],
            "loss_before": _floats(before), "loss_after": _floats(after), "accepted": accept.tolist(),
            "resample_weight": weight,
        })
        ctx.log.update(opt_iters_mean=PerParticle(images, iters), opt_iters_max=PerParticle(images, iters, "max"),
                       opt_time_s=seconds, opt_accepted=PerParticle(images, [int(a) for a in accept.tolist()], "sum"))
        return state

    def report(self, image: int) -> dict:
        # a call's time is the whole batch's: each of its images is charged an equal share
        calls = []
        for c in self.calls:
            mine = [i for i, g in enumerate(c["image_ids"]) if g == image]
            calls.append({
                "k": c["k"], "t": c["t"], "sigma": c["sigma"], "time_s": c["time_s"] / len(set(c["image_ids"])),
                "resample_weight": c["resample_weight"],
                **{key: [c[key][i] for i in mine]
                   for key in ("particle_ids", "iterations", "stop_reason", "loss_before", "loss_after", "accepted")},
            })
        iters = [n for c in calls for n in c["iterations"]]
        return {"optimization": {
            "num_calls": len(calls),
            "total_iterations": sum(iters),
            "mean_iterations": statistics.fmean(iters) if iters else None,
            "total_time_s": sum(c["time_s"] for c in calls),
            "stop_reasons": dict(Counter(r for c in calls for r in c["stop_reason"])),
            "calls": calls,
        }}
