"""The decoder-constrained two-mode benchmark, ReSample's stochastic resample, and noise-aware stopping."""
import math

import pytest
import torch

from models import build_model
from models.two_mode_latent import LatentTwoMode, decode, fitted_latents
from operators import build_operator
from core.tensors import rot180
from resample_opt.hook import RefineHook
from resample_opt.renoise import resample_weights
from sampler import StepContext
from resample_opt import record as refine_record
from sampler import Trace
from sampler.state import ParticleState
from tests.conftest import compose, declared

LATENT = ["model=two_mode_latent", "sampler=two_mode_latent", "data=two_mode_latent"]


def test_decoder_is_nonlinear_and_exactly_180_equivariant():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64)
    x = decode(z, 4)
    assert x.shape == (3, 3, 32, 32) and x.abs().max() < 1
    assert (decode(rot180(z), 4) - rot180(x)).abs().max() <= 1e-6
    # nonlinear: D(2z) != 2 D(z) - D(0), and its Jacobian depends on z
    assert (decode(2 * z, 4) - 2 * x).abs().max() > 0.1
    v = torch.randn(1, 3, 8, 8, generator=g, dtype=torch.float64)
    jvp = [torch.autograd.functional.jvp(lambda t: decode(t, 4), zi[None], v)[1] for zi in z[:2]]
    assert (jvp[0] - jvp[1]).abs().max() > 0.01


def test_prior_holds_every_rotation_and_the_denoiser_is_equivariant():
    cfg = compose(*LATENT)
    model = build_model(cfg.model, "cpu")
    n = cfg.model.num_images
    means = model.means.view(2 * n, *model.latent_shape)
    assert model.latent_shape == (3, 8, 8) and model.image_shape == (3, 32, 32)
    assert torch.equal(rot180(means[:n]), means[n:])
    z = torch.randn(2, *model.latent_shape, dtype=torch.float64)
    assert torch.allclose(model.denoise(rot180(z), 0.7), rot180(model.denoise(z, 0.7)), atol=1e-10)
    # encode inverts the decoder on latents that are constant on the upsampling's support, and nearly elsewhere
    const = torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64)
    assert torch.allclose(model.encode(model.decode(const)), const, atol=1e-9)
    assert (model.encode(model.decode(means[:n])) - means[:n]).abs().mean() < 0.5


def test_exact_latent_denoiser_matches_monte_carlo():
    """A small instance (2 images at 8 px: 3 x 2 x 2 latents) so importance sampling from the prior converges."""
    mu = fitted_latents(8, 4, 2)
    model = LatentTwoMode(torch.cat([mu, rot180(mu)]), std=0.4, factor=4).double()
    g = torch.Generator().manual_seed(1)
    sigma = 0.6
    z = (mu[:1] + 0.3 * torch.randn(mu[:1].shape, generator=g, dtype=torch.float64))
    z0 = model.sample(400_000, generator=g)
    w = torch.softmax(-((z - z0) ** 2).flatten(1).sum(1) / (2 * sigma ** 2), 0)
    mc = (w[:, None] * z0.flatten(1)).sum(0)
    assert torch.allclose(model.denoise(z, sigma).flatten(), mc, atol=1e-2)


def test_ground_truth_on_or_off_the_decoder_manifold():
    from data import build_dataset

    cfg = compose(*LATENT)
    on = build_dataset(cfg.data, cfg.model, 0, 2)
    model = build_model(cfg.model, "cpu")
    assert torch.allclose(on[0][1].double(), model.decode(model.means[:1].view(1, 3, 8, 8))[0], atol=1e-6)
    raw = build_dataset(compose(*LATENT, "data.ground_truth=raw").data, cfg.model, 0, 2)
    from models.two_mode import benchmark_images
    assert torch.allclose(raw[1][1], benchmark_images(32, 20)[1].float())
    assert (raw[0][1] - on[0][1]).abs().max() > 0.1


