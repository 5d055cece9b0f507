"""Phase retrieval operator: DAPS's definition, rotation invariance, batching, its settings."""
import pytest
import torch

from operators import build_operator
from operators.phase_retrieval import PhaseRetrieval
from tests.conftest import compose


def test_rotation_invariance_float64():
    op = PhaseRetrieval(resolution=64, oversample=2.0)
    x = torch.rand(3, 3, 64, 64, dtype=torch.float64) * 2 - 1
    diff = (op(x) - op(torch.flip(x, dims=(-2, -1)))).abs().max()
    assert diff <= 1e-6


def test_other_images_give_other_measurements():
    op = PhaseRetrieval(resolution=32)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64) * 2 - 1
    assert (op(x) - op(torch.flip(x, dims=(-1,)) * 0.5)).abs().max() > 1e-2


def test_padding_and_parseval():
    op = PhaseRetrieval(resolution=256, oversample=2.0)
    assert op.pad == 64
    x = torch.rand(2, 3, 256, 256, dtype=torch.float64) * 2 - 1
    y = op(x)
    assert y.shape == (2, 3, 384, 384)
    # orthonormal FFT: energy of |F x| equals the energy of the [0, 1] image
    assert torch.allclose(y.pow(2).sum((-2, -1)), (x * 0.5 + 0.5).pow(2).sum((-2, -1)))


def test_dc_term_is_scaled_sum():
    op = PhaseRetrieval(resolution=16, oversample=2.0)
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64) * 2 - 1
    y = op(x)
    n = 16 + 2 * op.pad
    # centred transform: DC sits at (n // 2, n // 2)
    assert torch.allclose(y[0, 0, n // 2, n // 2], (x * 0.5 + 0.5).sum() / n)


def test_batched_equals_single_and_loss_is_per_sample():
    op = PhaseRetrieval(resolution=32)
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64) * 2 - 1
    y = op(x[:1]).expand(4, -1, -1, -1)
    batched = op.loss(x, y)
    single = torch.stack([op.loss(x[i:i + 1], y[:1])[0] for i in range(4)])
    assert torch.equal(batched, single)
    assert batched[0] == 0


def test_measurement_noise_level_and_generator():
    op = PhaseRetrieval(resolution=32, sigma=0.05)
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
                                                                       "invalid: must be one of phase_retrieval")]:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
            check_config(compose(override).task)
