"""Orientation by the prior: exact mixture log-densities, the ELBO estimate with common random numbers, the
non-oracle choice, and its cost on the tiny LDM."""
import math

import pytest
import torch

import pipeline.run as pipeline_run
from evaluation.orientation import elbo_sigmas, prior_log_ratio
from models import build_model
from models.two_mode import GaussianMixtureDenoiser
from core.tensors import rot180
from tests.conftest import compose
from tracking.compute import NetworkCounter

BENCHMARKS = ("two_mode", "two_mode_latent")


def bench(name, *over):
    return compose(f"model={name}", f"sampler={name}", f"data={name}", *over)


def test_exact_log_density_of_the_mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 1, 2, 2, generator=g, dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    model = GaussianMixtureDenoiser(means, std=0.4, weights=weights)
    z = torch.randn(5, 1, 2, 2, generator=g, dtype=torch.float64)
    comps = torch.distributions.Independent(torch.distributions.Normal(means.flatten(1), 0.4), 1)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(weights), comps)
    torch.testing.assert_close(model.log_prob(z), ref.log_prob(z.flatten(1)), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_rotated_weight_sets_the_exact_log_ratio(name):
    """At a component mean the other orientation's component is negligible: the ratio is log(1 / w) (to 1e-3:
    hubble_deep_field is nearly its own rotation, so its twin adds a little mass)."""
    model = build_model(bench(name, "model.rotated_weight=0.5").model, "cpu")
    n = 20
    mu = model.means.view(2 * n, *model.latent_shape)
    cfg = bench(name).orientation
    up, down = prior_log_ratio(model, mu[:n], cfg), prior_log_ratio(model, mu[n:], cfg)
    assert torch.allclose(up, torch.full_like(up, math.log(2)), atol=1e-3)
    assert torch.allclose(down, torch.full_like(down, -math.log(2)), atol=1e-3)
    symmetric = build_model(bench(name).model, "cpu")
    assert prior_log_ratio(symmetric, mu[:n], cfg).abs().max() == 0          # the symmetric control: a tie


@pytest.mark.parametrize("name", BENCHMARKS)
def test_elbo_agrees_in_sign_with_the_exact_ratio(name):
    """At the default number of evaluations, on particles in the modes (drawn from the prior: upright and rotated
    components) of the asymmetric benchmarks, the ELBO estimate's sign is the exact log-ratio's for >= 95 %."""
    cfg = bench(name, "model.rotated_weight=0.5", "orientation.method=elbo")
    model = build_model(cfg.model, "cpu").float()
    z = model.sample(60, generator=torch.Generator().manual_seed(3)).float()
    exact = prior_log_ratio(model, z, bench(name).orientation)
    est = prior_log_ratio(model, z, cfg.orientation, torch.Generator().manual_seed(4))
    assert (exact.abs() > 0.5).all()
    assert ((est > 0) == (exact > 0)).double().mean() >= 0.95
    # common random numbers rotated with the latent: on the symmetric prior the two terms are equal draw by draw,
    # so the estimate is 0 up to float32 round-off (the signal above is ~0.7)
    sym = build_model(bench(name).model, "cpu").float()
    assert prior_log_ratio(sym, z, cfg.orientation, torch.Generator().manual_seed(4)).abs().max() == 0


def test_elbo_on_the_tiny_ldm_is_batched_and_counted():
    """Every particle and both orientations go through one UNet call per noise level; rows are counted."""
    import importlib.util
    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "performance" / "benchmark.py")
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    cfg = bm.base_config(bm.parse_args(["--tiny", "--steps", "3", "--mcmc-steps", "1"]), "tiny")
    cfg.orientation.elbo_evals = 16
    model = build_model(cfg.model, "cpu")
    calls = []
    unet = model.denoise
    model.denoise = lambda z, s: calls.append(z.shape[0]) or unet(z, s)
    z = torch.randn(3, *model.latent_shape, generator=torch.Generator().manual_seed(0))
    with NetworkCounter(model) as counter:
        ratio = prior_log_ratio(model, z, cfg.orientation, torch.Generator().manual_seed(1))
    assert ratio.shape == (3,) and torch.isfinite(ratio).all()
    assert calls == [6] * 16                                   # 3 particles x 2 orientations, one call per level
    assert counter.rows == {"decoder_vjp": 0, "decoder_forward": 3, "unet": 2 * 3 * 16, "unet_vjp": 0,
                            "encoder": 6}
    # with the decode the evaluation already made, none is repeated, and the ratio is the same
    x = model.decode(z)
    with NetworkCounter(model) as counter:
        again = prior_log_ratio(model, z, cfg.orientation, torch.Generator().manual_seed(1), x)
    assert counter.rows["decoder_forward"] == 0 and torch.equal(again, ratio)
    assert len(elbo_sigmas(16, 0.01, 10.0)) == 16


