"""LatentDAPS loop: schedule and time convention, per-particle randomness, batch-vs-single equality, NaN isolation."""
import numpy as np
import torch

from models import build_model
from operators import build_operator
from pipeline.sampling import make_state
from pipeline.resolve import resolve
from sampler import Hook, Trace, annealing_sigmas, latent_daps, measurement_generator, step_time, trigger_step
from sampler.stage import phase_of
from tests.conftest import compose, declared, loop, settings

FAST = ["sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=3", "dtype=float64"]


def test_annealing_grid_is_daps_poly7():
    s = annealing_sigmas(50, 10.0, 0.1)
    assert len(s) == 51 and np.isclose(s[0], 10.0) and s[-1] == 0.0
    assert np.all(np.diff(s) < 0)
    r = 49 / 50
    assert np.isclose(s[49], (10 ** (1 / 7) + r * (0.1 ** (1 / 7) - 10 ** (1 / 7))) ** 7)


def test_time_convention_and_triggers():
    assert [step_time(k, 50) for k in (0, 1, 40, 49)] == [1000, 980, 200, 20]
    assert trigger_step(200, 50) == 40          # last 20 % of the steps: k = 40 … 49
    assert trigger_step(1000, 50) == 0
    assert trigger_step(-1, 50) is None
    assert trigger_step(199, 50) == 41
    assert trigger_step(5, 50) is None          # t_49 = 20: never reached
    # pruning at k = 30 (t = 400), refinement from k = 40 (t = 200): the phases the tracker times
    phase = phase_of(settings("pruning_step=400", "refine_step=200").active)
    assert [phase(k) for k in (0, 30, 31, 39, 40, 49)] == ["explore", "explore", "prune", "prune", "refine", "refine"]
    assert {phase_of(settings().active)(k) for k in range(50)} == {"explore"}          # no stage on: one phase


def _run(cfg, image_index=0):
    model = build_model(cfg.model, "cpu").double()
    op = build_operator(cfg.task, 32)
    from data import build_dataset
    _, gt = build_dataset(cfg.data, cfg.model, image_index, 1)[0]
    y = op.measure(gt[None].double(), generator=measurement_generator(cfg.seed, image_index))
    s = resolve(cfg)
    state = make_state(model, y, s, image_index, torch.device("cpu"), torch.float64)
    return latent_daps(model, op, state, *loop(s)), y


def test_particle_i_of_batch_equals_single_run_at_offset_i():
    batch, y4 = _run(compose("particle_num=4", *FAST))
    for i in (0, 2, 3):
        single, y1 = _run(compose("particle_num=1", f"particle_offset={i}", *FAST))
        assert torch.equal(y1, y4)              # y does not depend on particle_num
        assert torch.allclose(single.z[0], batch.z[i], atol=1e-10, rtol=0)
        assert int(single.particle_ids[0]) == i


def test_particles_differ_and_seed_matters():
    a, _ = _run(compose("particle_num=2", *FAST))
    b, _ = _run(compose("particle_num=2", "seed=7", *FAST))
    assert not torch.allclose(a.z[0], a.z[1])
    assert not torch.allclose(a.z[0], b.z[0])


class _PoisonOne(Hook):
    """Drives particle 1 to NaN at step 2, leaves the others alone."""

    def drift(self, z, score, state, ctx):
        if ctx.k == 2:
            d = torch.zeros_like(z)
            d[1] = float("nan")
            return d
        return None


class _Record(Hook):
    """A tracker that keeps z at the start of every step and z0 at its end."""

    def __init__(self):
        self.z, self.z0 = [], []

    def begin_step(self, state, ctx):
        self.z.append(state.z.clone())

    def end_step(self, state, ctx):
        self.z0.append(state.z0.clone())


def test_nan_particle_is_frozen_and_others_continue():
    """Particle 1 diverges at step 2: it is marked failed, its z0 and z never change again (no ODE restart, no
    re-noise), the optimiser skips it, and the other particles are exactly as in a clean run."""
    from resample_opt.hook import RefineHook

    cfg = compose("particle_num=3", *FAST)
    clean, _ = _run(cfg)
    model = build_model(cfg.model, "cpu").double()
    op = build_operator(cfg.task, 32)
    s = resolve(cfg)
    state = make_state(model, clean.y[:1], s, 0, torch.device("cpu"), torch.float64)
    rec = _Record()
    refine = RefineHook(4, **{**declared("refine"), "every": 1, "final": True, "lr": 1e-3, "max_iters": 3, "eps": 0.0,
                               "plateau_window": 0, "resample": "replace"})
    trace = Trace()
    out = latent_daps(model, op, state, *loop(s), hooks=[rec, _PoisonOne(), refine], trace=trace)
    assert out.alive.tolist() == [True, False, True]
    assert torch.isfinite(out.z).all() and torch.isfinite(out.z0).all()
    for k in range(3, 6):
        assert torch.equal(rec.z0[k][1], rec.z0[2][1]), k          # frozen at its last finite value
        assert torch.equal(rec.z[k][1], rec.z[2][1]), k            # and never re-noised
    assert torch.equal(out.z[1], rec.z[2][1])
    assert not torch.equal(rec.z0[5][0], rec.z0[2][0])             # the others move on
    calls = [r for r in trace.of("refine") if "particle" in r]
    assert sorted({r["k"] for r in calls}) == [4, 5]                 # steps 4 and 5: the dead one is not optimised
    assert [r["iterations"] for r in calls] == [3, 0, 3] * 2 and [r["stop_reason"] for r in calls][1::3] == ["frozen"] * 2
    assert [r["accepted"] for r in calls] == [True, False, True] * 2
    # the NaN did not leak into the other particles
    plain = make_state(model, clean.y[:1], s, 0, torch.device("cpu"), torch.float64)
    poisoned = latent_daps(model, op, plain, *loop(s), hooks=[_PoisonOne()])
    assert torch.allclose(poisoned.z[0], clean.z[0], atol=1e-10) and torch.allclose(poisoned.z[2], clean.z[2], atol=1e-10)


def test_hmc_preset_runs_batch_equal_to_single():
    hmc = ["sampler.mcmc.algo=hmc", "sampler.mcmc.momentum=0.41", "sampler.mcmc.lr=5e-5"]
    batch, _ = _run(compose("particle_num=2", *FAST, *hmc))
    single, _ = _run(compose("particle_num=1", "particle_offset=1", *FAST, *hmc))
    assert torch.allclose(single.z[0], batch.z[1], atol=1e-10, rtol=0)
    langevin, _ = _run(compose("particle_num=2", *FAST))
    assert not torch.allclose(batch.z, langevin.z)


def test_pruning_at_the_refine_stages_own_t_keeps_a_phase_of_its_own():
    """Pruning at t = 200 decides at the end of the refine stage's first step: the steps after it are labelled
    "prune+refine" (their time and memory are the pruned batch's), not swallowed by "refine"; pruning earlier keeps
    its own "prune" phase and refine its own."""
    K = 10                                       # t_k = 1000 (1 - k / 10): t = 200 first at k = 8
    same = phase_of(settings("sampler.annealing.num_steps=10", "pruning_step=200", "refine_step=200").active)
    assert [same(k) for k in range(K)] == ["explore"] * 8 + ["refine", "prune+refine"]
    apart = phase_of(settings("sampler.annealing.num_steps=10", "pruning_step=400", "refine_step=200").active)
    assert [apart(k) for k in range(K)] == ["explore"] * 7 + ["prune", "refine", "refine"]
