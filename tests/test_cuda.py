"""The CUDA paths on the tiny LDM: every stage in fp32, bf16 and channels-last, a torch.compile run, peak memory per
phase, batch = single-particle runs, and no device sync inside the MCMC loop.

Skipped without a GPU. `scripts/performance/gpu_check.sh` runs them on the device machine; its `--dry-run` sets
GPU_CHECK_DEVICE=cpu and runs the same tests on the CPU (the CUDA-only ones then skip with a reason).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import math
import os

import pytest
import torch

from pipeline.run import run_batch
from pipeline.resolve import resolve
from tracking.compute import NetworkCounter
from tests.conftest import ROOT

DEVICE = torch.device(os.environ.get("GPU_CHECK_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(),
                                reason="no CUDA device: scripts/performance/gpu_check.sh runs these on a GPU "
                                       "(GPU_CHECK_DEVICE=cpu runs them on the CPU)")
cuda_only = pytest.mark.skipif(DEVICE.type != "cuda", reason="measures CUDA itself (allocator peaks, compilation)")

K, M, P = 10, 2, 4             # 10 steps: t = 200 is step 8, so one step follows pruning and refinement starts there
# bf16 on a CPU is emulated and ten times slower: the dry run sends bf16 through one test only
VARIANTS = ("fp32", "bf16", "bf16+cl") if DEVICE.type == "cuda" else ("fp32",)
STAGES = {
    "plain": {},
    "repulsion_latent": {"repulsion_scale": 0.3},
    "repulsion_pixel": {"repulsion_scale": 0.3, "repulsion.features": "pixel", "repulsion.pixel_size": 16},
    "prune": {"pruning_step": 200},
    "branch": {"pruning_step": 200, "pruning.mode": "branch"},
    "refine": {"refine_step": 200},
    "per_step": {"eval.per_step": True},
    "two_images": {"images_per_batch": 2},
}


@pytest.fixture(scope="module")
def bm():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "performance" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base(bm):
    args = bm.parse_args(["--tiny", "--steps", str(K), "--mcmc-steps", str(M), "--refine-iters", "3"])
    cfg = bm.base_config(args, "tiny")
    cfg.particle_num = P
    cfg.orientation.elbo_evals = 8          # the orientation score is evaluation, not what these tests measure
    return cfg


def configure(bm, base, variant: str, changes: dict):
    cfg = bm.apply_variant(base, variant)
    for key, value in changes.items():
        node, _, leaf = key.rpartition(".")
        (cfg[node] if node else cfg)[leaf] = value
    return cfg


def build(bm, cfg):
    return bm.build(cfg, DEVICE, torch.float32, cfg.seed)


def sample(bm, cfg, model=None, operator=None, images: int = 1):
    if model is None:
        model, operator = build(bm, cfg)
    gts = bm.images(cfg, images, DEVICE, torch.float32)
    items = [(i, f"image{i}", gts[i]) for i in range(images)]
    with NetworkCounter(model) as counter:
        return run_batch(model, operator, items, resolve(cfg), DEVICE, torch.float32, counter)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_runs_and_measures(bm, base, variant, stage):
    changes = dict(STAGES[stage])
    G = changes.pop("images_per_batch", 1)
    cfg = configure(bm, base, variant, changes)
    cfg.images_per_batch = G
    records = sample(bm, cfg, images=G)
    assert [r["index"] for r in records] == list(range(G))
    for rec in records:
        final = [p for p in rec["particles"] if p["pruned_at"] is None]
        assert len(final) == (2 if stage == "prune" else P)
        assert all(math.isfinite(p["measurement_loss"]) and p["measurement_loss"] > 0 for p in rec["particles"])
        assert all(math.isfinite(p["psnr"]) and not p["failed"] for p in rec["particles"])
        assert [s["k"] for s in rec["steps"]] == list(range(K))
        kind = "cuda_max_allocated" if DEVICE.type == "cuda" else "peak_rss"
        assert all(ph["memory_kind"] == kind and ph["peak_memory_mb"] > 0 for ph in rec["phases"].values())
        assert rec["batch"]["indices"] == list(range(G))
    rec = records[0]
    if stage in ("prune", "branch"):
        assert set(rec["phases"]) == {"explore", "prune"} and rec["phases"]["prune"]["steps"] == 1
        assert [s["particles"] for s in rec["steps"]] == [P] * 8 + [2 if stage == "prune" else P] * 2
    if stage == "refine":
        assert rec["refine"]["total_iterations"] == 2 * P * 3       # calls at k = 8 and 9, 3 Adam steps each
    if stage.startswith("repulsion"):
        # score-relative: |drift| / |score| is the strength itself, whatever the device and precision
        s0 = rec["steps"][0]
        assert s0["repulsion_score_ratio"] == pytest.approx(s0["repulsion_strength"], rel=1e-3)
        assert s0["repulsion_strength"] == pytest.approx(0.3)
    if stage == "per_step":
        last = rec["steps"][-1]
        assert last["psnr"] == pytest.approx([p["psnr"] for p in rec["particles"]], abs=1e-3)


@pytest.mark.parametrize("variant", ("fp32", "bf16"))
def test_batch_equals_single_particle_runs(bm, base, variant):
    """One 4-particle batch and four 1-particle runs give the same outputs (PSNR between them > 40 dB)."""
    cfg = bm.apply_variant(base, variant)
    model, operator = build(bm, cfg)
    specs = bm.scenarios(P, 1)
    _, za = bm.run_scenario(model, operator, cfg, "a", specs["a"], DEVICE, torch.float32)
    _, zb = bm.run_scenario(model, operator, cfg, "b", specs["b"], DEVICE, torch.float32)
    assert sorted(za) == sorted(zb) == [(0, i) for i in range(P)]
    assert bm.output_psnr(model, za, zb, DEVICE) > 40
    assert bm.output_psnr(model, {0: za[(0, 0)]}, {0: za[(0, 1)]}, DEVICE) < 40      # particles differ


@cuda_only
def test_peak_memory_is_recorded_per_phase_and_drops_after_pruning(bm, base):
    cfg = configure(bm, base, "fp32", {"particle_num": 16, "pruning_step": 200, "pruning_keep": 2})
    rec = sample(bm, cfg)[0]
    explore, prune = rec["phases"]["explore"]["peak_memory_mb"], rec["phases"]["prune"]["peak_memory_mb"]
    assert 0 < prune < explore, (explore, prune)


@cuda_only
def test_compiled_run_matches_eager(bm, base):
    eager = sample(bm, base)[0]
    cfg = copy.deepcopy(base)
    cfg.sampler.precision.compile = True
    compiled = sample(bm, cfg)[0]
    for a, b in zip(eager["particles"], compiled["particles"]):
        assert b["psnr"] == pytest.approx(a["psnr"], abs=0.5)
        assert b["measurement_loss"] == pytest.approx(a["measurement_loss"], rel=1e-2)


class SyncCounter:
    """Counts the host reads of device values (`.item()`, `.tolist()`, `.cpu()`, `bool(t)`) and explicit
    `torch.cuda.synchronize` calls made while `active`; on CUDA the sync debug mode also errors on implicit ones."""

    READS = ("item", "tolist", "cpu", "__bool__")

    def __init__(self, monkeypatch):
        self.calls, self.active = [], False
        for name in self.READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))
        monkeypatch.setattr(torch.cuda, "synchronize", self._counted("synchronize", torch.cuda.synchronize))

    def _counted(self, name, fn):
        def wrapper(*args, **kwargs):
            if self.active:
                self.calls.append(name)
            return fn(*args, **kwargs)
        return wrapper

    @contextlib.contextmanager
    def watching(self):
        self.active = True
        if DEVICE.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            self.active = False
            if DEVICE.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("stage", ("plain", "repulsion_latent", "repulsion_pixel"))
def test_no_device_sync_inside_the_mcmc_loop(bm, base, stage, monkeypatch):
    counter = SyncCounter(monkeypatch)
    loop = importlib.import_module("sampler.latent_daps")     # the module, not the function `sampler` exports
    real, entered = loop.mcmc, []

    def watched(*args, **kwargs):
        entered.append(1)
        with counter.watching():
            return real(*args, **kwargs)

    monkeypatch.setattr(loop, "mcmc", watched)
    cfg = configure(bm, base, "fp32", STAGES[stage])
    model, operator = build(bm, cfg)
    sample(bm, cfg, model, operator)
    assert len(entered) == K
    assert counter.calls == [], f"host syncs inside the MCMC loop: {sorted(set(counter.calls))}"
