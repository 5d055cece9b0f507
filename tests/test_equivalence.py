"""Success up to the measurement's symmetries: the ground truth's equivalence class (rotation, zero-fill shifts),
labels against it, and the summary's headline fields."""
import math

import pytest
import torch

from evaluation.equivalence import class_matches
from evaluation.metrics import evaluate_particles
from evaluation.summary import summarize
from operators import PhaseRetrieval
from operators.symmetry import dropped_energy, shift_fill
from core.tensors import rot180

D64 = torch.float64
OP = PhaseRetrieval(32, 2.0, 0.05)


def digit_on_black(seed=0):
    """A 'digit': strokes in the middle columns from top to bottom, the rest exactly -1 (the padding's value)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((3, 32, 32), -1.0, dtype=D64)
    x[:, :, 10:22] = torch.rand(1, 32, 12, generator=g, dtype=D64) * 2 - 1
    return x


def test_dropped_energy_equals_a_direct_sum_for_every_shift():
    g = torch.Generator().manual_seed(1)
    u = torch.rand(2, 5, 7, generator=g, dtype=D64)
    e = dropped_energy(u)
    assert e.shape == (9, 13)
    for dy in range(-4, 5):
        for dx in range(-6, 7):
            kept = shift_fill(u, dy, dx, fill=0.0).square().sum()
            assert float(e[dy + 4, dx + 6]) == pytest.approx(float(u.square().sum() - kept), abs=1e-12)


def test_shifted_digit_is_found_with_its_shift_and_another_digit_is_not():
    x = digit_on_black()
    eq = OP.equivalents(x)
    # 10 free columns each side: every horizontal shift up to 10 keeps the measurement, rows are full
    assert sorted(s for r, s in zip(eq.rotated, eq.shifts) if not r) == [(0, dx) for dx in range(-10, 11)]
    assert len(eq.rotated) == 42 and sum(eq.rotated) == 21
    y = OP(x[None])
    for m in eq.members:                            # every member measures as the image does, to round-off
        assert float((OP(m[None]) - y).norm()) < 1e-9
    moved = shift_fill(x, 0, 3)
    other = digit_on_black(seed=5)
    rows = evaluate_particles(torch.stack([moved, rot180(shift_fill(x, 0, -2)), other]), x[None], eq, 20.0)
    assert rows[0]["mode"] == "0" and rows[0]["shift"] == [0, 3] and rows[0]["class_psnr"] == 80.0
    assert rows[0]["psnr"] < 20                     # against the unshifted truth alone it would be a failure
    # a rotated copy shifted by -2 is the rotation's member shifted by +2
    assert rows[1]["mode"] == "180" and rows[1]["shift"] == [0, 2]
    assert rows[2]["mode"] == "fail" and rows[2]["class_psnr"] < 20
    # a vertical shift moves strokes out of the frame: not a member; with blank rows it is
    assert (1, 0) not in eq.shifts
    short = x.clone()
    short[:, :4] = short[:, 28:] = -1
    assert (4, 0) in OP.equivalents(short).shifts and (5, 0) not in OP.equivalents(short).shifts


def test_a_bundled_test_digit_shifted_into_its_blank_columns_is_found():
    pytest.importorskip("sklearn")
    from data.digits import digits

    x = digits("test")[0][0].double()
    eq = OP.equivalents(x)
    shifted = [s for r, s in zip(eq.rotated, eq.shifts) if not r and s != (0, 0)]
    assert shifted, "a digit has blank columns: some shift keeps its measurement"
    dy, dx = shifted[0]
    rows = evaluate_particles(torch.stack([shift_fill(x, dy, dx), digits("test")[0][5].double()]), x[None], eq,
                              20.0)
    assert rows[0]["mode"] == "0" and rows[0]["shift"] == [dy, dx] and rows[0]["psnr"] < rows[0]["class_psnr"]
    assert rows[1]["mode"] == "fail"


def test_frame_filling_image_has_exactly_two_members():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 32, 32, generator=g, dtype=D64) * 1.8 - 0.9     # nowhere at the padding's value
    eq = OP.equivalents(x)
    assert eq.rotated == [False, True] and eq.shifts == [(0, 0), (0, 0)]
    assert torch.equal(eq.members[0], x) and torch.equal(eq.members[1], rot180(x))
    assert eq.record() == {"members": 2, "shifted": [], "twins": 6}     # 2^3 channel rotations, 2 right


def test_the_natural_test_crops_fill_their_frames():
    pytest.importorskip("skimage")
    from data.natural import held_out_crops

    x, _ = held_out_crops()
    assert all(len(OP.equivalents(x[i]).rotated) == 2 for i in range(0, len(x), 4))


def test_benchmark_labels_are_unchanged_by_the_class():
    """On the two-mode benchmark's images (all frame-filling but one) the class label is the old rule: the closer
    of gt and rot gt when above fail_psnr."""
    pytest.importorskip("skimage")
    from models.two_mode import benchmark_images

    images = benchmark_images(32, 20)
    g = torch.Generator().manual_seed(3)
    for i in range(0, 20, 3):
        gt = images[i].float()
        x = torch.stack([gt + 0.05 * torch.randn(gt.shape, generator=g), rot180(gt) + 0.1 * torch.randn(gt.shape, generator=g),
                         images[(i + 1) % 20].float(), 0.6 * gt + 0.4 * rot180(gt)]).clamp(-1, 1)
        rows = evaluate_particles(x, gt[None], OP.equivalents(gt), 20.0)
        for r in rows:
            old = "fail" if max(r["psnr"], r["psnr_180"]) < 20 else ("0" if r["psnr"] >= r["psnr_180"] else "180")
            assert r["mode"] == old, (i, r)


def test_class_matches_take_the_best_member():
    x = digit_on_black(7)
    eq = OP.equivalents(x)
    m = class_matches(torch.stack([x, rot180(x)]), eq)
    assert m[0]["psnr_shift"] == 80.0 and m[0]["rotated"] is False and m[0]["shift"] == [0, 0]
    assert m[1]["psnr_180_shift"] == 80.0 and m[1]["rotated"] is True


def _image(modes, chosen_mode, loss_mode, found=None, weights=None, posterior_mode=None):
    parts = [{"particle": i, "mode": m, "pruned_at": None, "psnr": 30.0 if m != "fail" else 10.0}
             for i, m in enumerate(modes)]
    choice = {"mode": chosen_mode, "psnr": 25.0, "psnr_shift": 26.0}
    return {"particles": parts + [{"particle": 9, "mode": "0", "pruned_at": {"k": 1, "t": 900}, "psnr": 40.0}],
            "best_by_prior": choice, "best_by_loss": {"mode": loss_mode, "psnr": 20.0},
            "choices": {"loss": choice, "posterior": {"mode": posterior_mode or chosen_mode}},
            "best_of_n": {"psnr": 30.0, "ssim": 0.5, "lpips": None}, "best_oracle": {"psnr": 30.0, "ssim": 0.5,
                                                                                      "lpips": None},
            "gt_mode_found": "0" in modes, "both_modes": "0" in modes and "180" in modes,
            "found": any(m != "fail" for m in modes) if found is None else found,
            "mode_weights": weights, "phases": {}, "total_time_s": 1.0}


def test_summary_headline_fields_by_hand():
    images = [_image(["0", "fail", "fail", "180"], "0", "180", weights={"0": 0.75, "180": 0.25}),
              _image(["fail", "fail", "fail", "fail"], "fail", "fail", weights={"0": 0.75, "180": 0.25},
                     posterior_mode="0"),
              _image(["180", "180", "fail", "fail"], "180", "180")]
    s = summarize(images)
    assert s["prior_success_rate"] == pytest.approx(1 / 3)
    assert s["choice_success_rate"] == {"loss": pytest.approx(1 / 3), "posterior": pytest.approx(2 / 3)}
    assert s["search_success_rate"] == pytest.approx(2 / 3)          # the pruned particle does not count
    assert s["loss_choice_in_class_rate"] == pytest.approx(2 / 3)
    p = 4 / 12
    assert s["particle_success_rate"] == pytest.approx(p)
    assert s["independent_success_curve"]["4"] == pytest.approx(1 - (1 - p) ** 4)
    assert s["independent_success_curve"]["1"] == pytest.approx(p)
    assert s["prior_choice_psnr_mean"] == 25.0 and s["prior_choice_psnr_shift_mean"] == 26.0
    # both modes: observed in image 0 only; expected under the exact weights for the two benchmark-like images
    assert s["both_modes_rate"] == pytest.approx(1 / 3)
    assert s["both_modes_expected_rate"] == pytest.approx(1 - 0.75 ** 4 - 0.25 ** 4)
    assert s["success_rate"] == pytest.approx(1 / 3)
    assert math.isclose(s["fail_rate"], 1 - p)
