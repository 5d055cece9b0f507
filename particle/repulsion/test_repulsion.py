"""The repulsion stage: its force (batched, per image, a kernel energy's gradient, through the decoder for pixel
features), its decay to zero, its modes and what it logs, its settings."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.errors import ConfigError
from evaluation.record import steps_record
from pipeline.validate import validate
from sampler import trigger_step
from stages import STAGES
from particle.repulsion.force import RepulsionHook, rbf_repulsion
from tests.conftest import Identity, compose, ctx_at, declared, make_state, settings

REP = declared("repulsion", "end_t")          # the repulsion block as declared: a hand-built hook's defaults

D64 = torch.float64


# ---------------------------------------------------------------- repulsion force


def test_identical_particles_get_a_finite_zero_force():
    z = torch.ones(4, 3, 5, 5, dtype=D64)
    force, h = rbf_repulsion(z, torch.zeros(4, dtype=torch.long))
    assert torch.isfinite(force).all() and torch.isfinite(h).all() and (h > 0).all()
    assert torch.equal(force, torch.zeros_like(force.flatten(1)))
    # two identical among distinct ones: still finite, and the identical pair pushes nobody apart from itself
    z = torch.randn(4, 12, dtype=D64)
    z[1] = z[0]
    force, _ = rbf_repulsion(z, torch.zeros(4, dtype=torch.long))
    assert torch.isfinite(force).all()
    hook = RepulsionHook(1.0, 10, None, **REP)
    state = make_state(torch.ones(4, 1, 2, 2, dtype=D64))
    drift = hook.drift(state.z0, torch.randn(4, 1, 2, 2, dtype=D64), state, ctx_at(0, Identity()))
    assert torch.isfinite(drift).all() and drift.abs().max() == 0


def test_two_particles_push_apart_along_their_difference():
    z = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=D64)
    force, h = rbf_repulsion(z, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(h, torch.full((2,), 25.0 / math.log(2.0), dtype=D64))
    # f_0 = 2/h (z0 - z1) exp(-25/h) points away from particle 1
    expected = 2 / h[0] * (z[0] - z[1]) * torch.exp(-25 / h[0])
    assert torch.allclose(force[0], expected) and torch.allclose(force[1], -expected)


def test_forces_sum_to_zero_with_one_shared_bandwidth():
    torch.manual_seed(0)
    z = torch.randn(6, 3, 4, 4, dtype=D64)
    force, h = rbf_repulsion(z, torch.zeros(6, dtype=torch.long))
    assert (h == h[0]).all()
    assert force.abs().max() > 1e-3
    assert torch.allclose(force.sum(0), torch.zeros_like(force[0]), atol=1e-12)


def test_force_is_minus_gradient_of_the_kernel_energy():
    torch.manual_seed(1)
    z = torch.randn(5, 7, dtype=D64, requires_grad=True)
    force, h = rbf_repulsion(z.detach(), torch.zeros(5, dtype=torch.long))
    d2 = (z[:, None] - z[None]).pow(2).sum(-1)
    energy = 0.5 * torch.exp(-d2 / h[0]).sum()        # h held fixed, as the median heuristic's h is
    (grad,) = torch.autograd.grad(energy, z)
    assert torch.allclose(force, -grad, atol=1e-12)


def test_no_repulsion_between_images():
    torch.manual_seed(2)
    groups = torch.tensor([0, 0, 1, 1])
    z = torch.randn(4, 10, dtype=D64)
    force, _ = rbf_repulsion(z, groups)
    moved = z.clone()
    moved[2:] += 50 * torch.randn(2, 10, dtype=D64)      # move image 1's particles anywhere
    force_moved, _ = rbf_repulsion(moved, groups)
    assert torch.equal(force[:2], force_moved[:2])
    assert torch.allclose(force[:2].sum(0), torch.zeros(10, dtype=D64), atol=1e-12)
    alone, _ = rbf_repulsion(z[:3], torch.tensor([0, 1, 2]))    # one particle per image: no force at all
    assert torch.equal(alone, torch.zeros_like(alone))


def test_dead_particles_neither_push_nor_move():
    torch.manual_seed(3)
    z = torch.randn(3, 4, dtype=D64)
    alive = torch.tensor([True, True, False])
    force, _ = rbf_repulsion(z, torch.zeros(3, dtype=torch.long), alive)
    pair, _ = rbf_repulsion(z[:2], torch.zeros(2, dtype=torch.long))
    assert torch.allclose(force[:2], pair) and torch.equal(force[2], torch.zeros(4, dtype=D64))


class TinyDecoder:
    """Nonlinear, upsampling decoder: (B, 1, 4, 4) latents -> (B, 3, 8, 8) images."""

    def decode(self, z):
        return torch.tanh(F.interpolate(z, scale_factor=2, mode="bilinear", align_corners=False)).expand(-1, 3, -1, -1)


def test_pixel_features_force_is_the_decoder_vjp_of_the_pixel_force():
    torch.manual_seed(4)
    z = torch.randn(4, 1, 4, 4, dtype=D64, requires_grad=True)
    state = make_state(z.detach())
    hook = RepulsionHook(1.0, 10, None, **{**REP, "mode": "absolute", "features": "pixel", "pixel_size": 4})
    force = hook._force(z.detach(), state, TinyDecoder())
    f = F.adaptive_avg_pool2d(TinyDecoder().decode(z), 4).flatten(1)
    _, h = rbf_repulsion(f.detach(), state.image_ids)
    energy = 0.5 * torch.exp(-(f[:, None] - f[None]).pow(2).sum(-1) / h[0]).sum()
    (grad,) = torch.autograd.grad(energy, z)
    assert force.shape == z.shape and torch.allclose(force, -grad, atol=1e-12)


# ---------------------------------------------------------------- schedule, modes, logging


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_strength_decays_to_exactly_zero_at_the_end(schedule):
    hook = RepulsionHook(0.7, 40, None, **{**REP, "schedule": schedule})
    values = [hook.strength(k) for k in range(50)]
    assert values[0] == 0.7 and values[39] > 0
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[40:] == [0.0] * 10
    state = make_state(torch.randn(3, 1, 2, 2, dtype=D64))
    ctx = ctx_at(40, Identity())
    assert hook.drift(state.z0, torch.randn_like(state.z0), state, ctx) is None
    hook.after_step(state, ctx)
    (step,) = steps_record(ctx.trace)
    assert step["repulsion_strength"] == 0.0 and step["repulsion_score_ratio"] == 0.0


def test_score_relative_force_is_a_fixed_fraction_of_each_score_and_is_logged():
    torch.manual_seed(5)
    hook = RepulsionHook(0.5, 10, None, **{**REP, "mode": "score_relative", "schedule": "linear"})
    state = make_state(torch.randn(4, 2, 3, 3, dtype=D64))
    ctx = ctx_at(2, Identity())
    for _ in range(3):          # three MCMC iterations of one annealing step
        score = torch.randn(4, 2, 3, 3, dtype=D64) * torch.tensor([1.0, 10, 100, 1000], dtype=D64).view(4, 1, 1, 1)
        drift = hook.drift(state.z0, score, state, ctx)
        ratio = drift.flatten(1).norm(dim=1) / score.flatten(1).norm(dim=1)
        assert torch.allclose(ratio, torch.full((4,), hook.strength(2), dtype=D64))
    hook.after_step(state, ctx)
    (step,) = steps_record(ctx.trace.for_image(0, 1))
    assert step["repulsion_strength"] == pytest.approx(0.4)
    assert step["repulsion_score_ratio"] == pytest.approx(0.4)


def test_score_relative_direction_survives_float32_underflow():
    hook = RepulsionHook(0.5, 10, None, **{**REP, "mode": "score_relative"})
    z = torch.zeros(2, 4)
    z[1, 0] = 1.0
    force = torch.tensor([[-1e-25, 0, 0, 0], [1e-25, 0, 0, 0]])     # squares underflow in float32
    hook._force = lambda *a: force
    score = torch.ones(2, 4)
    drift = hook.drift(z, score, make_state(z.double()), ctx_at(0, Identity()))
    assert torch.allclose(drift.norm(dim=1), hook.strength(0) * score.norm(dim=1))
    assert drift[0, 0] < 0 < drift[1, 0]


def test_absolute_mode_logs_the_mean_ratio():
    torch.manual_seed(6)
    hook = RepulsionHook(3.0, 10, None, **{**REP, "mode": "absolute", "schedule": "linear"})
    state = make_state(torch.randn(4, 6, dtype=D64))
    ctx = ctx_at(0, Identity())
    score = torch.randn(4, 6, dtype=D64)
    drift = hook.drift(state.z0, score, state, ctx)
    force, _ = rbf_repulsion(state.z0, state.image_ids)
    assert torch.allclose(drift, 3.0 * force)
    hook.after_step(state, ctx)
    want = (drift.norm(dim=1) / score.norm(dim=1)).mean()
    assert steps_record(ctx.trace)[0]["repulsion_score_ratio"] == pytest.approx(float(want))


def test_repulsion_config_end_point_and_validation():
    K = 50

    def hook(*overrides):
        return STAGES["repulsion"].hook(settings(*overrides).stages["repulsion"])
    assert hook("repulsion_scale=0.3").end_k == trigger_step(200, K)
    # with refinement from t = 100 (k = 45) the strength ends there, and no drift from it on whatever the mode
    assert hook("repulsion_scale=0.3", "refine_step=100").end_k == 45
    assert hook("repulsion_scale=0.3", "repulsion.end_t=500", "refine_step=100").end_k == 25
    pg = hook("repulsion_scale=1e5", "repulsion.mode=particle_guidance", "refine_step=100")
    assert pg.strength(44, 5.0) == 1e5 and pg.strength(45, 5.0) == 0.0
    for override, key in [("repulsion.mode=strong", "repulsion.mode"),
                          ("repulsion.schedule=step", "repulsion.schedule"),
                          ("repulsion.features=vgg", "repulsion.features"), ("repulsion.end_t=1000", "repulsion.end_t"),
                          ("repulsion.pixel_size=0", "repulsion.pixel_size"), ("repulsion_scale=-1", "repulsion_scale"),
                          ("repulsion_scale=nan", "repulsion_scale")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "=.* is invalid"):
            validate(compose("repulsion_scale=0.3", override))
