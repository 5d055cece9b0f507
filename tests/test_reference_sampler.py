"""An independent reference: LatentDAPS for one particle, written naively from the README's update equations (Python
loops, float64, no code of sampler/ but the per-particle seed), equals the batched `latent_daps` to 1e-10."""
import math

import pytest
import torch

from models import build_model
from operators import build_operator
from pipeline.sampling import make_state
from sampler import latent_daps, measurement_generator, particle_generator
from pipeline.resolve import resolve
from tests.conftest import compose, loop


def poly7(a: float, b: float, n: int) -> list[float]:
    """n + 1 points from a to b, uniform in sigma^(1/7)."""
    return [(a ** (1 / 7) + j / n * (b ** (1 / 7) - a ** (1 / 7))) ** 7 for j in range(n + 1)]


def reference_particle(model, operator, y, cfg, seed: int, image: int, particle: int) -> torch.Tensor:
    s = cfg.sampler
    K, M = s.annealing.num_steps, s.mcmc.num_steps
    tau, hmc = s.mcmc.tau, s.mcmc.algo == "hmc"
    g = particle_generator(seed, image, particle, "cpu")
    shape = model.latent_shape

    def noise():
        return torch.randn(shape, generator=g, dtype=torch.float64)

    sigmas = poly7(s.annealing.sigma_max, s.annealing.sigma_min, K)
    sigmas[K] = 0.0                                  # DAPS: the last grid point replaced by 0
    z = noise() * s.annealing.sigma_max
    for k in range(K):
        sigma = sigmas[k]
        # x0 estimate: Euler steps of dz/dsigma = (z - D(z, sigma)) / sigma from sigma to ode.sigma_min
        grid = poly7(sigma, s.ode.sigma_min, s.ode.num_steps)
        x0 = z.clone()
        for a, b in zip(grid[:-1], grid[1:]):
            x0 = x0 + (b - a) * (x0 - model.denoise(x0[None], a)[0]) / a
        # step size decays linearly in k / (K + 1) from lr to lr * lr_min_ratio
        lr = s.mcmc.lr * (1 + k / (K + 1) * (s.mcmc.lr_min_ratio - 1))
        x = x0.clone()
        if hmc:
            v = noise()
        for _ in range(M):
            xr = x.clone().requires_grad_(True)
            loss = ((operator(model.decode(xr[None]))[0] - y[0]) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, xr)
            score = -grad.clamp(-1, 1) / tau ** 2 + (x0 - x) / sigma ** 2
            eps = noise()
            if hmc:
                v = s.mcmc.momentum * v + math.sqrt(lr) * score + math.sqrt(2 * (1 - s.mcmc.momentum)) * eps
                x = x + math.sqrt(lr) * v
            else:
                x = x + lr * score + math.sqrt(2 * lr) * eps
        z = x.detach() + sigmas[k + 1] * noise()
    return z


@pytest.mark.parametrize("algo", ["langevin", "hmc"])
def test_batched_sampler_equals_naive_reference(algo):
    over = ["particle_num=3", "sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=3", "dtype=float64",
            f"sampler.mcmc.algo={algo}"]
    if algo == "hmc":
        over += ["sampler.mcmc.momentum=0.41", "sampler.mcmc.lr=5e-5"]
    cfg = compose(*over)
    model = build_model(cfg.model, "cpu").double()
    op = build_operator(cfg.task, 32)
    from data import build_dataset
    _, gt = build_dataset(cfg.data, cfg.model, 2, 1)[0]
    y = op.measure(gt[None].double(), generator=measurement_generator(cfg.seed, 2))
    s = resolve(cfg)
    out = latent_daps(model, op, make_state(model, y, s, 2, torch.device("cpu"), torch.float64), *loop(s))
    for i in range(3):
        ref = reference_particle(model, op, y, cfg, cfg.seed, 2, i)
        torch.testing.assert_close(out.z[i], ref, rtol=0, atol=1e-10)
    assert not torch.allclose(out.z[0], out.z[1])
