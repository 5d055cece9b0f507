"""Tests for the refine stage (resample_opt/): per-particle Adam and stopping, the refine hook, and repulsion being off while refining."""
from __future__ import annotations


import pytest
import torch

from operators import PhaseRetrieval
from core.errors import ConfigError
from evaluation.record import steps_record
from pipeline.validate import validate
from resample_opt.hook import RefineHook
from sampler.optimize import AdamState, adam_step, optimize_latents
from sampler import StepContext, latent_daps
from sampler.schedule import trigger_step
from stages import STAGES
from resample_opt import record as refine_record
from pipeline.resolve import resolve
from tests.conftest import compose, declared, loop

# the refine block as declared, with ReSample's own stopping threshold and a plain replace (what these tests probe)
REFINE = {**declared("refine"), "eps": 1e-3, "resample": "replace"}

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# --- problems: per-particle losses of different difficulty ---------------------------------------------------------

def quadratic_problem():
    """sum (z - c_b)^2 from starts 0.03 .. 3 away: with lr 0.1 Adam ends up oscillating, so the particles stop at
    different iterations by plateau, threshold, plateau, max_iters."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(4, 8, dtype=DT, generator=g)
    z0 = c + torch.tensor([0.03, 0.3, 1.0, 3.0], dtype=DT).view(-1, 1) * torch.randn(4, 8, dtype=DT, generator=g)

    def make_loss(targets):
        return lambda z, i: (z - targets[i]).pow(2).sum(1)
    return z0, c, make_loss, dict(lr=0.1, max_iters=100, threshold=1e-3, plateau_window=10)


def decoder_problem():
    """Phase retrieval through a tiny nonlinear decoder (conv + tanh), noisy y, starts at different distances."""
    g = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).to(DT)
    with torch.no_grad():
        conv.weight.copy_(0.3 * torch.randn(conv.weight.shape, dtype=DT, generator=g))
        conv.bias.zero_()
    conv.requires_grad_(False)
    op = PhaseRetrieval(16, 2.0, 0.05)
    z_true = 0.5 * torch.randn(4, 3, 16, 16, dtype=DT, generator=g)
    y = op(torch.tanh(conv(z_true)))
    y = y + 0.05 * torch.randn(y.shape, dtype=DT, generator=g)
    z0 = z_true + torch.tensor([0.0, 0.05, 0.5, 2.0], dtype=DT).view(-1, 1, 1, 1) * torch.randn(
        z_true.shape, dtype=DT, generator=g)

    def make_loss(ys):
        return lambda z, i: op.loss(torch.tanh(conv(z)), ys[i]) / ys[0].numel()
    return z0, y, make_loss, dict(lr=2e-2, max_iters=60, threshold=2.4e-3, plateau_window=5)


# --- the optimiser ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("problem", [quadratic_problem, decoder_problem])
def test_batch_equals_each_particle_alone(problem):
    z0, targets, make_loss, kw = problem()
    z_b, info_b = optimize_latents(z0, make_loss(targets), **kw)
    assert len(set(info_b["iterations"].tolist())) > 1          # the particles really behave differently
    for b in range(z0.shape[0]):
        z_s, info_s = optimize_latents(z0[b:b + 1], make_loss(targets[b:b + 1]), **kw)
        torch.testing.assert_close(z_b[b:b + 1], z_s, rtol=0, atol=1e-12)
        assert info_b["iterations"][b].item() == info_s["iterations"][0].item()
        assert info_b["stop_reason"][b] == info_s["stop_reason"][0]
        torch.testing.assert_close(info_b["loss_after"][b:b + 1], info_s["loss_after"], rtol=0, atol=1e-12)
        torch.testing.assert_close(info_b["adam"].m[b:b + 1], info_s["adam"].m, rtol=0, atol=1e-12)
        torch.testing.assert_close(info_b["adam"].v[b:b + 1], info_s["adam"].v, rtol=0, atol=1e-12)


def test_particles_stop_independently_by_their_own_rule():
    z0, c, make_loss, kw = quadratic_problem()
    _, info = optimize_latents(z0, make_loss(c), **kw)
    iters, reasons = info["iterations"].tolist(), info["stop_reason"]
    assert len(set(iters)) == 4, iters                        # nobody stops with anybody else
    assert {"threshold", "plateau", "max_iters"} <= set(reasons), reasons
    for b, (n, r) in enumerate(zip(iters, reasons)):
        loss = info["loss_after"][b].item()
        if r == "threshold":
            assert loss < kw["threshold"]
            # the iterate before was still above: the rule fired at the first chance
            _, prev = optimize_latents(z0[b:b + 1], make_loss(c[b:b + 1]), **{**kw, "max_iters": n - 1})
            assert prev["loss_after"].item() >= kw["threshold"] and prev["stop_reason"] == ["max_iters"]
        if r == "max_iters":
            assert n == kw["max_iters"]


def test_plateau_rule_is_resamples():
    """Stop at the first iterate i >= W whose loss exceeds the loss W iterates earlier; keep that iterate."""
    z0, c, make_loss, kw = quadratic_problem()
    W, b = kw["plateau_window"], 2
    trace = []

    def traced(z, i):
        loss = make_loss(c[b:b + 1])(z, i)
        trace.append(loss.item())
        return loss
    optimize_latents(z0[b:b + 1], traced, **{**kw, "threshold": 0.0, "plateau_window": 0})   # the free trajectory
    first = next(i for i in range(W, len(trace)) if trace[i] > trace[i - W])
    _, info = optimize_latents(z0[b:b + 1], make_loss(c[b:b + 1]), **{**kw, "threshold": 0.0})
    assert info["stop_reason"] == ["plateau"] and info["iterations"].item() == first
    assert info["loss_after"].item() == pytest.approx(trace[first], rel=1e-12)


def test_stopped_particle_is_frozen_and_costs_nothing():
    z0, c, make_loss, kw = quadratic_problem()
    seen = []
    base = make_loss(c)

    def loss_fn(z, i):
        seen.append(i.tolist())
        return base(z, i)
    z, info = optimize_latents(z0, loss_fn, **kw)
    b = int(info["iterations"].argmin())
    n0 = info["iterations"][b].item()
    assert n0 < info["iterations"].max().item()
    # after its stop, particle b is no longer evaluated while the others go on
    assert all(b not in idx for idx in seen[n0 + 1:]) and len(seen) > n0 + 1
    # its latent and moments are those of the moment it stopped: a run that ends right there gives the same
    z_stop, at_stop = optimize_latents(z0[b:b + 1], make_loss(c[b:b + 1]), **{**kw, "max_iters": n0})
    assert torch.equal(z[b:b + 1], z_stop)
    assert torch.equal(info["adam"].m[b:b + 1], at_stop["adam"].m)
    assert torch.equal(info["adam"].v[b:b + 1], at_stop["adam"].v)
    assert info["adam"].steps[b].item() == n0


def test_adam_step_masks_rows_exactly():
    g = torch.Generator().manual_seed(2)
    z, grad = torch.randn(3, 5, dtype=DT, generator=g), torch.randn(3, 5, dtype=DT, generator=g)
    adam = AdamState(torch.randn(3, 5, dtype=DT, generator=g), torch.rand(3, 5, dtype=DT, generator=g),
                     torch.tensor([4, 0, 7]))
    active = torch.tensor([True, False, True])
    z2, adam2 = adam_step(z, grad, adam, active, lr=0.1)
    assert torch.equal(z2[1], z[1]) and torch.equal(adam2.m[1], adam.m[1]) and torch.equal(adam2.v[1], adam.v[1])
    assert adam2.steps.tolist() == [5, 0, 8]
    assert not torch.equal(z2[0], z[0]) and not torch.equal(z2[2], z[2])


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_step_is_torch_adamw(weight_decay):
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(2, 6, dtype=DT, generator=g)
    target = torch.randn(2, 6, dtype=DT, generator=g)
    p = z0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=5e-3, weight_decay=weight_decay)
    z, adam, all_on = z0.clone(), AdamState.zeros_like(z0), torch.ones(2, dtype=torch.bool)
    for _ in range(7):
        opt.zero_grad()
        (p - target).pow(2).sum().backward()
        opt.step()
        z, adam = adam_step(z, 2 * (z - target), adam, all_on, lr=5e-3, weight_decay=weight_decay)
    torch.testing.assert_close(z, p.detach(), rtol=0, atol=1e-14)


def test_nonfinite_loss_stops_that_particle_only():
    z0 = torch.ones(3, 4, dtype=DT)
    z0[1, 0] = float("nan")
    z, info = optimize_latents(z0, lambda z, i: z.pow(2).sum(1), lr=0.1, max_iters=10, threshold=0.0,
                               plateau_window=0)
    assert info["stop_reason"] == ["max_iters", "nonfinite", "max_iters"]
    assert info["iterations"].tolist() == [10, 0, 10]
    assert torch.isfinite(z[[0, 2]]).all() and torch.equal(z[0], z[2]) and torch.equal(z[1, 1:], z0[1, 1:])


# --- the hook -----------------------------------------------------------------------------------------------------

def test_validation_raises_config_error():
    validate(compose("refine_step=200"))
    for key, bad in [("lr", 0.0), ("lr", -1e-3), ("max_iters", 0), ("max_iters", 2.5), ("eps", -1.0),
                     ("plateau_window", -1), ("every", -1), ("final", 1), ("max_iters", True), ("lr", "nan"),
                     ("resample", "maybe")]:
        with pytest.raises(ConfigError, match=f"refine.{key}=.* is invalid"):
            validate(compose("refine_step=200", f"refine.{key}={bad}"))
    with pytest.raises(Exception, match="learning_rate"):            # an unknown key: Hydra refuses to compose it
        compose("refine.learning_rate=1e-3")
    cfg = compose("refine_step=200", "refine.every=0", "refine.final=false")
    with pytest.raises(ConfigError, match="no optimisation would run"):
        validate(cfg)
    # a t below every annealing step's (t_49 = 20 of 50 steps) never begins: one line, not a crash in the loop
    validate(compose("refine_step=20"))
    with pytest.raises(ConfigError, match="refine_step=19 is below the last annealing step's t = 20"):
        validate(compose("refine_step=19"))


def test_schedule():
    K = 50
    k0 = trigger_step(200, K)
    assert k0 == 40
    runs = lambda **kw: [k for k in range(K) if RefineHook(k0, **{**REFINE, **kw}).runs_at(k, K)]   # noqa: E731
    assert runs(every=1, final=True) == list(range(40, 50))
    assert runs(every=1, final=False) == list(range(40, 49))      # the last step belongs to `final` only
    assert runs(every=3, final=False) == [40, 43, 46]
    assert runs(every=3, final=True) == [40, 43, 46, 49]
    assert runs(every=0, final=True) == [49]


@pytest.fixture(scope="module")
def bench():
    from models import build_model
    from operators import build_operator
    from pipeline.sampling import make_state
    from sampler.state import measurement_generator

    cfg = compose("dtype=float64", "particle_num=3", "sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=3")
    model = build_model(cfg.model, "cpu").to(DT)
    op = build_operator(cfg.task, model.image_shape[-1])
    gt = model.means[:1].view(1, *model.image_shape).to(DT)
    y = op.measure(gt, generator=measurement_generator(0, 0))

    def state():
        return make_state(model, y, resolve(cfg), 0, torch.device("cpu"), DT)
    return cfg, model, op, state


def test_hook_replaces_z0_and_reports(bench):
    cfg, model, op, new_state = bench
    state = new_state()
    state.z0 = model.means[:3].view(3, *model.image_shape).to(DT) + 0.1
    state.loss = op.loss(model.decode(state.z0), state.y)
    z_mcmc = state.z0.clone()
    hook = RefineHook(0, **{**REFINE, "lr": 5e-3, "max_iters": 30, "eps": 1e-3, "plateau_window": 10})
    ctx = StepContext(k=3, t=250, sigma=0.2, sigma_next=0.0, num_steps=4, model=model, operator=op)
    state = hook.after_step(state, ctx)
    after = op.loss(model.decode(state.z0), state.y)
    assert after.lt(op.loss(model.decode(z_mcmc), state.y)).all()
    torch.testing.assert_close(state.loss, after)                 # state.loss describes the new z0
    (step,) = steps_record(ctx.trace)
    assert {"refine_iters_mean", "refine_iters_max", "refine_time_s", "refine_accepted"} <= set(step)
    assert step["refine_iters_max"] == max(step["refine_iters_mean"], step["refine_iters_max"]) and step["refine_accepted"] == 3
    rep = refine_record(ctx.trace, None)
    assert rep["num_calls"] == 1 and rep["total_iterations"] == sum(rep["calls"][0]["iterations"])
    call = rep["calls"][0]
    assert call["resample_weight"] == 1.0                      # replace: the optimised z0 kept whole
    assert set(call) == {"k", "t", "sigma", "time_s", "resample_weight", "particle_ids", "iterations", "stop_reason",
                         "loss_before", "loss_after", "accepted"}
    assert call["particle_ids"] == [0, 1, 2] and len(call["loss_after"]) == 3
    torch.testing.assert_close(torch.tensor(call["loss_after"], dtype=DT), after)
    # a step outside the schedule leaves the state alone
    z_before = state.z0.clone()
    ctx.k = 2
    state = RefineHook(3, **REFINE).after_step(state, ctx)
    assert torch.equal(state.z0, z_before)


def test_accept_if_improve_rejects_a_worse_latent(bench):
    cfg, model, op, new_state = bench
    state = new_state()
    state.z0 = model.means[:3].view(3, *model.image_shape).to(DT).clone()
    z_mcmc = state.z0.clone()
    ctx = lambda: StepContext(k=3, t=250, sigma=0.2, sigma_next=0.0, num_steps=4,  # noqa: E731
                              model=model, operator=op)
    wild = dict(lr=50.0, max_iters=3, eps=0.0, plateau_window=0)   # Adam steps of ~50 per pixel: loss explodes
    kept = RefineHook(0, **{**REFINE, **wild, "accept_if_improve": True}).after_step(state, ctx())
    assert torch.equal(kept.z0, z_mcmc)
    state2 = new_state()
    state2.z0 = z_mcmc.clone()
    moved = RefineHook(0, **{**REFINE, **wild, "accept_if_improve": False}).after_step(state2, ctx())
    assert not torch.equal(moved.z0, z_mcmc)


# --- repulsion is off while refining --------------------------------------------------------------------------------

def _sample(bench, hooks):
    cfg, model, op, new_state = bench
    return latent_daps(model, op, new_state(), *loop(resolve(cfg)), hooks).z0


def repulsion_of(*overrides):
    return resolve(compose(*overrides)).stages["repulsion"]


def test_repulsion_is_off_from_the_refine_stage_on(bench):
    """The loop applies every hook's drift at every step; the repulsion hook itself gives none from the refine
    stage's first step on, whatever its mode."""
    base = ["dtype=float64", "particle_num=3", "sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=3",
            "repulsion_scale=10.0", "repulsion.end_t=250"]
    plain = _sample(bench, [])
    for mode in ("score_relative", "particle_guidance"):
        refining = STAGES["repulsion"].hook(repulsion_of(*base, f"repulsion.mode={mode}", "refine_step=1000"))
        assert torch.equal(_sample(bench, [refining]), plain), mode            # refining from step 0: no push
        exploring = STAGES["repulsion"].hook(repulsion_of(*base, f"repulsion.mode={mode}", "refine_step=500"))
        assert not torch.allclose(_sample(bench, [exploring]), plain), mode    # steps 0 and 1 explore: it pushes


