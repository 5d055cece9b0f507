"""Metrics: PSNR/SSIM against the image and its rotation, the mode label, LPIPS with and without weights."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.tensors import rot180
from evaluation.metrics import evaluate_particles, mode_label
from evaluation.perceptual import lpips_linear_weights, load_lpips
from operators import PhaseRetrieval


def classes(gt):
    """The ground truth's class under phase retrieval (its resolution, oversampling 2, sigma 0.05)."""
    return PhaseRetrieval(gt.shape[-1], 2.0, 0.05).equivalents(gt)


def test_mode_label():
    assert mode_label(30.0, False, 20.0) == "0"
    assert mode_label(25.0, True, 20.0) == "180"
    assert mode_label(19.0, False, 20.0) == "fail" and mode_label(19.9, True, 20.0) == "fail"


def test_rotated_particle_is_labelled_180():
    gt = torch.rand(1, 3, 32, 32) * 2 - 1
    x = torch.cat([gt, rot180(gt), torch.zeros_like(gt)])
    rows = evaluate_particles(x, gt, classes(gt), fail_psnr=20.0)
    assert [r["mode"] for r in rows] == ["0", "180", "fail"]
    assert rows[0]["psnr"] >= 80 and rows[1]["psnr_180"] >= 80 and rows[0]["ssim"] == pytest.approx(1.0, abs=1e-4)
    # PSNR on [0, 1] images, data range 1
    half = torch.full_like(gt, 0.0)
    expected = 10 * torch.log10(1 / ((gt * 0.5 + 0.5 - 0.5) ** 2).mean())
    assert evaluate_particles(half, gt, classes(gt), 20.0)[0]["psnr"] == pytest.approx(expected.item(), rel=1e-4)


def test_lpips_missing_weights_is_null_with_one_note(tmp_path, monkeypatch, capsys):
    """Offline, with no weights file and an empty cache: LPIPS is null, said in one line, the run goes on."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    model = load_lpips("daps", None)
    err = capsys.readouterr().err
    assert model is None and err.count("\n") == 1 and err.startswith("note: LPIPS is recorded as null")
    # the note names the fix: the file to get and where it goes
    assert "pass eval.lpips_weights=PATH" in err and str(tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth") in err
    assert not (tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth").exists()      # no half-written file
    gt = torch.rand(1, 3, 32, 32) * 2 - 1
    assert evaluate_particles(gt, gt, classes(gt), 20.0)[0]["lpips"] is None


def _offline(url, dst, *args, **kwargs):
    Path(dst).write_bytes(b"partial")
    raise OSError("Name or service not known")


def _lay_torch_home(shared, home: Path):
    """torchvision's vgg16 file (features from ../shared, the classifier as stride-0 zeros: the file stays small)
    and piq's lpips_weights.pt (the lpips package's v0.1 linear layers) where an online machine would have them."""
    backbone = torch.load(shared / "weights" / "lpips_vgg16_backbone.pt", map_location="cpu", weights_only=True)
    sd = {f"features.{k.split('.', 1)[1]}": v for k, v in backbone.items()}
    for name, (n_out, n_in) in {"0": (4096, 25088), "3": (4096, 4096), "6": (1000, 4096)}.items():
        sd[f"classifier.{name}.weight"] = torch.zeros(1).expand(n_out, n_in)
        sd[f"classifier.{name}.bias"] = torch.zeros(1).expand(n_out)
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(sd, ckpt / "vgg16-397923af.pth")
    torch.save(lpips_linear_weights(), ckpt / "lpips_weights.pt")


def test_daps_lpips_equals_piq_average_pool_lpips(shared, tmp_path, monkeypatch):
    """DAPS's eval.py: piq.LPIPS(replace_pooling=True, reduction='none') on [0, 1] images. Ours equals it, weights
    from torchvision's cache (as an online machine has them) or from eval.lpips_weights."""
    import piq

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)      # nothing may be fetched
    _lay_torch_home(shared, tmp_path)
    reference = piq.LPIPS(replace_pooling=True, reduction="none")
    g = torch.Generator().manual_seed(0)
    y = torch.rand(3, 3, 64, 64, generator=g)
    x = (y + 0.2 * torch.randn(3, 3, 64, 64, generator=g)).clamp(0, 1)
    expected = reference(x, y)
    ours_cache = load_lpips("daps", None)
    ours_file = load_lpips("daps", str(shared / "weights" / "lpips_vgg16_backbone.pt"))
    torch.testing.assert_close(ours_cache(x, y), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours_file(x, y), expected, rtol=0, atol=1e-5)
    # max pooling, as the lpips package: not DAPS's number
    assert (load_lpips("lpips", None)(x, y) - expected).abs().min() > 1e-3


def test_corrupt_lpips_weights_are_a_config_error(tmp_path):
    from core.errors import ConfigError

    bad = tmp_path / "vgg.pt"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(ConfigError, match="cannot be read as a VGG16 state dict"):
        load_lpips("daps", str(bad))
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(ConfigError, match="does not fit VGG16"):
        load_lpips("daps", str(bad))


