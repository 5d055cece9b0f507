"""scripts/performance/gpu_check.sh --dry-run: the device check's whole plan on the CPU with the tiny model, and its report."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(out))
    r = subprocess.run(["bash", "scripts/performance/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    return r, out


def test_dry_run_passes_the_cuda_tests_on_the_cpu(dry_run):
    r, out = dry_run
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = (out / "cuda_tests.log").read_text()
    assert " passed" in log and "failed" not in log
    # only the two tests that measure CUDA itself skip on the CPU
    assert "2 skipped" in log and log.count("SKIPPED") == 2
    assert "device cpu" in (out / "env.txt").read_text()


def test_dry_run_benchmark_has_its_scenarios_and_projection(dry_run):
    r, out = dry_run
    result = json.loads((out / "bench.json").read_text())
    assert [(row["variant"], row["scenario"]) for row in result["rows"]] == [("tf32", s) for s in "bcd"]
    cm = result["cost_model"]
    vjp, unet = cm["decoder_vjp_gflop"] / 1e3, cm["unet_forward_gflop"] / 1e3
    (p,) = result["projections"]
    b = next(row for row in result["rows"] if row["scenario"] == "b")
    assert b["decoder_vjp_rows"] == b["decoder_rows"] == 4 * 10 * 1 and b["denoiser_rows"] == 4 * 10 * 2
    assert p["s_per_vjp_row"] == pytest.approx(b["time_s"] / 40)
    rate = (40 * vjp + 80 * unet) / b["time_s"]
    assert p["tflop_per_s"] == pytest.approx(rate)
    # the full presets at that rate: 4 particles x 50 steps x (M VJPs + 2 UNet calls)
    assert p["projected_langevin_s"] == pytest.approx(4 * 50 * (50 * vjp + 2 * unet) / rate)
    assert p["projected_hmc_s"] == pytest.approx(4 * 50 * (65 * vjp + 2 * unet) / rate)
    assert all(g["status"] == "pending (GPU run)" for g in result["goals"])
    assert "## Throughput per variant" in r.stdout and "| tf32 |" in r.stdout


def test_dry_run_profiles_the_gradient_and_runs_the_command_line(dry_run):
    """The profile's kinds add up to its kernels' time, per variant; the command line's three runs wrote their
    metric.json (1 image, per-phase time and memory) and the table sets their time beside the projection."""
    r, out = dry_run
    profile = json.loads((out / "profile.json").read_text())
    assert [v["variant"] for v in profile["variants"]] == ["tf32", "bf16"]
    for v in profile["variants"]:
        assert sum(v["kinds"].values()) == pytest.approx(v["busy_s"]) and v["top"] and v["kinds"]["convolution"] > 0
    table = (out / "cli.md").read_text().splitlines()
    for name, vjps in (("p4", 4 * 5), ("p4_prune200k2", 4 * 5), ("p1", 5)):
        metric = json.loads((out / "cli" / name / "metric.json").read_text())
        (im,) = metric["images"]
        assert im["compute"]["rows"]["decoder_vjp"] == vjps and all("peak_memory_mb" in p for p in im["phases"].values())
        row = next(ln for ln in table if ln.startswith(f"| {name} |"))
        assert row.split(" | ")[1] == f"{im['total_time_s']:.1f}"
    assert "command line exit 0" in r.stdout


def test_goals_are_judged_on_a_gpu_result():
    """A made-up H200 result: each goal met or not by the issue's thresholds."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "performance" / "benchmark.py")
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)

    def row(variant, scenario, time_s, late, explore_mb, prune_mb=None, **extra):
        phases = {"explore": {"peak_memory_mb": explore_mb}}
        if prune_mb is not None:
            phases["prune"] = {"peak_memory_mb": prune_mb}
        return {"variant": variant, "scenario": scenario, "time_s": time_s, "late_time_s": late, "particles": 4,
                "decoder_vjp_rows": 400, "denoiser_rows": 80, "peak_memory_mb": explore_mb, "phases": phases, **extra}

    result = {
        "device": "NVIDIA H200", "device_type": "cuda", "settings": {"model": "full", "sampler": "langevin"},
        "cost_model": {"decoder_vjp_gflop": 1376.0, "unet_forward_gflop": 202.0},
        "rows": [row("fp32", "a", 30.0, 6.0, 3000), row("fp32", "b", 15.0, 3.0, 6000, min_psnr_vs_a=45.0,
                                                         max_abs_diff_vs_a=1e-3),
                 row("fp32", "c", 12.0, 1.5, 6000, 3500), row("tf32", "b", 6.0, 1.2, 6000),
                 row("bf16", "b", 1.6, 0.3, 5000)],
        "precision_check": {"full": {"bf16": {"psnr_vs_gt_max_abs_diff": 0.05}}},
    }
    result["projections"] = bm.projections(result)
    bf16 = next(p for p in result["projections"] if p["variant"] == "bf16")
    rate = (400 * 1.376 + 80 * 0.202) / 1.6
    assert bf16["tflop_per_s"] == pytest.approx(rate) and bf16["bf16_peak_fraction"] == pytest.approx(rate / 989.4)
    assert bf16["projected_langevin_s"] == pytest.approx(4 * 50 * (50 * 1.376 + 2 * 0.202) / rate)   # 39 s
    status = [g["status"] for g in bm.goals(result)]
    # batch 2x and 45 dB: met; bf16 9.4x, 0.05 dB: met; 39 s and 4.9 GB: met; TF32 147 s: not met;
    # pruning: time -50 %, memory -42 %: met
    assert status == ["met", "met", "met", "not met", "met"]
    result["rows"][1]["min_psnr_vs_a"] = 35.0                  # outputs differ: the batch goal fails
    result["rows"][2]["phases"]["prune"]["peak_memory_mb"] = 4500          # only -25 % memory
    status = [g["status"] for g in bm.goals(result)]
    assert status == ["not met", "met", "met", "not met", "not met"]
