"""The natural-image mini LDM: crops of bundled photographs held out by source, the trainer on them, the shipped
checkpoint against its card, and the learned prior against random weights."""
import json
import sys

import pytest
import torch

from tests.conftest import ROOT, compose

pytest.importorskip("skimage", reason="the photographs ship inside scikit-image and scikit-learn (requirements.txt)")
pytest.importorskip("sklearn", reason="the photographs ship inside scikit-image and scikit-learn (requirements.txt)")

from data.natural import (MIN_TEST_STD, RESOLUTION, TEST_SOURCES, TRAIN_SOURCES, NaturalCrops,  # noqa: E402
                          held_out_crops, pyramid, random_crops)

WEIGHTS = ROOT / "weights" / "naturalldm"
ACCEPT_MARGIN_DB = 5.0
sys.path.insert(0, str(ROOT / "scripts" / "training"))


def test_held_out_by_source_and_no_benchmark_image_among_the_tests():
    from models.two_mode import SKIMAGE_IMAGES

    assert not set(TRAIN_SOURCES) & set(TEST_SOURCES)
    benchmark = {n.rsplit(".", 1)[0] for n in SKIMAGE_IMAGES}
    assert not set(TEST_SOURCES) & benchmark and set(TEST_SOURCES) == {"china", "flower"}
    x, names = held_out_crops()
    assert x.shape == (64, 3, RESOLUTION, RESOLUTION) and x.min() >= -1 and x.max() <= 1
    assert all(n.split("_")[0] in TEST_SOURCES for n in names) and len(set(names)) == 64
    assert (x.flatten(1).std(1) >= MIN_TEST_STD).all()
    # every test crop is a slice of its source photograph at its scale, as its name says
    for i in (0, 17, 63):
        source, scale, top, left = names[i].split("_")
        img = pyramid(source)[[64, 96, 128, 192].index(int(scale[1:]))]
        assert torch.equal(x[i], img[:, int(top):int(top) + 32, int(left):int(left) + 32])
    ds = NaturalCrops(start=2, count=3)
    assert ds.indices == [2, 3, 4] and torch.equal(ds[0][1], x[2]) and ds.names == list(names[2:5])


def test_training_crops_flip_left_right_only():
    g = torch.Generator().manual_seed(0)
    x, names = random_crops(TRAIN_SOURCES, 32, g, flip=True)
    flipped = [i for i, n in enumerate(names) if n.endswith("f")]
    assert 0 < len(flipped) < 32 and all(n.split("_s")[0] in TRAIN_SOURCES for n in names)
    i = flipped[0]
    source, rest = names[i].split("_s")
    scale, top, left = rest[:-1].split("_")
    img = pyramid(source)[[64, 96, 128, 192].index(int(scale))]
    assert torch.equal(x[i], torch.flip(img[:, int(top):int(top) + 32, int(left):int(left) + 32], (-1,)))


def test_training_smoke_on_natural_crops(tmp_path, monkeypatch):
    """A few steps of each stage through the script's main on natural crops: losses fall, the file loads strictly."""
    import train_mini_ldm

    from models.ldm import build_ldm

    monkeypatch.setattr(sys, "argv", ["train_mini_ldm.py", "--data", "natural", "--out", str(tmp_path), "--grid", "",
                                      "--ae-steps", "30", "--ae-batch", "8", "--unet-steps", "20", "--unet-batch", "8",
                                      "--pool", "64", "--gate-samples", "4", "--threads", "1", "--log-every", "10"])
    train_mini_ldm.main()
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["data"] == "natural" and card["name"] == "naturalldm" and card["unet"]["pool"] == 64
    assert card["autoencoder"]["history"][-1]["mse"] < card["autoencoder"]["history"][0]["mse"]
    model = build_ldm({**compose("model=naturalldm").model, "ckpt_path": str(tmp_path / "model.ckpt")}, "cpu")
    assert set(card["gates"]) >= {"recon_psnr_test", "eps_mse_test", "spectral_slope_samples"}
    assert "natural" in (tmp_path / "MODEL_CARD.md").read_text()
    # the file holds the model the card measured: its first stage reconstructs the test crops as the card says
    from quality.natural import gates

    g, _ = gates(model, 4, seed=card["gates"]["sample_seed"])
    assert g["recon_psnr_test"] == pytest.approx(card["gates"]["recon_psnr_test"], abs=0.01)


@pytest.fixture(scope="module")
def shipped():
    from omegaconf import OmegaConf

    from models.ldm import build_ldm

    if not (WEIGHTS / "model.ckpt").exists():
        pytest.fail(f"{WEIGHTS / 'model.ckpt'} is missing: the natural-image model ships with the repository")
    return build_ldm(OmegaConf.load(ROOT / "configs/model/naturalldm.yaml"), "cpu"), \
        json.loads((WEIGHTS / "card.json").read_text())


def test_shipped_checkpoint_reproduces_its_card(shipped):
    from quality.natural import gates

    model, card = shipped
    assert (WEIGHTS / "model.ckpt").stat().st_size < 10 * 2 ** 20
    g, _ = gates(model, card["gates"]["samples"], seed=card["gates"]["sample_seed"])
    for key in ("recon_psnr_test", "recon_psnr_train"):
        assert g[key] == pytest.approx(card["gates"][key], abs=0.01), key
    for key in ("eps_mse_test", "eps_mse_train", "spectral_slope_samples"):
        assert g[key] == pytest.approx(card["gates"][key], rel=0.02), key
    # the gates: a first stage that keeps the crops, a prior that generalises to held-out photographs (its error
    # there within 50 % of the training error) and samples with the spectrum of natural images
    assert g["recon_psnr_test"] > 20
    assert g["eps_mse_test"] < 1.5 * g["eps_mse_train"]          # measured: 1.26 times
    assert abs(g["spectral_slope_samples"] - g["spectral_slope_test"]) < 0.75


def test_learned_prior_beats_random_weights(tmp_path):
    """One held-out crop (test crop 16, which the gate run found), 4 particles: the shipped weights against random
    weights of the same architecture (the acceptance run, docs/naturalldm.md)."""
    import pipeline.run as pipeline_run

    # raw crops: the random control's own reconstructions would be other truths (data.ground_truth=decoded goes
    # through the run's model), and the comparison needs the same ones
    common = ["model=naturalldm", "sampler=naturalldm", "data=natural", "data.ground_truth=raw", "particle_num=4",
              "num_eval_images=1", "data.start_index=16", "save_images=false", "model.cpu_threads=1",
              "orientation.elbo_evals=8", f"save_dir={tmp_path}"]          # best-of-N does not need the orientation
    trained = pipeline_run.run(compose(*common, "name=trained"))
    random = pipeline_run.run(compose(*common, "name=random", "model.ckpt_path=null", "model.random_init_ok=true"))
    assert trained["summary"]["best_of_n_psnr_mean"] > random["summary"]["best_of_n_psnr_mean"] + ACCEPT_MARGIN_DB
