"""How far to trust an answer without the ground truth: no fit, ambiguous, orientation undetermined, determined; the
ELBO gap's own noise; the stored orientation check; and that the label never reads the ground truth."""
import math

import pytest
import torch

from core.tensors import rot180
from evaluation.orientation import subgrid_error
from evaluation.trust import LABELS, SETTINGS, assess, label, loss_sd_of, not_determined, relabel, shares
from operators import PhaseRetrieval
from tests.conftest import compose

OP = PhaseRetrieval(16, 2.0, 0.05)


def bench(*over):
    return compose("model=two_mode", "sampler=two_mode", "data=two_mode", "device=cpu", "save_images=false",
                   "num_eval_images=4", "images_per_batch=4", *over)


def run_labels(tmp_path, *over):
    from pipeline.run import run

    metric = run(bench(f"save_dir={tmp_path}", *over))
    return [im["trust"] for im in metric["images"]], metric


def test_the_symmetric_prior_cannot_orient_and_the_asymmetric_one_can(tmp_path):
    """The symmetric two-mode prior has no preference (its exact log-ratio is 0): every fitting, unambiguous answer
    is `orientation undetermined`; with rotated_weight=0.5 the prior prefers one orientation: `determined`."""
    sym, metric = run_labels(tmp_path / "sym")
    asym, _ = run_labels(tmp_path / "asym", "model.rotated_weight=0.5")
    for labels, expected in ((sym, "orientation undetermined"), (asym, "determined")):
        fitting = [t for t in labels if t["fitting"] and not t["distinct_fits"]]
        assert len(fitting) >= 3 and all(t["label"] == expected for t in fitting)
    assert all(t["gap"] == 0 for t in sym if t["fitting"])                       # the exact tie
    assert metric["summary"]["trust_shares"] == shares(metric["images"])
    # the record keeps what the label rests on: relabelled from it at the run's own settings, the same label; a
    # generous fit factor lets every particle fit (no `no fit` left)
    for im in metric["images"]:
        assert relabel(im, im["trust"]["fit_factor"], SETTINGS["ambiguity_sd"].default) == im["trust"]["label"]
        assert im["trust"]["fit_factor"] == 1.065                       # auto: the operator's own (phase retrieval)
        assert relabel(im, 1e6, 1.0) != "no fit"
        assert im["trust"]["loss_sd"] == pytest.approx(loss_sd_of(im["trust"]["margin"], 0.05))
    assert math.isclose(sum(metric["summary"]["trust_shares"].values()), 1.0)


def test_a_search_too_short_to_fit_is_no_fit(tmp_path):
    labels, metric = run_labels(tmp_path, "sampler.annealing.num_steps=1", "sampler.mcmc.num_steps=1")
    assert all((t["label"] == "no fit") == (t["fitting"] == 0) for t in labels)        # exactly the unfitted ones
    assert sum(t["label"] == "no fit" for t in labels) >= 3
    assert not_determined(metric["images"]) == [(i, t["label"]) for i, t in enumerate(labels)
                                                if t["label"] != "determined"]


def _rows(losses, ratio=1.0, se=0.0):
    return [{"particle": i, "measurement_loss": v, "prior_log_ratio": ratio, "prior_log_ratio_se": se}
            for i, v in enumerate(losses)]


