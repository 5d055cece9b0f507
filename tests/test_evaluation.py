"""Metrics: PSNR/SSIM against the image and its rotation, the mode label, LPIPS with and without weights."""
import math

import pytest
import torch

from evaluation.metrics import evaluate_particles, load_lpips, mode_label, rot180


def test_mode_label():
    assert mode_label(30.0, 10.0, 20.0) == "0"
    assert mode_label(10.0, 25.0, 20.0) == "180"
    assert mode_label(19.0, 18.0, 20.0) == "fail"


def test_rotated_particle_is_labelled_180():
    gt = torch.rand(1, 3, 32, 32) * 2 - 1
    x = torch.cat([gt, rot180(gt), torch.zeros_like(gt)])
    rows = evaluate_particles(x, gt, fail_psnr=20.0)
    assert [r["mode"] for r in rows] == ["0", "180", "fail"]
    assert rows[0]["psnr"] >= 80 and rows[1]["psnr_180"] >= 80 and rows[0]["ssim"] == pytest.approx(1.0, abs=1e-4)
    # PSNR on [0, 1] images, data range 1
    half = torch.full_like(gt, 0.0)
    expected = 10 * torch.log10(1 / ((gt * 0.5 + 0.5 - 0.5) ** 2).mean())
    assert evaluate_particles(half, gt, 20.0)[0]["psnr"] == pytest.approx(expected.item(), rel=1e-4)


def test_lpips_missing_weights_is_null_with_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.warns(UserWarning, match="LPIPS is recorded as null"):
        model = load_lpips("vgg", str(tmp_path / "missing.pt"))
    assert model is None
    gt = torch.rand(1, 3, 32, 32) * 2 - 1
    assert evaluate_particles(gt, gt, 20.0)[0]["lpips"] is None


def test_lpips_from_shared_backbone(shared):
    model = load_lpips("alex", str(shared / "weights" / "lpips_alexnet_backbone.pt"))
    gt = torch.rand(1, 3, 64, 64) * 2 - 1
    x = torch.cat([gt, gt + 0.3 * torch.randn_like(gt)]).clamp(-1, 1)
    rows = evaluate_particles(x, gt, 20.0, model)
    assert rows[0]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert rows[1]["lpips"] > 0.01


def test_a_diverged_particle_gets_numbers_not_an_exception():
    gt = torch.rand(1, 3, 16, 16) * 2 - 1
    x = torch.cat([gt, torch.full_like(gt, float("nan"))])
    rows = evaluate_particles(x, gt, fail_psnr=20.0)
    assert rows[0]["psnr"] > 60 and rows[0]["mode"] == "0"
    assert math.isfinite(rows[1]["psnr"]) and rows[1]["psnr"] < 20 and rows[1]["mode"] == "fail"