@pytest.mark.parametrize("t, expected", [(21, 0.795), (321, 0.389)])
def test_resample_weights_follow_resamples_formula(t, expected):
    """ReSample's ddim.py at its 500-step DDIM times (t and t - 2) on the LDM's linear schedule, in VP terms,
    against our function of the same two noise levels."""
    betas = torch.linspace(0.0015 ** 0.5, 0.0195 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    a_t, a_prev = float(abar[t]), float(abar[t - 2])
    s = 40 * (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    mean_weight = s / (s + 1 - a_prev)                      # of sqrt(a') z_opt in x'
    var_vp = 1 / (1 / s + 1 / (1 - a_prev))
    sigma, sigma_next = math.sqrt((1 - a_t) / a_t), math.sqrt((1 - a_prev) / a_prev)
    w, r = resample_weights(sigma, sigma_next, 40.0)
    assert w == pytest.approx(mean_weight, rel=1e-12) and w == pytest.approx(expected, abs=1e-3)
    # in z = x / sqrt(a'): the sampler's own noise (1 - w) sigma' eps1 plus ReSample's var_vp / a'
    assert (r * sigma_next) ** 2 == pytest.approx((1 - w) ** 2 * sigma_next ** 2 + var_vp / a_prev, rel=1e-12)
    assert resample_weights(sigma, 0.0) == (1.0, 0.0)


def _problem(spread: float, seed: int):
    """The two-mode model (identity decoder), one image's noisy measurement, two particles around the image."""
    cfg = compose()
    model = build_model(cfg.model, "cpu").double()
    op = build_operator(cfg.task, 32)
    gt = model.means[:1].view(1, 3, 32, 32)
    y = op.measure(gt, generator=torch.Generator().manual_seed(0))
    z0 = gt + spread * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return model, op, y, z0


def _state(z0, y):
    B = z0.shape[0]
    return ParticleState(z=z0.clone(), y=y.expand(B, *y.shape[1:]).clone(), generators=[None] * B,
                         particle_ids=torch.arange(B), image_ids=torch.zeros(B, dtype=torch.long),
                         alive=torch.ones(B, dtype=torch.bool), loss=torch.full((B,), float("inf")), z0=z0.clone())


def test_eps_auto_stops_each_particle_at_the_noise_level():
    """Identity decoder, y = |F pad x| + noise: the fit can go below the noise; eps auto stops at the noise level,
    sigma_y^2 (1 + 3 sqrt(2 / m)) per element, one step after the loss crossed it."""
    model, op, y, z0 = _problem(0.05, 1)
    ctx = StepContext(k=9, t=20, sigma=0.1, sigma_next=0.0, num_steps=10, model=model, operator=op)
    hook = RefineHook(9, **{**declared("refine"), "every": 0, "final": True, "lr": 1e-3, "max_iters": 2000, "eps": "auto",
                          "plateau_window": 0, "resample": "replace"})
    state = hook.after_step(_state(z0, y), ctx)
    (call,) = refine_record(ctx.trace, None)["calls"]
    m = y[0].numel()
    level = op.sigma ** 2 * (1 + 3 * math.sqrt(2 / m))
    assert hook.threshold(op, m) == pytest.approx(level) and 1.04 < level / op.sigma ** 2 < 1.06
    assert call["stop_reason"] == ["threshold", "threshold"]
    assert all(loss / m < level for loss in call["loss_after"])
    assert all(loss / m > 0.97 * level for loss in call["loss_after"])              # it stopped right there
    assert all(0 < n < 2000 for n in call["iterations"])
    # ReSample's eps = 1e-3 would have run on: its threshold is 2500 x lower than the noise level
    fixed = RefineHook(9, **{**declared("refine"), "every": 0, "final": True, "lr": 1e-3, "max_iters": 50, "eps": 1e-3,
                           "plateau_window": 0, "resample": "replace"})
    ctx.trace = Trace()
    fixed.after_step(_state(z0, y), ctx)
    assert refine_record(ctx.trace, None)["calls"][0]["stop_reason"] == ["max_iters", "max_iters"]
    assert torch.isfinite(state.z0).all()


def test_stochastic_resample_blends_and_lowers_the_renoise():
    model, op, y, z0 = _problem(0.1, 2)
    ctx = StepContext(k=5, t=500, sigma=0.9, sigma_next=0.7, num_steps=10, model=model, operator=op)
    kw = {**declared("refine"), "every": 1, "final": True, "lr": 1e-3, "max_iters": 20, "eps": 0.0, "plateau_window": 0}
    replace = RefineHook(5, **{**kw, "resample": "replace"})
    replaced = replace.after_step(_state(z0, y), ctx).z0
    assert replace.renoise_scale(ctx) == 1.0
    stochastic = RefineHook(5, **{**kw, "resample": "stochastic", "gamma": 40.0})
    blended = stochastic.after_step(_state(z0, y), ctx).z0
    w, r = resample_weights(0.9, 0.7, 40.0)
    assert 0 < w < 1 and 0 < r < 1 and stochastic.renoise_scale(ctx) == r
    ctx.k = 4                                                      # not a refine step: the plain re-noise
    assert stochastic.renoise_scale(ctx) == 1.0
    assert torch.allclose(blended, w * replaced + (1 - w) * z0, atol=1e-12)
