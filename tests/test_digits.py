"""The mini LDM on the bundled digits: the data split, the trainer's pieces, and the shipped checkpoint against its
model card (loaded strictly through the loader every LDM run uses)."""
import json
import sys

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT, compose

pytest.importorskip("sklearn", reason="the digits ship inside scikit-learn (requirements.txt)")

from data.digits import TRAIN_SIZE, DigitImages, _raw, digits  # noqa: E402
from core.tensors import rot180  # noqa: E402

WEIGHTS = ROOT / "weights" / "digits32ldm"
# gates the shipped model must pass (its card: 45.2 dB; samples 78.1 % confident against 72.7 % for real digits)
GATE_RECON_DB = 35.0
GATE_SAMPLE_SHARE = 0.9
# the acceptance run (2 test digits, 4 particles): 36.05 dB best-of-4 trained, 7.87 dB with random weights
ACCEPT_MARGIN_DB = 15.0
sys.path.insert(0, str(ROOT / "scripts" / "training"))


def test_split_by_index_range_and_rotation():
    x_train, y_train = digits("train")
    x_test, y_test = digits("test")
    raw, labels = _raw()
    assert len(x_train) == TRAIN_SIZE == 1500 and len(x_test) == 297 and len(raw) == 1797
    assert x_test.shape[1:] == (3, 32, 32) and x_test.min() == -1 and x_test.max() == 1
    assert torch.equal(y_test, labels[TRAIN_SIZE:]) and torch.equal(x_test[:, 0], x_test[:, 2])
    # the 4x bilinear upsampling commutes with the 180° rotation: a rotated test digit is its rotated original
    up = F.interpolate(torch.flip(raw[TRAIN_SIZE:, None], (-2, -1)) / 8 - 1, size=32, mode="bilinear",
                       align_corners=False)
    torch.testing.assert_close(rot180(x_test)[:, :1], up, rtol=0, atol=1e-6)
    ds = DigitImages("test", start=3, count=2)
    assert ds.names == [f"test0003_{int(y_test[3])}", f"test0004_{int(y_test[4])}"] and ds.indices == [3, 4]
    assert torch.equal(ds[1][1], x_test[4])


def test_the_digits_are_scikit_learns_exactly():
    """data.digits reads sklearn's file itself (no sklearn.datasets import): the same images and labels, bit for bit."""
    from sklearn.datasets import load_digits

    raw, labels = _raw()
    theirs = load_digits()
    assert torch.equal(raw, torch.from_numpy(theirs.images).float())
    assert torch.equal(labels, torch.from_numpy(theirs.target).long())


def test_bad_split_range_and_size_mismatch_refused():
    from core.errors import DataError
    from core.errors import ConfigError
    from pipeline.validate import validate

    with pytest.raises(DataError, match="has 297 images; start_index=290 with num_eval_images=10 needs 300"):
        DigitImages("test", 290, 10)
    with pytest.raises(ConfigError, match="32x32 images but the model makes 256x256"):
        validate(compose("model=ffhq256ldm", "sampler=langevin", "data=digits"))
    with pytest.raises(ConfigError, match="256x256 images but the model makes 32x32"):
        validate(compose("model=digits32ldm", "sampler=digits32ldm", "data=demo-ffhq"))
    with pytest.raises(ConfigError, match="data.split=val is invalid"):
        validate(compose("model=digits32ldm", "sampler=digits32ldm", "data=digits", "data.split=val"))


def _mini(seed=0):
    from omegaconf import OmegaConf

    from models.ldm.model import LatentDiffusion

    torch.manual_seed(seed)
    return LatentDiffusion(OmegaConf.to_container(OmegaConf.load(ROOT / "configs/model/digits32ldm.yaml")))


def test_latent_normalisation_folds_into_the_weights():
    from train_mini_ldm import normalise_latents

    vq = _mini().first_stage_model.double().eval()
    x = digits("test")[0][:16].double()
    with torch.no_grad():
        vq.quantize.embedding.weight.copy_(vq.encode(x).permute(0, 2, 3, 1).reshape(-1, 3)[:1024])
        before = vq.decode(vq.encode(x))
        std = normalise_latents(vq, x)
        z = vq.encode(x)
        after = vq.decode(z)
    assert std != pytest.approx(1.0) and float(z.std()) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-12)     # same codes, same image, up to round-off


