"""The ReSample baseline (sampler/resample.py): call by call equal to ReSample's own loop (the fixture recorded from its
code by scripts/studies/resample_reference.py), each particle its own run, stages refused, and its record."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from pipeline.build import build
from pipeline.schema import compose
from pipeline.resolve import resolve
from sampler import ParticleState
from sampler.optimize import optimize_latents
from sampler.resample import (consistency_kind, ddim_schedule, ddim_update, guided_step, latent_optimisation,
                              pixel_optimisation, resample, resample_sigma, stochastic_resample, timestep)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "resample_reference.pt"
TOL = dict(rtol=1e-4, atol=1e-4)          # float32, up to round-off


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(1)
    ref = torch.load(FIXTURE)
    cfg = compose(*ref["stack"])
    cfg.sampler.resample.num_steps = ref["steps"]
    model, operator, _ = build(cfg)
    return ref, cfg, model, operator, ddim_schedule(model.alphas_cumprod, ref["steps"])


def _of(ref, kind):
    return [c for c in ref["calls"] if c["kind"] == kind]


def test_ddim_grid_is_the_compvis_one(reference):
    _, _, model, _, schedule = reference
    assert schedule.timesteps[:3] == (1, 26, 51) and len(schedule) == 40
    assert schedule.alphas_prev[0] == float(model.alphas_cumprod[0])
    assert schedule.alphas_prev[1:] == schedule.alphas[:-1]


def test_ddim_updates_match_resample(reference):
    """Every DDIM update of the loop, the guided ones and the time travel's (whose network sees the grid point below
    the abar it uses), from the same input."""
    ref, _, model, _, schedule = reference
    calls = _of(ref, "ddim")
    assert len(calls) == 40 + 2 * 5
    for c in calls:
        index = c["index"]
        assert c["t"] in (schedule.timesteps[index], schedule.timesteps[index - 1])
        with torch.no_grad():
            e = model.eps(c["x"], timestep(c["x"], c["t"]))
        x_prev, pred, pseudo = ddim_update(c["x"], e, schedule.alphas[index], schedule.alphas_prev[index])
        for ours, theirs in ((x_prev, c["x_prev"]), (pred, c["pred_x0"]), (pseudo, c["pseudo_x0"])):
            torch.testing.assert_close(ours, theirs, **TOL)


def test_guidance_steps_match_resample(reference):
    ref, _, model, operator, schedule = reference
    calls = _of(ref, "guidance")
    assert len(calls) == 40
    y = ref["y"]
    for i, c in enumerate(calls):
        index = 39 - i
        a = schedule.alphas[index]
        assert c["scale"] == pytest.approx(0.5 * a, rel=1e-6)
        out, pseudo, loss = guided_step(model, operator, y, c["x"], schedule.timesteps[index], a,
                                        schedule.alphas_prev[index], 0.5)
        torch.testing.assert_close(pseudo, c["x0_hat"], **TOL)
        assert math.sqrt(float(loss)) == pytest.approx(c["norm"], rel=1e-4)
        torch.testing.assert_close(out, c["out"], **TOL)


def test_stochastic_resample_matches_resample(reference):
    """The resample's mean and variance: the same draw gives the same latent, at the sigma ReSample computes."""
    ref, cfg, _, _, schedule = reference
    calls = _of(ref, "resample")
    indices = [i for i in range(39, -1, -1) if consistency_kind(i, 40, 10, True)]
    assert indices == [20, 10] and len(calls) == 2
    for index, c in zip(indices, calls):
        a, a_prev = schedule.alphas[index], schedule.alphas_prev[index]
        assert c["a"] == pytest.approx(a_prev, rel=1e-6)
        assert c["sigma"] == pytest.approx(resample_sigma(cfg.sampler.resample.gamma, a, a_prev), rel=1e-5)
        out = stochastic_resample(c["x0"], c["x_t"], c["a"], c["sigma"], c["noise"])
        torch.testing.assert_close(out, c["out"], **TOL)


