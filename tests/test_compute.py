"""Compute per image: network rows counted at the model's methods, TFLOP by the cost model."""
import pytest

import pipeline.run as run_mod
from tests.conftest import compose
from tracking.compute import compute_record, tflop_per_row
from tracking.metric_file import read_json


def test_rows_per_image_follow_particles_steps_and_pruning(tmp_path):
    """4 particles, K = 10, M = 3, pruned to 2 at t = 200 (step 8): decoder VJPs = 4 x 9 x 3 + 2 x 1 x 3, one
    scoring decode per particle at the pruning step, 2 ODE steps of UNet rows per particle and step."""
    cfg = compose("particle_num=4", "num_eval_images=2", "images_per_batch=1", "pruning_step=200",
                  "sampler.annealing.num_steps=10", "sampler.mcmc.num_steps=3", "save_images=false",
                  f"save_dir={tmp_path}", "name=c")
    run_mod.run(cfg, ["posterior_sample.py"])
    m = read_json(tmp_path / "c" / "metric.json")
    for im in m["images"]:
        rows = im["compute"]["rows"]
        assert rows == {"decoder_vjp": 4 * 9 * 3 + 2 * 1 * 3, "decoder_forward": 4, "unet": 2 * (4 * 9 + 2 * 1),
                        "unet_vjp": 0, "encoder": 0}
        assert im["compute"]["tflop"] is None                   # the two-mode model has no networks to cost
    assert m["summary"]["decoder_vjp_rows_per_image"] == 114 and m["summary"]["unet_rows_per_image"] == 76
    # without pruning: the full particles x steps x MCMC steps
    cfg = compose("particle_num=4", "sampler.annealing.num_steps=10", "sampler.mcmc.num_steps=3",
                  "save_images=false", f"save_dir={tmp_path}", "name=d")
    run_mod.run(cfg, ["posterior_sample.py"])
    assert read_json(tmp_path / "d" / "metric.json")["images"][0]["compute"]["rows"]["decoder_vjp"] == 4 * 10 * 3


def test_cost_model_of_the_full_size_ldms():
    """One row of the full-size FFHQ LDM, as the issue states them: decoder VJP 1.376, forward 0.671, UNet 0.202."""
    ffhq = tflop_per_row(compose("model=ffhq256ldm", "sampler=langevin", "data=demo-ffhq").model)
    assert ffhq["decoder_vjp"] == pytest.approx(1.376, abs=1e-3)
    assert ffhq["decoder_forward"] == pytest.approx(0.671, abs=1e-3)
    assert ffhq["unet"] == pytest.approx(0.202, abs=1e-3)
    assert 0.3 < ffhq["encoder"] < 0.4
    assert ffhq["unet_vjp"] == pytest.approx(2 * ffhq["unet"], rel=0.05)    # ReSample's guidance: forward + input VJP
    imagenet = tflop_per_row(compose("model=imagenet256ldm", "sampler=langevin", "data=demo-imagenet").model)
    assert imagenet["unet"] > ffhq["unet"] and imagenet["decoder_vjp"] == ffhq["decoder_vjp"]
    rec = compute_record({"decoder_vjp": 50, "decoder_forward": 2, "unet": 10, "encoder": 0}, ffhq)
    assert rec["rows"]["decoder_vjp"] == 50
    assert rec["tflop"] == pytest.approx(50 * ffhq["decoder_vjp"] + 2 * ffhq["decoder_forward"] + 10 * ffhq["unet"])
