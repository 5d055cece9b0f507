"""Shared test fixtures: repo root on sys.path, the ../shared folder, composed configs."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):       # one worker per core: each works on one thread
    import torch

    torch.set_num_threads(1)
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


def compose(*overrides: str):
    from pipeline.schema import compose as schema_compose

    return schema_compose(*overrides)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: extra intra-op threads only add spin-wait overhead, several times slower on a busy CPU."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (test data lives beside the repository, not in it)")
    return SHARED


def declared(stage: str, *leave_out: str) -> dict:
    """A stage's block as declared (its defaults), less the keys its hook reads elsewhere: what a hook built by
    hand in a test takes, so the test never carries defaults of its own."""
    import stages  # noqa: F401  (registers them)
    from core.settings import defaults
    from sampler.stages import STAGES

    return {k: v for k, v in defaults(STAGES[stage].block).items() if k not in leave_out}
