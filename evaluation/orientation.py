"""Which of x and rot180(x) the prior finds more plausible: the measurement cannot tell them apart, the prior can
(p(x | y) / p(rot x | y) = p(x) / p(rot x)). Exact for the Gaussian mixtures, a diffusion-ELBO estimate otherwise."""
from __future__ import annotations

import math

import torch

from core.settings import choice, integer, number
from core.tensors import rot180

METHODS = ("auto", "exact", "elbo")
# |log-ratio| at or below this is round-off, not a preference (float64 log-densities; float32 ELBO sums): reported
# as 0, a tie, and the particle keeps the orientation it was sampled in
TIE = {"exact": 1e-6, "elbo": 1e-3}


SETTINGS = {
    "method": choice(*METHODS, default="auto", help="auto: exact log-density for the two-mode mixtures, a diffusion "
                                                    "ELBO for the LDMs; exact | elbo"),
    "choose": choice("loss", "posterior", default="loss",
                     help="best_by_prior: the lowest-loss particle (loss), or the highest estimated log-posterior"),
    "elbo_evals": integer(2, default=128, help="noise levels in the ELBO estimate (UNet rows per particle and "
                                               "orientation)"),
    "sigma_min": number(0, default=0.01, low_open=True, help="the ELBO grid's smallest sigma (uniform in log sigma)"),
    "sigma_max": number(0, default=10.0, low_open=True, help="the ELBO grid's largest sigma"),
}


def check_config(o, model_name: str) -> None:
    """The `orientation:` block against the model (exact needs a model with a closed-form density)."""
    from core.errors import check

    check(o.method != "exact" or model_name in ("two_mode", "two_mode_latent"),
          "orientation.method=exact needs a model with an exact density (the two-mode benchmarks): use auto or elbo")
    check(o.sigma_min < o.sigma_max, f"orientation.sigma_min={o.sigma_min}, sigma_max={o.sigma_max}: must have "
                                     f"min < max")


def elbo_sigmas(evals: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """The fixed grid of noise levels: uniform in log sigma (i.e. in the log-SNR lambda = -2 log sigma)."""
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), evals, dtype=torch.float64))