def test_optimisations_match_resample(reference):
    """The pixel and the latent optimisation from the same start: the same iterates over the first steps, and over
    the whole call the same number of AdamW steps (ReSample's stopping rules) and the same final loss. Iterates
    are compared over the first steps only: Adam amplifies round-off (torch's own AdamW from a start moved by 1e-7
    ends 0.1 away after 2,000 steps, at the same loss to 1e-3)."""
    ref, cfg, model, operator, _ = reference
    block, running, y = cfg.sampler.resample, torch.zeros(1, dtype=torch.bool), ref["y"]
    m = y[0].numel()
    (pixel,) = _of(ref, "pixel")
    first = OmegaConf.merge(block.pixel_opt, {"max_iters": 10})
    torch.testing.assert_close(pixel_optimisation(operator, y, pixel["start"], first, running)[0], pixel["first"],
                               **TOL)
    assert pixel["steps"] == block.pixel_opt.max_iters == 2000        # the threshold never fires on noisy data

    latent = _of(ref, "latent")
    first = OmegaConf.merge(block.latent_opt, {"max_iters": 10})
    for c in latent:
        torch.testing.assert_close(latent_optimisation(model, operator, y, c["start"], first, running)[0], c["first"],
                                   **TOL)
    c = latent[0]                                                     # one whole call: its steps and final loss
    z, info = latent_optimisation(model, operator, y, c["start"], block.latent_opt, running)
    assert int(info["iterations"][0]) == c["steps"]
    with torch.no_grad():
        ours, theirs = (float(operator.loss(model.decode(v), y)) / m for v in (z, c["out"]))
    assert ours == pytest.approx(theirs, rel=2e-3)


def test_stopped_particle_takes_resamples_extra_step():
    """ReSample tests its rules after stepping: a particle stopped by the plateau or the threshold rule at iterate i
    returns z_{i+1} and counts i + 1 steps; the other particles of the batch are as without the option."""
    z = torch.tensor([[2.5], [4.0], [-1.0]], dtype=torch.float64)

    def loss(z, index):                        # each row its own: plateau for rows 0-1 (Adam overshoots 0), threshold 2
        return torch.where(index == 2, (z[:, 0] + 1.0).abs() + 0.5, z[:, 0] ** 2 + 1.0)

    plain, a = optimize_latents(z, loss, lr=1.0, max_iters=50, threshold=0.6, plateau_window=3)
    stepped, b = optimize_latents(z, loss, lr=1.0, max_iters=50, threshold=0.6, plateau_window=3, step_past_stop=True)
    assert a["stop_reason"] == b["stop_reason"] == ["plateau", "plateau", "threshold"]
    assert (b["iterations"] == a["iterations"] + 1).all()
    for i in range(3):                          # z_{i+1}: one more Adam step from z_i with the same moments
        n = int(a["iterations"][i])
        one_more, _ = optimize_latents(z[i:i + 1], lambda v, idx, i=i: loss(v, torch.full_like(idx, i)), lr=1.0,
                                       max_iters=n + 1, threshold=-1.0, plateau_window=0)
        torch.testing.assert_close(stepped[i], one_more[0])


def test_whole_loop_follows_resample(reference):
    """Our loop from ReSample's x_T with ReSample's noise ends where its loop ends (the same draws in the same order:
    one particle's generator seeded as ReSample's global one), up to round-off that 1,000 Adam steps amplify: within
    25 dB of its output and at its measurement loss, where its loop's sample from another seed lies about 10 dB
    away."""
    ref, cfg, model, operator, schedule = reference
    g = torch.Generator().manual_seed(ref["seed"])
    z = torch.randn(model.latent_shape, generator=g)[None]
    torch.testing.assert_close(z, ref["x_T"], rtol=0, atol=0)
    state = ParticleState(z=z, y=ref["y"], generators=[g], particle_ids=torch.tensor([0]),
                          image_ids=torch.tensor([0]), alive=torch.ones(1, dtype=torch.bool),
                          loss=torch.full((1,), float("inf")))
    ours = model.decode(resample(model, operator, state, schedule, cfg.sampler.resample).z).detach()
    theirs, other = (model.decode(ref[k]).detach() for k in ("out", "other_seed_out"))

    def psnr(a, b):                                                   # images on [0, 1]
        return -10 * math.log10(float(((a - b) / 2).square().mean()))
    assert psnr(ours, theirs) > 25 and psnr(ours, other) < 20
    m = ref["y"].numel()
    losses = [float(operator.loss(x, ref["y"])) / m for x in (ours, theirs)]
    assert losses[0] == pytest.approx(losses[1], rel=0.02)