def test_best_by_prior_orients_the_lowest_loss_particle(tmp_path):
    cfg = bench("two_mode", "model.rotated_weight=0.5", "num_eval_images=3", "sampler.annealing.num_steps=10",
                "sampler.mcmc.num_steps=5", f"save_dir={tmp_path}", "name=o", "save_images=false")
    m = pipeline_run.run(cfg, ["posterior_sample.py"])
    for im in m["images"]:
        final = [p for p in im["particles"] if p["pruned_at"] is None]
        chosen = min(final, key=lambda p: p["measurement_loss"])
        assert im["best_by_prior"]["particle"] == chosen["particle"] == im["best_by_loss"]["particle"]
        for p in final:
            assert p["oriented"]["rotated"] == (p["prior_log_ratio"] < 0)
            assert p["prior_log_ratio"] != 0                  # the asymmetric prior always has a preference
            if p["mode"] != "fail":          # a particle in either mode is turned upright by the prior
                assert p["oriented"]["mode"] == "0" and p["oriented"]["psnr"] == pytest.approx(
                    max(p["psnr"], p["psnr_180"]), abs=1e-4)
        assert im["orientation"]["method"] == "auto" and im["orientation"]["tflop"] is None
    s = m["summary"]
    assert s["prior_success_rate"] == sum(im["best_by_prior"]["mode"] == "0" for im in m["images"]) / 3
    for im in m["images"]:                   # the posterior's choice: the highest loss-and-prior score, oriented
        final = [p for p in im["particles"] if p["pruned_at"] is None]
        best = max(final, key=lambda p: p["log_posterior"])
        assert im["choices"]["posterior"]["particle"] == best["particle"]
        assert im["choices"]["loss"] == {**im["best_by_prior"], "rule": "loss"}


def test_log_posterior_is_loss_against_the_oriented_log_prior():
    """-||A(x) - y||^2 / 2 sigma^2 + log p(x oriented), exactly, on the benchmark's mixture; the posterior's
    choice then prefers a fitting particle in the likelier orientation."""
    from evaluation.record import choose, orient, particle_rows
    from pipeline.resolve import resolve
    from models import build_model
    from operators import build_operator
    from sampler.state import measurement_generator

    cfg = compose("model.rotated_weight=0.5", "dtype=float64")
    model = build_model(cfg.model, "cpu").double()
    op = build_operator(cfg.task, 32)
    gt = model.means[:1].view(1, 3, 32, 32)
    y = op.measure(gt, generator=measurement_generator(0, 0))
    g = torch.Generator().manual_seed(0)
    z = torch.cat([gt, rot180(gt), model.means[1:2].view(1, 3, 32, 32)]) + 0.02 * torch.randn(3, 3, 32, 32,
                                                                                               generator=g, dtype=torch.float64)
    eq = op.equivalents(gt)
    rows = particle_rows(z, gt, y, op, 20.0, None, eq, [0, 1, 2], [True] * 3)
    with NetworkCounter(model) as counter:
        orient(model, z, z, gt, resolve(cfg).eval, None, eq, 0, rows, counter, op)
    for r, zi in zip(rows, z):
        lp = max(float(model.log_prob(zi[None])), float(model.log_prob(rot180(zi)[None])))
        assert r["log_posterior"] == pytest.approx(-r["measurement_loss"] / (2 * op.sigma ** 2) + lp, rel=1e-12)
    assert [r["mode"] for r in rows] == ["0", "180", "fail"]
    picked = choose(rows, "posterior")
    assert picked["particle"] in (0, 1) and picked["mode"] == "0" and picked["rule"] == "posterior"
    assert choose(rows, "loss")["particle"] == min(rows, key=lambda r: r["measurement_loss"])["particle"]


def test_the_digits_elbo_orients_its_own_decoded_truths():
    """scripts/orientation_on_truths.py, the check a model's ELBO passes before its turn is trusted: the learned
    digits prior prefers the upright one of its decoded test digits (98-100 % of 50 at 32-512 levels, measured), and
    a decoded truth re-encodes better than its rotation (the loss's own hint of the orientation)."""
    import statistics
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from orientation_on_truths import measure

    r = measure("digits32ldm", 8, [32], 1)
    assert r["images"] == 8 and r["upright"][32][0] >= 7 / 8
    assert statistics.median(r["psnr"]["truth"]) > statistics.median(r["psnr"]["rotation"]) + 2