def test_training_smoke_writes_a_strictly_loadable_checkpoint(tmp_path, monkeypatch):
    """A few steps of each stage through the script's main: the losses fall and the file loads strictly."""
    import train_mini_ldm

    from models.ldm import build_ldm

    monkeypatch.setattr(sys, "argv", ["train_mini_ldm.py", "--out", str(tmp_path), "--grid", "", "--ae-steps", "40",
                                      "--ae-batch", "8", "--unet-steps", "40", "--unet-batch", "16",
                                      "--gate-samples", "4", "--threads", "1", "--log-every", "10"])
    train_mini_ldm.main()
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["autoencoder"]["history"][-1]["mse"] < 0.5 * card["autoencoder"]["history"][0]["mse"]
    assert card["unet"]["history"][-1]["eps_mse"] < card["unet"]["history"][0]["eps_mse"]
    state = torch.load(tmp_path / "model.ckpt", weights_only=True)["state_dict"]
    assert {"betas", "alphas_cumprod", "posterior_mean_coef2"} <= set(state)
    cfg = {**_mini().cfg, "ckpt_path": str(tmp_path / "model.ckpt")}
    model = build_ldm(cfg, "cpu")
    torch.testing.assert_close(model.model.diffusion_model.out[2].weight,
                               state["model.diffusion_model.out.2.weight"], rtol=0, atol=0)
    assert "| VQ reconstruction PSNR" in (tmp_path / "MODEL_CARD.md").read_text()


@pytest.fixture(scope="module")
def shipped():
    from omegaconf import OmegaConf

    from models.ldm import build_ldm

    cfg = OmegaConf.load(ROOT / "configs/model/digits32ldm.yaml")
    return build_ldm(cfg, "cpu"), json.loads((WEIGHTS / "card.json").read_text())


def test_shipped_checkpoint_reproduces_its_card(shipped):
    """The file in the repository loads strictly (the real Lightning layout) and gives the card's gates again."""
    from quality.digits import gates

    model, card = shipped
    assert (WEIGHTS / "model.ckpt").stat().st_size < 10 * 2 ** 20
    g, _ = gates(model, card["gates"]["samples"], seed=card["gates"]["sample_seed"])
    assert g["recon_psnr_test"] == pytest.approx(card["gates"]["recon_psnr_test"], abs=0.01)
    assert g["classifier_accuracy_test"] == card["gates"]["classifier_accuracy_test"]
    # a sample near the classifier's 0.9 line may flip with the platform's round-off: a few of 256
    assert g["confident_share_samples"] == pytest.approx(card["gates"]["confident_share_samples"], abs=3 / 256)
    # the gates themselves: a faithful first stage, and samples a real-digit classifier names as often as real ones
    assert g["recon_psnr_test"] > GATE_RECON_DB
    assert g["confident_share_samples"] > GATE_SAMPLE_SHARE * g["confident_share_test"]
    assert min(g["confident_classes_samples"]) > 0                     # every class is drawn


# raw digits: the random control's own reconstructions would be other truths (data.ground_truth=decoded goes
# through the run's model), and the comparison needs the same ones
ACCEPT = ["model=digits32ldm", "sampler=digits32ldm", "data=digits", "data.ground_truth=raw", "particle_num=4",
          "num_eval_images=1", "save_images=false"]


def test_learned_prior_beats_random_weights_through_the_entry_point(tmp_path):
    """The acceptance run: the shipped checkpoint through posterior_sample.py (run as the command line runs it,
    tests/conftest.cli) against the same run with random weights of the same architecture (the library's run)."""
    import pipeline.run as pipeline_run
    from tests.conftest import cli

    r = cli(*ACCEPT, f"save_dir={tmp_path}", "name=trained", cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    trained = json.loads((tmp_path / "trained" / "metric.json").read_text())
    random = pipeline_run.run(compose(*ACCEPT, f"save_dir={tmp_path}", "name=random", "model.ckpt_path=null",
                                      "model.random_init_ok=true"))
    assert trained["summary"]["best_of_n_psnr_mean"] > random["summary"]["best_of_n_psnr_mean"] + ACCEPT_MARGIN_DB
    assert trained["summary"]["prior_success_rate"] == 1.0 and random["summary"]["search_success_rate"] == 0.0
