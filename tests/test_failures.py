"""Why a particle fails: ground truths the model can make (data.ground_truth), the representability record, the
operator's symmetries (per-channel twins; an operator without symmetries) and the failure kinds."""
import pytest
import torch
import torch.nn.functional as F

from core.tensors import rot180
from evaluation.failures import KINDS, failure_kind, kind_shares, representability, truths
from evaluation.metrics import evaluate_particles
from evaluation.summary import summarize
from operators import PhaseRetrieval
from operators.base import Operator
from sampler.state import measurement_generator
from tests.conftest import compose

D64 = torch.float64
OP = PhaseRetrieval(32, 2.0, 0.05)


def frame_filling(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 32, 32, generator=g, dtype=D64) * 1.8 - 0.9


@pytest.fixture(scope="module")
def natural():
    """The shipped natural-image mini LDM (float64), its config and the first eight held-out crops."""
    pytest.importorskip("skimage")
    from data.natural import held_out_crops
    from models import build_model

    cfg = compose("model=naturalldm", "sampler=naturalldm", "data=natural")
    torch.set_num_threads(1)
    return build_model(cfg.model, "cpu").double(), cfg, held_out_crops()[0][:8].double()


def test_a_decoded_truth_is_made_by_a_latent_and_fits_its_measurement_within_the_margin(natural):
    model, cfg, crops = natural
    gts, recs, psnr = truths(model, crops, cfg.data)
    assert cfg.data.ground_truth == "decoded"                                # the default for the learned sets
    torch.testing.assert_close(gts, model.decode(model.encode(crops)), rtol=0, atol=0)
    assert recs is gts and all(18 < p < 30 for p in psnr)                   # the first stage on the raw crops
    for i in range(len(gts)):
        y = OP.measure(gts[i:i + 1], generator=measurement_generator(42, i))
        rep = representability(OP, gts[i:i + 1], recs[i:i + 1], y, psnr[i])
        assert rep["loss_reconstruction"] == rep["loss_truth"] <= rep["margin"] and rep["representable"]


def test_a_raw_crop_the_first_stage_reconstructs_poorly_is_not_representable(natural):
    model, cfg, crops = natural
    raw = compose("model=naturalldm", "sampler=naturalldm", "data=natural", "data.ground_truth=raw").data
    gts, recs, psnr = truths(model, crops, raw)
    assert torch.equal(gts, crops)
    worst = min(range(len(psnr)), key=lambda i: psnr[i])
    y = OP.measure(gts[worst:worst + 1], generator=measurement_generator(42, worst))
    rep = representability(OP, gts[worst:worst + 1], recs[worst:worst + 1], y, psnr[worst])
    assert psnr[worst] < 21 and rep["loss_truth"] <= rep["margin"] < rep["loss_reconstruction"]
    assert rep["representable"] is False
    # its failed particles are the first stage's, whatever their loss
    row = {"mode": "fail", "twin_psnr": 12.0, "measurement_loss": 0.5 * rep["margin"]}
    assert failure_kind(row, 20.0, rep["margin"], rep["representable"]) == "unrepresentable"


def test_a_model_without_first_stage_has_no_representability_record():
    from models import build_model

    cfg = compose()
    model = build_model(cfg.model, "cpu")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    gts, recs, psnr = truths(model, images, cfg.data)
    assert gts is images and recs is None and psnr == [None, None]
    assert representability(OP, images[:1], None, OP(images[:1]), None) is None


def test_one_rotated_channel_measures_alike_and_is_a_twin_not_a_success():
    x = frame_filling()
    twin = x.clone()
    twin[1] = rot180(x[1])
    torch.testing.assert_close(OP(twin[None]), OP(x[None]), rtol=0, atol=1e-12)      # the same y, to round-off
    eq = OP.equivalents(x)
    assert eq.record()["members"] == 2 and eq.twins() == 6                      # 2^3 channel choices, 2 right
    rows = evaluate_particles(torch.stack([twin, rot180(x), x]), x[None], eq, 20.0)
    assert rows[0]["mode"] == "fail" and rows[0]["twin_psnr"] >= 80
    assert rows[0]["twin"] == [[0, 0, 0], [1, 0, 0], [0, 0, 0]]                   # which channel was turned
    assert [r["mode"] for r in rows[1:]] == ["180", "0"]
    margin = OP.loss_margin(OP(x[None]).numel())
    for r in rows:
        r["measurement_loss"] = 0.0
    assert [failure_kind(r, 20.0, margin, True) for r in rows] == ["twin", None, None]


def test_a_channel_shifted_on_its_own_is_a_twin():
    """Per channel too: a digit whose red channel alone moves into its blank columns."""
    x = torch.full((3, 32, 32), -1.0, dtype=D64)
    x[:, :, 10:22] = torch.rand(1, 32, 12, generator=torch.Generator().manual_seed(3), dtype=D64) * 2 - 1
    from operators.symmetry import shift_fill

    twin = x.clone()
    twin[0] = shift_fill(x[0], 0, 4)
    eq = OP.equivalents(x)
    rows = evaluate_particles(torch.stack([twin, shift_fill(x, 0, 4)]), x[None], eq, 20.0)
    assert rows[0]["mode"] == "fail" and rows[0]["twin"][0] == [0, 0, 4] and rows[0]["twin_psnr"] >= 80
    assert rows[1]["mode"] == "0" and rows[1]["shift"] == [0, 4]               # all channels alike: right


