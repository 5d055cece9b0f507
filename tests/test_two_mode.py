"""Two-mode benchmark: exact Gaussian-mixture denoiser and the symmetry that makes two modes."""
import torch

from core.tensors import rot180
from models.two_mode import GaussianMixtureDenoiser, benchmark_images, build_two_mode
from tests.conftest import compose


def test_exact_denoiser_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[1.0, 0.5], [-1.0, 0.2], [0.3, -1.2]], dtype=torch.float64).view(3, 1, 1, 2)
    model = GaussianMixtureDenoiser(means, std=0.3, weights=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64))
    sigma = 0.7
    z = torch.tensor([[0.2, -0.1]], dtype=torch.float64).view(1, 1, 1, 2)
    # E[z0 | z] by self-normalised importance sampling from the prior
    z0 = model.sample(400_000, generator=g)
    logw = -((z - z0) ** 2).flatten(1).sum(1) / (2 * sigma ** 2)
    w = torch.softmax(logw, 0)
    mc = (w[:, None] * z0.flatten(1)).sum(0)
    exact = model.denoise(z, sigma).flatten()
    assert torch.allclose(exact, mc, atol=5e-3), (exact, mc)


def test_denoiser_limits():
    means = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    model = GaussianMixtureDenoiser(means, std=0.1)
    z = means[2:3] + 0.01
    assert torch.allclose(model.denoise(z, 1e-6), z, atol=1e-6)          # tiny noise: D(z) = z
    far = model.denoise(torch.zeros(1, 3, 4, 4, dtype=torch.float64), 1e4)
    assert torch.allclose(far.flatten(), means.flatten(1).mean(0), atol=1e-4)  # huge noise: prior mean
    # per-sample sigma and batch independence
    zz = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    s = torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)
    batched = model.denoise(zz, s)
    single = torch.cat([model.denoise(zz[i:i + 1], float(s[i])) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-12)


def test_benchmark_prior_is_rotation_symmetric():
    cfg = compose()
    model = build_two_mode(cfg.model, "cpu")
    n = cfg.model.num_images
    assert model.means.shape == (2 * n, 3 * 32 * 32)
    means = model.means.view(2 * n, 3, 32, 32)
    assert torch.equal(rot180(means[:n]), means[n:])
    z = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    # D commutes with rotation because the mixture contains every rotation
    assert torch.allclose(model.denoise(rot180(z), 0.5), rot180(model.denoise(z, 0.5)), atol=1e-10)
    imgs = benchmark_images(32, n)
    assert imgs.min() >= -1 and imgs.max() <= 1
    # the images are distinct from their rotations (otherwise two modes would be one)
    assert ((imgs - rot180(imgs)).flatten(1).norm(dim=1) > 5).all()
