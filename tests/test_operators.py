"""Phase retrieval operator: DAPS's definition, rotation invariance, batching, its settings."""
import pytest
import torch

from operators import build_operator
from operators.phase_retrieval import PhaseRetrieval
from tests.conftest import compose


def test_rotation_invariance_float64():
    op = PhaseRetrieval(64, 2.0, 0.05)
    x = torch.rand(3, 3, 64, 64, dtype=torch.float64) * 2 - 1
    diff = (op(x) - op(torch.flip(x, dims=(-2, -1)))).abs().max()
    assert diff <= 1e-6


def test_other_images_give_other_measurements():
    op = PhaseRetrieval(32, 2.0, 0.05)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64) * 2 - 1
    assert (op(x) - op(torch.flip(x, dims=(-1,)) * 0.5)).abs().max() > 1e-2


def test_padding_and_parseval():
    op = PhaseRetrieval(256, 2.0, 0.05)
    assert op.pad == 64
    x = torch.rand(2, 3, 256, 256, dtype=torch.float64) * 2 - 1
    y = op(x)
    assert y.shape == (2, 3, 384, 384)
    # orthonormal FFT: energy of |F x| equals the energy of the [0, 1] image
    assert torch.allclose(y.pow(2).sum((-2, -1)), (x * 0.5 + 0.5).pow(2).sum((-2, -1)))