# --- end to end on the two-mode benchmark ---------------------------------------------------------------------------

def test_refinement_lowers_every_particles_loss():
    from data import build_dataset
    from models import build_model
    from operators import build_operator
    from pipeline.run import run_image

    common = ["particle_num=3", "sampler.annealing.num_steps=6", "sampler.mcmc.num_steps=3",
              "refine.max_iters=50", "save_images=false"]
    cfg = compose(*common)
    model = build_model(cfg.model, "cpu")
    op = build_operator(cfg.task, model.image_shape[-1])
    name, gt = build_dataset(cfg.data, cfg.model, 0, 1)[0]
    records = {opt: run_image(model, op, name, gt, 0, resolve(compose(*common, f"refine_step={opt}")),
                              torch.device("cpu"), torch.float32)
               for opt in (-1, 400)}
    base, ref = records[-1], records[400]
    assert "refine" not in base
    assert [p["particle"] for p in base["particles"]] == [p["particle"] for p in ref["particles"]]
    for pb, pr in zip(base["particles"], ref["particles"]):
        assert pr["measurement_loss"] < pb["measurement_loss"]
    rep = ref["refine"]
    assert ref["boundaries"]["refine_k"] == 4 and rep["num_calls"] == 2             # k = 4 and the final k = 5
    assert [s["k"] for s in ref["steps"] if "refine_iters_mean" in s] == [4, 5]
    assert rep["total_iterations"] == sum(sum(c["iterations"]) for c in rep["calls"])