def test_maxpool_variant_equals_the_lpips_package(shared):
    import lpips

    path = shared / "weights" / "lpips_vgg16_backbone.pt"
    reference = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
    reference.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 64, 64, generator=g)
    x = (y + 0.3 * torch.randn(2, 3, 64, 64, generator=g)).clamp(0, 1)
    torch.testing.assert_close(load_lpips("lpips", str(path))(x, y), reference(2 * x - 1, 2 * y - 1).flatten(),
                               rtol=0, atol=1e-5)


def test_lpips_in_the_particle_rows(shared):
    model = load_lpips("daps", str(shared / "weights" / "lpips_vgg16_backbone.pt"))
    gt = torch.rand(1, 3, 64, 64) * 2 - 1
    x = torch.cat([gt, gt + 0.3 * torch.randn_like(gt)]).clamp(-1, 1)
    rows = evaluate_particles(x, gt, classes(gt), 20.0, model)
    assert rows[0]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["lpips"] == pytest.approx(model((x[1:] + 1) / 2, (gt + 1) / 2).item(), abs=1e-6)


def test_a_diverged_particle_gets_numbers_not_an_exception():
    gt = torch.rand(1, 3, 16, 16) * 2 - 1
    x = torch.cat([gt, torch.full_like(gt, float("nan"))])
    rows = evaluate_particles(x, gt, classes(gt), fail_psnr=20.0)
    assert rows[0]["psnr"] > 60 and rows[0]["mode"] == "0"
    assert math.isfinite(rows[1]["psnr"]) and rows[1]["psnr"] < 20 and rows[1]["mode"] == "fail"


def test_summary_reports_best_of_n_as_daps_and_the_oracle_particle():
    """Per image the max PSNR, max SSIM and min LPIPS over all final particles, failed ones included, each on its
    own (here three different particles); the oracle block keeps the max-PSNR particle's own SSIM and LPIPS."""
    from evaluation.metrics import best_of_n
    from evaluation.summary import summarize

    def p(psnr, ssim, lpips, mode="0", failed=False, pruned_at=None):
        return {"psnr": psnr, "ssim": ssim, "lpips": lpips, "mode": mode, "failed": failed, "pruned_at": pruned_at,
                "measurement_loss": 1.0}

    images = []
    for parts in ([p(30, 0.80, 0.30), p(25, 0.90, 0.40), p(10, 0.10, 0.05, "fail", True), p(40, 1.0, 0.0,
                                                                                           pruned_at={"k": 1})],
                  [p(20, 0.5, 0.2), p(22, 0.4, 0.3)]):
        final = [q for q in parts if q["pruned_at"] is None]
        images.append({"particles": parts, "best_of_n": best_of_n(final), "best_oracle": max(final, key=lambda q: q["psnr"]),
                       "best_by_loss": final[0], "best_by_prior": final[0], "gt_mode_found": True,
                       "both_modes": False, "phases": {},
                       "total_time_s": 1.0})
    assert images[0]["best_of_n"] == {"n": 3, "psnr": 30, "ssim": 0.90, "lpips": 0.05}
    s = summarize(images)
    assert s["best_of_n_psnr_mean"] == pytest.approx(26.0) and s["best_of_n_psnr_std"] == pytest.approx(4.0)
    assert s["best_of_n_ssim_mean"] == pytest.approx(0.70) and s["best_of_n_lpips_mean"] == pytest.approx(0.125)
    assert s["oracle_ssim_mean"] == pytest.approx(0.60) and s["oracle_lpips_mean"] == pytest.approx(0.30)


def test_a_run_records_daps_lpips_of_its_saved_images(shared, tmp_path, monkeypatch):
    """The issue's acceptance run: each particle's LPIPS is what piq's average-pool LPIPS (DAPS's eval.py) gives on
    the saved PNGs, up to 8-bit rounding, and the summary's SSIM is DAPS's best-of-N (max over final particles)."""
    import statistics

    import piq
    from PIL import Image

    import pipeline.run as run_mod
    from tests.conftest import compose

    weights = shared / "weights" / "lpips_vgg16_backbone.pt"
    cfg = compose("particle_num=4", "num_eval_images=2", f"eval.lpips_weights={weights}", f"save_dir={tmp_path}",
                  "name=a", "sampler.annealing.num_steps=10", "sampler.mcmc.num_steps=5")
    run_mod.run(cfg, ["posterior_sample.py"])
    m = json.loads((tmp_path / "a" / "metric.json").read_text())
    assert m["lpips"] == {"variant": "daps", "weights": str(weights)}
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _offline)
    _lay_torch_home(shared, tmp_path / "th")
    daps = piq.LPIPS(replace_pooling=True, reduction="none")

    def png(path):
        return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)

    for im in m["images"]:
        folder = tmp_path / "a" / "images" / f"{im['index']:05d}"
        gt = png(folder / "gt.png")[None]
        xs = torch.stack([png(folder / f"particle_{p['particle']}.png") for p in im["particles"]])
        expected = daps(xs, gt.expand_as(xs))
        assert [p["lpips"] for p in im["particles"]] == pytest.approx(expected.tolist(), abs=5e-3)
    best_ssim = [max(p["ssim"] for p in im["particles"]) for im in m["images"]]
    assert m["summary"]["best_of_n_ssim_mean"] == pytest.approx(statistics.fmean(best_ssim), abs=1e-12)