class Blur(Operator):
    """A toy operator with no symmetry: 2x2 average pooling (a rotation changes its measurement)."""

    def __call__(self, x):
        return F.avg_pool2d(x, 2)


def test_an_operator_without_symmetries_has_a_class_of_one():
    op = Blur(0.05)
    x = frame_filling(1)
    eq = op.equivalents(x)
    assert len(eq.rotated) == 1 and eq.channels is None and eq.record() == {"members": 1, "shifted": [], "twins": 0}
    assert not op.rotation_ambiguous and OP.rotation_ambiguous
    rows = evaluate_particles(torch.stack([x, rot180(x)]), x[None], eq, 20.0)
    # phase retrieval would call the rotation a success; under this operator it is a failure that fits nothing
    assert [r["mode"] for r in rows] == ["0", "fail"] and rows[1]["twin_psnr"] is None
    assert "psnr_180_shift" not in rows[1] and "psnr_180" not in rows[1]     # the operator decides: no rotation


def test_orientation_never_turns_a_particle_for_an_operator_without_rotation():
    """The prior prefers the rotation, but the operator can tell the two apart: the choice stays as sampled."""
    from evaluation.record import orient, particle_rows
    from pipeline.resolve import resolve
    from models import build_model
    from tracking.compute import NetworkCounter

    cfg = compose("model.rotated_weight=0.01", "dtype=float64")
    model = build_model(cfg.model, "cpu").double()
    gt = model.means[:1].view(1, 3, 32, 32)
    z = rot180(gt)                                        # the unlikely orientation: the prior would turn it
    for op, turned in ((OP, True), (Blur(0.05), False)):
        y = op.measure(gt, generator=measurement_generator(0, 0))
        eq = op.equivalents(gt)
        rows = particle_rows(z, gt, y, op, 20.0, None, eq, [0], [True])
        with NetworkCounter(model) as counter:
            cost = orient(model, z, z, gt, resolve(cfg).eval, None, eq, 0, rows, counter, op)
        # where the operator tells the two apart no prior is scored at all (no network call, no log-ratio)
        assert (rows[0]["prior_log_ratio"] < 0) if turned else ("prior_log_ratio" not in rows[0] and
                                                                 not any(cost.values()))
        assert rows[0]["oriented"]["rotated"] is turned
        assert rows[0]["oriented"]["mode"] == ("0" if turned else "fail")


def test_fits_and_search_split_at_the_noise_margin():
    margin = 20.0
    found = {"mode": "0", "twin_psnr": 40.0, "measurement_loss": 99.0}
    assert failure_kind(found, 20.0, margin, False) is None
    assert failure_kind({"mode": "fail", "twin_psnr": 15.0, "measurement_loss": 19.9}, 20.0, margin, True) == "fits"
    assert failure_kind({"mode": "fail", "twin_psnr": None, "measurement_loss": 20.1}, 20.0, margin, True) == "search"
    assert failure_kind({"mode": "fail", "twin_psnr": 20.0, "measurement_loss": 99.0}, 20.0, margin, False) == "twin"


def _image(failures, representable=True, pruned=()):
    parts = [{"particle": i, "mode": "fail" if f else "0", "failure": f, "pruned_at": {"k": 3} if i in pruned else None,
              "psnr": 10.0} for i, f in enumerate(failures)]
    choice = {"mode": "0", "psnr": 25.0}
    return {"particles": parts, "best_by_prior": choice, "best_by_loss": choice, "choices": {"loss": choice, "posterior": choice},
            "best_of_n": {"psnr": 30.0, "ssim": 0.5, "lpips": None}, "best_oracle": {"psnr": 30.0, "ssim": 0.5,
                                                                                      "lpips": None},
            "gt_mode_found": True, "both_modes": False, "found": True, "phases": {}, "total_time_s": 1.0,
            "representability": {"representable": representable}}


def test_summary_shares_of_each_kind_equal_a_hand_count():
    images = [_image([None, "search", "search", "fits"]),
              _image(["twin", None, "search", "unrepresentable"], representable=False, pruned=(3,)),
              _image([None, None])]
    s = summarize(images)
    # final particles: 4 + 3 + 2 = 9 (the pruned one does not count); search 3, fits 1, twin 1, unrepresentable 0
    assert s["failure_kinds"] == pytest.approx({"twin": 1 / 9, "unrepresentable": 0.0, "fits": 1 / 9, "search": 3 / 9})
    assert sum(s["failure_kinds"].values()) + 4 / 9 == pytest.approx(1.0)       # with the found ones: all of them
    assert s["representable_rate"] == pytest.approx(2 / 3)
    assert set(kind_shares([])) == set(KINDS) and kind_shares([])["search"] is None
