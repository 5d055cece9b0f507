"""scripts/performance/benchmark.py on the tiny LDM: rows for every scenario, batch = sequential, no wasted network calls, bf16 is real."""
import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from core.errors import ConfigError
from pipeline.validate import validate
from tests.conftest import ROOT, compose

K, M, OPT = 10, 1, 2       # 10 steps: t = 200 is step 8, so one step follows pruning and optimisation starts


@pytest.fixture(scope="module")
def bm():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "performance" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield module
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny"
    r = subprocess.run([sys.executable, "scripts/performance/benchmark.py", "--tiny", "--steps", str(K), "--mcmc-steps", str(M),
                        "--refine-iters", str(OPT), "--images", "2", "--variants", "fp32", "--threads", "1",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text()


def test_json_covers_every_scenario(report):
    result, md = report
    assert {"date", "device", "torch", "git_commit", "settings", "goals"} <= set(result)
    assert result["settings"]["annealing_steps"] == K and result["settings"]["mcmc_steps"] == M
    rows = {r["scenario"]: r for r in result["rows"]}
    assert sorted(rows) == list("abcdefg")
    assert all(r["time_s"] > 0 and r["peak_memory_mb"] > 0 and r["variant"] == "fp32" for r in rows.values())
    # (particles per image, batch, images, runs, particles per image at the end)
    expect = {"a": (4, 1, 1, 4, 4), "b": (4, 4, 1, 1, 4), "c": (4, 4, 1, 1, 2), "d": (2, 2, 1, 1, 2),
              "e": (4, 4, 1, 1, 4), "f": (4, 8, 2, 1, 4), "g": (4, 4, 1, 1, 2)}
    for key, (p, batch, images, runs, final) in expect.items():
        r = rows[key]
        assert (r["particles"], r["batch"], r["images"], r["runs"], r["final_particles"]) == (p, batch, images, runs,
                                                                                              final), key
    assert set(rows["c"]["phases"]) == {"explore", "prune"} and rows["c"]["phases"]["prune"]["steps"] == 1
    assert rows["e"]["refine_iterations"] == 2 * 4 * OPT          # calls at steps 8 and 9 (final), OPT Adam steps each
    assert rows["f"]["time_per_image_s"] == pytest.approx(rows["f"]["time_s"] / 2)
    assert "| fp32 | f |" in md and "## Goals" in md
    assert rows["b"]["min_psnr_vs_a"] > 60 and "dB apart" in md       # fp32: the same outputs


def test_loop_makes_no_unused_network_calls(report):
    """The decoder runs only inside the MCMC gradient (plus pruning's one scoring decode and the optimiser's
    iterates), the UNet only in the ODE x0 estimate: counted row by row."""
    rows = {r["scenario"]: r for r in report[0]["rows"]}
    ode = 2
    for key, P in (("a", 4), ("b", 4), ("d", 2), ("f", 8)):
        assert rows[key]["decoder_rows"] == P * K * M, key
        assert rows[key]["denoiser_rows"] == P * K * ode, key
    prune_k = 8                                              # 4 particles up to and at the pruning step, then 2
    assert rows["c"]["decoder_rows"] == 4 * (prune_k + 1) * M + 4 + 2 * (K - prune_k - 1) * M
    assert rows["e"]["decoder_rows"] == 4 * K * M + 2 * 4 * (OPT + 1)   # OPT steps + the final loss, per call


def test_batch_equals_sequential_runs(bm):
    """(a) and (b) give the same final latent per particle, and (f) gives image 0's particles as (b): float64."""
    args = bm.parse_args(["--tiny", "--steps", "3", "--mcmc-steps", "2", "--dtype", "float64", "--images", "2"])
    cfg = bm.base_config(args, "tiny")
    dev, dtype = torch.device("cpu"), torch.float64
    model, op = bm.build(cfg, dev, dtype, args.seed)
    assert not any(p.requires_grad for p in model.parameters())
    specs = bm.scenarios(4, 2)
    _, za = bm.run_scenario(model, op, cfg, "a", specs["a"], dev, dtype)
    _, zb = bm.run_scenario(model, op, cfg, "b", specs["b"], dev, dtype)
    _, zf = bm.run_scenario(model, op, cfg, "f", specs["f"], dev, dtype)
    assert sorted(za) == sorted(zb) == [(0, i) for i in range(4)]
    assert sorted(zf) == [(i, j) for i in range(2) for j in range(4)]
    for key in za:
        torch.testing.assert_close(zb[key], za[key], rtol=0, atol=1e-10)
        torch.testing.assert_close(zf[key], zb[key], rtol=0, atol=1e-10)
    assert not torch.allclose(za[(0, 0)], za[(0, 1)])                 # the particles are not all the same
    assert not torch.allclose(zf[(0, 0)], zf[(1, 0)])                 # nor the two images' particles
    # in image space: equal latents decode to equal images; two particles' outputs are far apart
    assert bm.output_psnr(model, za, zb, dev) > 100
    assert bm.output_psnr(model, {0: za[(0, 0)]}, {0: za[(0, 1)]}, dev) < 40


def test_bf16_changes_tiny_ldm_output_slightly(bm):
    """The bf16 lever is real (the output moves) and mild; TF32 is a no-op on the CPU, bf16 on two_mode's
    identity decoder too."""
    args = bm.parse_args(["--tiny", "--steps", "3", "--mcmc-steps", "2"])
    dev = torch.device("cpu")
    res = bm.precision_check(bm.base_config(args, "tiny"), args, dev, torch.float32)
    bf16 = res["bf16"]
    assert not bf16["identical_to_fp32"]
    assert 0 < bf16["latent_rel_diff"] < 2e-3                        # measured 1.6e-4
    assert bf16["psnr_vs_fp32_min"] > 25                              # measured 39 dB: one VQ code flip
    assert bf16["psnr_vs_gt_max_abs_diff"] < 0.5                      # measured 0.035 dB
    assert res["tf32"]["identical_to_fp32"]
    two = bm.precision_check(bm.base_config(args, "two_mode"), args, dev, torch.float32, ("fp32", "bf16"))
    assert two["bf16"]["identical_to_fp32"]


def test_bad_levers_stop_early(bm):
    with pytest.raises(SystemExit, match="unknown levers"):
        bm.parse_variant("bf16+fast")
    with pytest.raises(ConfigError, match="sampler.precision.decoder=fp16 is invalid"):
        validate(compose("sampler.precision.decoder=fp16"))
    with pytest.raises(SystemExit, match="no step follows t=200"):
        bm.main(["--tiny", "--steps", "3", "--scenarios", "c"])
