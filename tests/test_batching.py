"""Several images in one batch (images_per_batch): each image's record equals the one it gets alone."""
from __future__ import annotations

import math

import pytest

import pipeline.run as pipeline_run
from core.errors import ConfigError
from pipeline.validate import validate
from tests.conftest import compose
from tracking.metric_file import read_json

# K = 5: t = 1000, 800, 600, 400, 200; pruning at t = 400, the optimisation at the last step
STAGES = ["dtype=float64", "particle_num=3", "repulsion_scale=0.3", "pruning_step=400", "pruning_keep=2",
          "refine_step=200", "num_eval_images=3", "save_images=false", "sampler.annealing.num_steps=5",
          "sampler.mcmc.num_steps=3", "refine.max_iters=15", "refine.plateau_window=5",
          "eval.per_step=true"]
# measurements of the machine, and the batch block itself, which is what differs on purpose
MACHINE = {"time_s", "total_time_s", "peak_memory_mb", "memory_mb", "refine_time_s", "batch"}


def assert_same(a, b, path="record"):
    """Equal structure and values, floats to 1e-9 relative (float64: only summation order may differ)."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if k not in MACHINE:
                assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


@pytest.mark.parametrize("mode", ["prune", "branch"])
def test_batched_images_reproduce_one_image_runs(tmp_path, mode):
    runs = {}
    for G in (1, 2):
        cfg = compose(*STAGES, f"pruning.mode={mode}", f"images_per_batch={G}", f"save_dir={tmp_path}", f"name=g{G}")
        pipeline_run.run(cfg)
        runs[G] = read_json(tmp_path / f"g{G}" / "metric.json")
    alone, together = runs[1]["images"], runs[2]["images"]
    assert [im["index"] for im in together] == [0, 1, 2]
    for a, b in zip(alone, together):
        assert_same(a, b)
    # the pruning kept 2 of 3 per image, the optimiser ran on each image's own particles, and the per-step
    # metrics compared each particle with its own image
    assert all(len(s["psnr"]) == s["particles"] for im in together for s in im["steps"])
    assert all(len(im["pruning"][0]["kept"]) == 2 for im in together)
    assert all(c["particle_ids"] == im["steps"][-1]["particle_ids"]
               for im in together for c in im["refine"]["calls"])
    # images 0 and 1 shared a batch: each is charged half its time; image 2 ran alone
    first, second, third = together
    assert first["batch"]["indices"] == second["batch"]["indices"] == [0, 1] and third["batch"]["indices"] == [2]
    assert first["total_time_s"] == second["total_time_s"] == pytest.approx(first["batch"]["total_time_s"] / 2)
    assert third["total_time_s"] == pytest.approx(third["batch"]["total_time_s"])
    assert first["refine"]["total_time_s"] == pytest.approx(second["refine"]["total_time_s"])


def test_interrupted_batched_run_resumes_to_the_same_records(tmp_path, monkeypatch):
    common = [*STAGES[:2], "num_eval_images=3", "save_images=false", "sampler.annealing.num_steps=3",
              "sampler.mcmc.num_steps=2", f"save_dir={tmp_path}", "images_per_batch=2"]
    pipeline_run.run(compose(*common, "name=whole"))
    real, batches = pipeline_run.run_batch, []

    def interrupt_at_image_2(*args, **kwargs):
        batches.append([index for index, _, _ in args[2]])
        if 2 in batches[-1]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_run, "run_batch", interrupt_at_image_2)
    with pytest.raises(KeyboardInterrupt):
        pipeline_run.run(compose(*common, "name=r"))
    assert [im["index"] for im in read_json(tmp_path / "r" / "metric.json")["images"]] == [0, 1]
    # another batch size would change the times per image: refused like any other setting
    with pytest.raises(ConfigError, match=r"other settings \(images_per_batch\)"):
        pipeline_run.run(compose(*common, "name=r", "resume=true", "images_per_batch=1"))
    monkeypatch.setattr(pipeline_run, "run_batch", lambda *a, **k: batches.append([i for i, _, _ in a[2]])
                        or real(*a, **k))
    pipeline_run.run(compose(*common, "name=r", "resume=true"))
    assert batches == [[0, 1], [2], [2]]     # images 0 and 1 from the file
    for a, b in zip(read_json(tmp_path / "whole" / "metric.json")["images"],
                    read_json(tmp_path / "r" / "metric.json")["images"]):
        assert_same(a, b)


def test_images_per_batch_must_be_positive():
    with pytest.raises(ConfigError, match="images_per_batch=0 is invalid"):
        validate(compose("images_per_batch=0"))