@torch.no_grad()
def elbo_terms(model, z: torch.Tensor, noises: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The diffusion ELBO's terms (L, B), one per noise level and row, whose sum over levels is log p(z) up to a
    constant: -1/2 dlambda ||eps_i - eps_hat(z + s_i eps_i, s_i)||^2 with the eps-prediction eps_hat = (z_s - D(z_s,
    s)) / s and the standard (likelihood) weighting, a Riemann sum over the grid in lambda = -2 log s (so dlambda is
    the grid's constant step). noises: (L, B, ...) one draw per level and row."""
    dlam = 2 * math.log(float(sigmas[0] / sigmas[-1])) / max(len(sigmas) - 1, 1)
    terms = torch.zeros(len(sigmas), z.shape[0], dtype=torch.float64, device=z.device)
    for i, (s, eps) in enumerate(zip(sigmas.tolist(), noises)):      # a loop over noise levels, never over rows
        zs = z + s * eps
        eps_hat = (zs - model.denoise(zs, s)) / s
        terms[i] = -0.5 * dlam * (eps - eps_hat).double().flatten(1).square().sum(1)
    return terms


def elbo(model, z: torch.Tensor, noises: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """The diffusion ELBO of log p(z) up to a constant, per row (B,): elbo_terms summed over the levels."""
    return elbo_terms(model, z, noises, sigmas).sum(0)


# interleaved sub-grids of the ELBO's levels: each is an estimate of the same log-ratio on its own noise draws, so
# their spread is the estimate's own noise (at no extra network cost)
SUBGRIDS = 8


def subgrid_error(d: torch.Tensor, groups: int = SUBGRIDS) -> torch.Tensor:
    """Standard error (B,) of a log-ratio estimated as the sum over levels of d (L, B): the levels split into
    `groups` interleaved sub-grids (level l in sub-grid l mod groups), each scaled to the whole grid; their mean is the
    estimate and their standard deviation over sqrt(groups) its error."""
    groups = max(2, min(groups, d.shape[0]))
    sub = torch.stack([d[g::groups].sum(0) * d.shape[0] / len(d[g::groups]) for g in range(groups)])
    return sub.std(0, unbiased=True) / math.sqrt(groups)


def pair_latents(model, z: torch.Tensor, x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The latents of x = D(z) and of rot x, treated alike: for an LDM both go through the encoder (x: D(z) where
    the caller has it already); for the benchmarks, whose decoders are 180°-equivariant, they are z and rot z."""
    if hasattr(model, "log_prob"):
        return z, rot180(z)
    x = model.decode(z) if x is None else x
    both = model.encode(torch.cat([x, rot180(x)]))
    return both[: z.shape[0]], both[z.shape[0]:]


def prior_log_densities(model, z: torch.Tensor, cfg, generator: torch.Generator | None = None,
                        x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(x), log p(rot x)) per particle, each (B,) in float64: exact for the mixtures, a diffusion-ELBO estimate
    up to a constant shared by all particles otherwise (prior_scores has the estimate's error too)."""
    lp_x, lp_rot, _ = prior_scores(model, z, cfg, generator, x)
    return lp_x, lp_rot


def prior_scores(model, z: torch.Tensor, cfg, generator: torch.Generator | None = None,
                 x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p(x), log p(rot x), the standard error of their difference) per particle, each (B,) in float64; the
    error is 0 for the exact densities and the sub-grids' spread (subgrid_error) for the ELBO.

    cfg: the `orientation` block (method, elbo_evals, sigma_min, sigma_max); x: D(z) if already decoded. Every
    particle and both orientations go through one batch per noise level; x and rot x share the noise levels and
    draws."""
    z_x, z_rot = pair_latents(model, z, x)
    if method_of(model, cfg) == "exact":
        lp_x, lp_rot = model.log_prob(z_x).double(), model.log_prob(z_rot).double()
        return lp_x, lp_rot, torch.zeros_like(lp_x)
    sigmas = elbo_sigmas(cfg.elbo_evals, cfg.sigma_min, cfg.sigma_max)
    noises = torch.randn((len(sigmas), *z_x.shape), generator=generator, dtype=z_x.dtype, device="cpu").to(z_x.device)
    # common random numbers, rotated with the latent: rot z + s rot eps = rot(z + s eps), so under a symmetric
    # prior both terms are equal draw by draw and the difference measures only the prior's asymmetry
    terms = elbo_terms(model, torch.cat([z_x, z_rot]), torch.cat([noises, rot180(noises)], dim=1), sigmas)
    t_x, t_rot = terms[:, : z_x.shape[0]], terms[:, z_x.shape[0]:]
    return t_x.sum(0), t_rot.sum(0), subgrid_error(t_x - t_rot)


def method_of(model, cfg) -> str:
    """exact or elbo: `auto` is exact where the model has a closed-form density."""
    if cfg.method == "auto":
        return "exact" if hasattr(model, "log_prob") else "elbo"
    return cfg.method


def log_ratio(lp_x: torch.Tensor, lp_rot: torch.Tensor, method: str) -> torch.Tensor:
    """log p(x) - log p(rot x), with differences within round-off (TIE) reported as 0: no preference."""
    ratio = (lp_x - lp_rot).double()
    return torch.where(ratio.abs() <= TIE[method], torch.zeros_like(ratio), ratio)


def prior_log_ratio(model, z: torch.Tensor, cfg, generator: torch.Generator | None = None,
                    x: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x) - log p(rot x) per particle (B,): positive when the prior prefers the orientation as sampled."""
    return log_ratio(*prior_log_densities(model, z, cfg, generator, x), method_of(model, cfg))