def test_the_record_credits_each_particle_and_notes_when_nothing_was_optimised():
    """Per particle: its iterations and stop reasons over the calls, and its share of each call's time in proportion
    to its iterations; the summary's share of particle-calls that optimised; a note where no particle ran an
    iteration (a gain then came from the re-noise, not the optimiser)."""
    from resample_opt import notes, record, summary
    from sampler.trace import Trace

    def call(k, time_s, per):            # per: particle -> (iterations, stop reason)
        rows = [{"kind": "refine", "k": k, "t": 100 - k, "sigma": 0.1, "time_s": time_s, "resample_weight": 0.5}]
        rows += [{"kind": "refine", "k": k, "particle": pid, "iterations": n, "stop_reason": why,
                  "loss_before": 2.0, "loss_after": 1.0, "accepted": True} for pid, (n, why) in per.items()]
        return rows

    rec = record(Trace(call(8, 3.0, {0: (10, "threshold"), 1: (20, "max_iters")}) +
                       call(9, 1.0, {0: (0, "threshold"), 1: (5, "plateau")})), None)
    assert rec["total_iterations"] == 35
    assert rec["particles"]["0"] == {"iterations": 10, "stop_reasons": {"threshold": 2}, "time_s": pytest.approx(1.0)}
    assert rec["particles"]["1"]["iterations"] == 25 and rec["particles"]["1"]["time_s"] == pytest.approx(3.0)
    assert rec["particles"]["1"]["stop_reasons"] == {"max_iters": 1, "plateau": 1}
    assert summary([{"refine": rec}])["refine_optimised_share"] == pytest.approx(3 / 4)
    assert notes([{"refine": rec}]) == []
    idle = record(Trace(call(8, 0.5, {0: (0, "threshold"), 1: (0, "threshold")})), None)
    (line,) = notes([{"refine": idle}, {"refine": idle}])
    assert "no optimisation iteration" in line and "{'threshold': 4}" in line