SMALL = ("model=digits32ldm", "sampler=digits32ldm_resample", "data=digits", "device=cpu",
         "sampler.resample.num_steps=12", "sampler.resample.every=2", "sampler.resample.latent_opt.max_iters=30",
         "sampler.resample.pixel_opt.max_iters=20", "sampler.resample.latent_opt.plateau_window=4",
         "sampler.resample.latent_opt.lr=0.1")


def _sampled(cfg, model, operator, gt):
    from pipeline.sampling import sample_batch
    from tracking.compute import NetworkCounter

    with NetworkCounter(model) as counter:
        return sample_batch(model, operator, gt, [3], resolve(cfg), torch.device("cpu"), gt.dtype, counter)


def test_particles_are_independent_resample_runs():
    """particle_num=2 in one batch is two single runs with particle_offset 0 and 1 (float64, up to round-off): each
    particle's guidance, resample draws and optimisation (with its own stop) its own; network rows add up."""
    cfg = compose(*SMALL, "dtype=float64", "particle_num=2")
    model, operator, dataset = build(cfg)
    gt = dataset[0][1][None].to(torch.float64)
    batch = _sampled(cfg, model, operator, gt)
    calls = [r for r in batch.trace.of("consistency") if "particle" in r]
    assert {r["space"] for r in calls} == {"pixel", "latent"}
    latent = [r["iterations"] for r in calls if r["space"] == "latent"]
    by_call = {}
    for r in calls:
        by_call.setdefault(r["k"], set()).add(r["iterations"])
    assert any(len(v) > 1 for v in by_call.values())    # in some call the two particles stopped at different steps
    rows = dict.fromkeys(batch.network_rows, 0)
    for i in range(2):
        single_cfg = compose(*SMALL, "dtype=float64", "particle_num=1", f"particle_offset={i}")
        single = _sampled(single_cfg, model, operator, gt)
        torch.testing.assert_close(batch.state.z[i], single.state.z[0], rtol=1e-9, atol=1e-9)
        mine = [r["iterations"] for r in calls if r["particle"] == i]
        assert mine == [r["iterations"] for r in single.trace.of("consistency") if "particle" in r]
        rows = {k: rows[k] + v for k, v in single.network_rows.items()}
    assert rows == batch.network_rows
    # 12 steps asked: CompVis's grid takes every 83rd timestep, 13 of them; one decoder VJP per guidance and per step
    assert batch.network_rows["unet_vjp"] == 2 * 13 and batch.network_rows["decoder_vjp"] == 2 * 13 + sum(latent)


@pytest.mark.parametrize("flag", ["repulsion_scale=0.3", "pruning_step=200", "refine_step=200",
                                  "resampling_interval=2"])
def test_stages_are_refused_in_one_line(flag):
    from core.errors import ConfigError
    from pipeline.validate import validate

    cfg = compose(*SMALL, flag)
    with pytest.raises(ConfigError) as e:
        validate(cfg, machine=False)
    assert "\n" not in str(e.value) and flag.split("=")[0] in str(e.value) and "sampler=resample" in str(e.value)


def test_record_has_resample_phases_calls_and_compute(tmp_path):
    from pipeline.run import run

    cfg = compose(*SMALL, "particle_num=2", f"save_dir={tmp_path}", "name=rs", "save_images=false")
    metric = run(cfg)
    (im,) = metric["images"]
    assert set(im["phases"]) == {"guidance", "pixel", "latent", "final"}
    assert im["phases"]["final"]["steps"] == 1 and sum(p["steps"] for p in im["phases"].values()) == 13 + 1
    section = im["resample"]
    assert (section["pixel_calls"], section["latent_calls"]) == (3, 2)      # indices 8, 6, 4; then 2 and the closing
    assert set(section["iterations_per_particle"]) == {"0", "1"}
    assert section["optimisation_time_s"] <= im["total_time_s"]
    rows = im["compute"]["rows"]
    # time travel: 5 steps ahead, fewer near the end of the grid (at most to its next-to-last point)
    assert rows["unet_vjp"] == 2 * 13 and rows["unet"] == 2 * (5 + 5 + 4 + 2)
    assert im["compute"]["tflop"] > 0 and im["best_by_prior"]["particle"] in (0, 1)
    assert metric["summary"]["images"] == 1