def test_dc_term_is_scaled_sum():
    op = PhaseRetrieval(16, 2.0, 0.05)
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 2 - 1
    y = op(x)
    n = 16 + 2 * op.pad
    # centred transform: DC sits at (n // 2, n // 2)
    assert torch.allclose(y[0, 0, n // 2, n // 2], (x * 0.5 + 0.5).sum() / n)


def test_batched_equals_single_and_loss_is_per_sample():
    op = PhaseRetrieval(32, 2.0, 0.05)
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64) * 2 - 1
    y = op(x[:1]).expand(4, -1, -1, -1)
    batched = op.loss(x, y)
    single = torch.stack([op.loss(x[i:i + 1], y[:1])[0] for i in range(4)])
    assert torch.equal(batched, single)
    assert batched[0] == 0


def test_measurement_noise_level_and_generator():
    op = PhaseRetrieval(32, 2.0, 0.05)
    x = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    y1 = op.measure(x, torch.Generator().manual_seed(1))
    y2 = op.measure(x, torch.Generator().manual_seed(1))
    assert torch.equal(y1, y2)
    noise = y1 - op(x)
    assert abs(noise.std().item() - 0.05) < 0.003


def test_registry_builds_from_config_and_checks_its_settings():
    """The task block builds the operator it names with its own settings (pad = int(oversample / 8 H) per side, a
    padded image of 48 for H = 32), and a bad name or setting is a ConfigError naming it."""
    from core.errors import ConfigError
    from operators import check_config

    cfg = compose("task.operator.oversample=1.5", "task.operator.sigma=0.1")
    check_config(cfg.task)
    op = build_operator(cfg.task, 32)
    assert (op.pad, op.sigma) == (6, 0.1) and op(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 44, 44)
    for override, message in [("task.operator.oversample=-1", "task.operator.oversample=-1 is invalid"),
                              ("task.operator.oversample=0.5", "task.operator.oversample=0.5 is invalid"),
                              ("task.operator.oversample=abc", "task.operator.oversample=abc is invalid"),
                              ("task.operator.sigma=0", "task.operator.sigma=0 is invalid"),
                              ("task.operator.name=coded_diffraction", "task.operator.name=coded_diffraction is "
                                                                       "invalid: must be one of gaussian_blur, phase_retrieval")]:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
            check_config(compose(override).task)


# ---------------------------------------------------------------- Gaussian deblurring: a second operator

def test_gaussian_blur_is_a_normalised_linear_per_channel_map_without_symmetry():
    from core.tensors import rot180
    from operators.gaussian_blur import GaussianBlur, gaussian_taps

    op = GaussianBlur(32, 9, 1.5, 0.05)
    g = torch.Generator().manual_seed(0)
    x, v = (torch.rand(2, 2, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1)
    flat = torch.full((1, 3, 32, 32), 0.3, dtype=torch.float64)
    assert torch.allclose(op(flat), flat)                                   # the kernel sums to 1 (reflected border)
    assert torch.allclose(op(2 * x - 3 * v), 2 * op(x) - 3 * op(v))         # linear
    assert torch.equal(op(x)[1:], op(x[1:]))                                # no sample mixes with another
    one = x[:1].clone()
    one[:, 1] = 0
    assert op(one)[:, 1].abs().max() == 0                                   # no channel mixes with another
    # the centre tap of a delta image is the 2-D kernel's peak, the outer product of the 1-D taps
    delta = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    delta[..., 16, 16] = 1
    taps = gaussian_taps(9, 1.5)
    torch.testing.assert_close(op(delta)[0, 0, 12:21, 12:21], torch.outer(taps, taps), rtol=0, atol=1e-15)
    # an image and its rotation measure apart: the evaluation needs no orientation step
    assert (op(x[:1]) - op(rot180(x[:1]))).abs().max() > 0.1 and op.symmetries == ()
    assert len(op.equivalents(x[0]).rotated) == 1 and not op.rotation_ambiguous
    with pytest.raises(Exception, match="kernel_size=64 is invalid"):
        GaussianBlur(32, 64, "auto", 0.05)
    # the kernel follows the image side unless set: DAPS's at 256 px, the mini LDMs' at 32 px (declared once)
    assert (GaussianBlur(256, "auto", "auto", 0.05).kernel_size, GaussianBlur(256, "auto", "auto", 0.05).intensity) == (61, 3.0)
    assert (GaussianBlur(32, "auto", "auto", 0.05).kernel_size, GaussianBlur(32, "auto", "auto", 0.05).intensity) == (9, 1.5)
    assert GaussianBlur(32, "auto", 0.5, 0.05).intensity == 0.5


def test_deblurring_runs_through_the_command_line_with_no_orientation_and_no_rotation_metrics(tmp_path):
    """task=gaussian_deblur end to end: the operator decides what is evaluated (no *_180 field, no "180" mode, no
    ELBO: the orientation costs no network call) and the run's name says the task."""
    import json

    from tests.conftest import cli

    r = cli("task=gaussian_deblur", "--num_eval_images", "2", "sampler.annealing.num_steps=10", f"save_dir={tmp_path}",
            "save_images=false")
    assert r.returncode == 0, r.stderr[-2000:]
    (path,) = tmp_path.glob("*/metric.json")
    assert path.parent.name == "two_mode_gaussian_deblur_p4_annealing.num_steps10"        # the kernel: auto, 9/1.5
    metric = json.loads(path.read_text())
    for im in metric["images"]:
        text = json.dumps(im)
        assert "_180" not in text and set(im["modes"]) == {"0", "fail"} and im["both_modes"] is None
        assert im["mode_weights"] is None              # the benchmark knows a 180° weight; this operator has no 180°
        assert im["orientation"]["method"] is None and not any(im["orientation"]["rows"].values())
        assert im["trust"]["label"] in ("no fit", "ambiguous", "determined") and "gap" not in im["trust"]
        assert all(not p["oriented"]["rotated"] for p in im["particles"] if p["pruned_at"] is None)
    assert metric["summary"]["mode_shares"].keys() == {"0", "fail"}


def test_right_deblurred_particles_fit_by_the_operators_own_rule(tmp_path):
    """Deblurring a mini-LDM digit (its kernel by default: 9 taps of 1.5 px): right particles' losses lie several
    times above the noise margin, so the operator's measured fit factor (not phase retrieval's) decides what fits;
    the failure kinds and the trust label read the same limit, so an answer with right final particles is not
    `no fit` and a right particle is never a `search` failure."""
    from operators.gaussian_blur import GaussianBlur
    from pipeline.run import run
    from tests.conftest import compose

    metric = run(compose("model=digits32ldm", "sampler=digits32ldm", "data=digits", "task=gaussian_deblur",
                         "num_eval_images=1", "sampler.annealing.num_steps=25", f"save_dir={tmp_path}", "name=d",
                         "save_images=false", "device=cpu"))
    im = metric["images"][0]
    final = [p for p in im["particles"] if p["pruned_at"] is None]
    right = [p for p in final if p["mode"] == "0"]
    limit = im["trust"]["fit_factor"] * im["trust"]["margin"]
    assert im["trust"]["fit_factor"] == GaussianBlur.fit_factor > 1
    assert right and all(im["trust"]["margin"] < p["measurement_loss"] <= limit for p in right)
    assert im["trust"]["label"] != "no fit" and im["representability"]["fit_factor"] == GaussianBlur.fit_factor
    assert all(p["failure"] == ("fits" if p["measurement_loss"] <= limit else "search")
               for p in final if p["mode"] == "fail")
