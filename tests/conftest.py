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
# the scripts and entry points the tests start import this checkout, whichever one the venv installed (-e .)
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def compose(*overrides: str):
    from pipeline.schema import compose as schema_compose

    return schema_compose(*overrides)


def settings(*overrides: str):
    """The resolved settings of the config these overrides compose (pipeline/settings.RunSettings)."""
    from pipeline.resolve import resolve

    return resolve(compose(*overrides))


class Ran:
    """What a command line gave: its exit status and output (as subprocess.CompletedProcess names them)."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args, cwd=None) -> Ran:
    """`python posterior_sample.py ARGS` run in this process, as Python runs the file (as __main__), from cwd: its
    exit status, stdout and stderr: the same code a new process runs, without the seconds a new process spends
    importing torch. The tests that need a process of their own (a fresh interpreter's warnings, output streamed
    while it runs, the README's commands as typed, an interrupt) start one."""
    import contextlib
    import io
    import runpy

    import torch

    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv, os.getcwd(), dict(os.environ), torch.get_num_threads()     # a run may set its threads
    sys.argv = [str(ROOT / "posterior_sample.py"), *map(str, args)]
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        os.environ.clear()
        os.environ.update(saved[2])
        torch.set_num_threads(saved[3])
    return Ran(code, out.getvalue(), err.getvalue())


def loop(settings):
    """LatentDAPS's schedule and blocks out of resolved settings: latent_daps(model, op, state, *loop(s), ...)."""
    return settings.sampler.sigmas, settings.sampler.ode, settings.sampler.mcmc


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
    from core.settings import defaults
    from stages import STAGES

    return {k: v for k, v in defaults(STAGES[stage].block).items() if k not in leave_out}


def ctx_at(k, model=None, operator=None, K=50):
    """A step context at annealing step k of K (the stages' tests)."""
    from sampler import StepContext

    return StepContext(k=k, t=round(1000 * (1 - k / K)), sigma=1.0, sigma_next=0.5, num_steps=K, model=model,
                       operator=operator)


def make_state(z0, groups=None, seed=0):
    """A float64 particle state whose every per-particle field is distinguishable by particle (the stages' tests)."""
    import torch

    from sampler import ParticleState, particle_generator

    B = z0.shape[0]
    groups = torch.zeros(B, dtype=torch.long) if groups is None else groups
    rows = torch.arange(B, dtype=torch.float64).view(B, *[1] * (z0.ndim - 1))
    return ParticleState(
        z=z0 + 100 * rows, y=rows.expand_as(z0).clone() * 3, generators=[
            particle_generator(seed, int(groups[i]), i, "cpu") for i in range(B)],
        particle_ids=torch.arange(B), image_ids=groups, alive=torch.tensor([True] * B),
        loss=torch.arange(B, dtype=torch.float64) + 0.5, z0=z0.clone(), z0_hat=z0 - 7 * rows,
    )


class Identity:
    """A model stub whose decoder is the identity (the stages' tests)."""

    def decode(self, z):
        return z