def test_two_fits_that_are_different_images_are_ambiguous_and_a_rotation_is_not():
    """Two different images both within the noise margin, their losses within one standard deviation of the noise's
    ||n||^2: the measurement cannot tell them apart. A rotation is the same image; a fit clearly worse than the best
    (beyond that deviation), or none at all within the margin, is no ambiguity."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    a, b = (torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) * 1.6 - 0.8)
    answer = {"particle": 0}
    m = 3 * 24 * 24                                              # 16 px padded by 4 on each side, per channel
    margin, sd = OP.loss_margin(m), OP.loss_sd(m)
    settings = SimpleNamespace(threshold=0.8, fit_factor=1.0, ambiguity_sd=1.0)
    kw = dict(operator=OP, m=m, fail_psnr=20.0, check=None, settings=settings, groups=8)
    two = assess(torch.stack([a, b]), _rows([1.0, 1.0 + 0.5 * sd]), answer, **kw)
    assert (two["label"], two["distinct_fits"]) == ("ambiguous", 1)
    assert two["loss_sd"] == pytest.approx(0.05 ** 2 * math.sqrt(2 * m)) and two["margin"] == margin
    turned = assess(torch.stack([a, rot180(a)]), _rows([1.0, 1.0]), answer, **kw)       # the same image, turned
    assert (turned["label"], turned["distinct_fits"]) == ("determined", 0)
    apart = assess(torch.stack([a, b]), _rows([1.0, 1.0 + 2 * sd]), answer, **kw)      # y tells them apart
    assert apart["label"] == "determined" and apart["fitting"] == 2
    far = assess(torch.stack([a, b]), _rows([1.0, 2 * margin]), answer, **kw)         # b does not fit: no matter
    assert far["label"] == "determined" and far["same_as_best_fit"] == {0: True, 1: False}


def test_orientation_is_undetermined_below_the_stored_check_or_within_the_gap_noise():
    assert label(1, 0, True, 0.52, 0.8, gap=50.0, gap_limit=5.0) == "orientation undetermined"   # the model can't
    assert label(1, 0, True, 0.98, 0.8, gap=4.0, gap_limit=5.0) == "orientation undetermined"    # this answer can't
    assert label(1, 0, True, 0.98, 0.8, gap=-6.0, gap_limit=5.0) == "determined"
    assert label(1, 0, True, None, 0.8, gap=-6.0, gap_limit=5.0) == "determined"    # no stored check: the gap alone
    assert label(1, 0, False, 0.52, 0.8, gap=None, gap_limit=None) == "determined"  # no rotation to confuse
    assert label(0, 0, True, 0.98, 0.8, 50.0, 5.0) == "no fit" and label(2, 1, True, 0.98, 0.8, 50.0, 5.0) == \
        "ambiguous"
    assert LABELS == ("no fit", "ambiguous", "orientation undetermined", "determined")


def test_the_gap_noise_is_the_spread_of_interleaved_sub_grids():
    d = torch.arange(16, dtype=torch.float64)[:, None].repeat(1, 3)
    d[:, 1] = 1.0                                                                # every level alike: no spread
    se = subgrid_error(d, groups=4)
    sub = torch.stack([d[g::4, 0].sum() * 4 for g in range(4)])                 # 4 estimates of the whole sum
    assert sub.mean() == d[:, 0].sum()
    assert se[0] == pytest.approx(float(sub.std() / 2)) and se[1] == 0


def test_the_label_never_reads_the_ground_truth():
    """The same sampled particles evaluated against the true image and against another: the trust block is the
    same, while the particles' labels against the truth change."""
    from evaluation.record import evaluate_image
    from pipeline.resolve import resolve
    from pipeline.build import build
    from pipeline.sampling import sample_batch, split
    from pipeline.validate import validate
    from tracking.compute import NetworkCounter

    cfg = bench("num_eval_images=2", "images_per_batch=1")
    validate(cfg)
    model, operator, dataset = build(cfg, torch.device("cpu"), torch.float32)
    gt, other = dataset[0][1][None].float(), dataset[1][1][None].float()
    with NetworkCounter(model) as counter:
        result = split(sample_batch(model, operator, gt, [0], resolve(cfg), torch.device("cpu"), torch.float32, counter))[0]
        true = evaluate_image(model, operator, result, gt, resolve(cfg).eval, None, counter, None, None)
        swapped = evaluate_image(model, operator, result, other, resolve(cfg).eval, None, counter, None, None)
    assert true.trust == swapped.trust
    assert [p["mode"] for p in true.particles] != [p["mode"] for p in swapped.particles]
