"""metric.json: every documented field, atomic rewrites, finished images survive an interrupted run."""
import json

import pytest

import pipeline.run as run_mod
from tracking.metric_file import write_json_atomic
from tests.conftest import compose

TINY = ["sampler.annealing.num_steps=5", "sampler.mcmc.num_steps=2", "save_images=true"]


def test_schema_of_a_run(tmp_path):
    cfg = compose("particle_num=3", "num_eval_images=2", f"save_dir={tmp_path}", "name=r", *TINY)
    run_mod.run(cfg, ["posterior_sample.py", "particle_num=3"])
    out = tmp_path / "r"
    m = json.loads((out / "metric.json").read_text())
    assert (out / "config.yaml").is_file()
    assert set(m) == {"provenance", "config", "lpips", "images", "summary"}
    assert m["lpips"]["variant"] == "daps"
    assert set(m["provenance"]) >= {"git_commit", "torch", "device", "command", "started"}
    assert m["config"]["particle_num"] == 3
    assert [im["index"] for im in m["images"]] == [0, 1]
    im = m["images"][0]
    assert len(im["particles"]) == 3
    from tracking.provenance import RESULTS, git_state
    commit, clean = git_state()                     # each image names the code that made it
    assert all(x["provenance"] == {"commit": commit, "clean": clean, "results": RESULTS} for x in m["images"])
    for p in im["particles"]:
        for key in ("psnr", "ssim", "lpips", "psnr_180", "ssim_180", "lpips_180", "mode", "measurement_loss",
                    "pruned_at", "particle", "failed"):
            assert key in p
        assert p["mode"] in ("0", "180", "fail")
        assert p["mode"] != "fail" or max(p["psnr"], p["psnr_180"]) < cfg.data.fail_psnr
    assert im["best_oracle"]["psnr"] == max(p["psnr"] for p in im["particles"])
    # DAPS's best-of-N: each metric's best over the particles on its own
    assert im["best_of_n"] == {"n": 3, "psnr": max(p["psnr"] for p in im["particles"]),
                               "ssim": max(p["ssim"] for p in im["particles"]),
                               "lpips": min((p["lpips"] for p in im["particles"] if p["lpips"] is not None),
                                            default=None)}
    assert im["best_by_loss"]["measurement_loss"] == min(p["measurement_loss"] for p in im["particles"])
    assert set(im["phases"]) == {"explore"}
    assert im["phases"]["explore"]["steps"] == 5 and im["phases"]["explore"]["time_s"] > 0
    assert im["phases"]["explore"]["peak_memory_mb"] > 0
    assert len(im["steps"]) == 5
    step = im["steps"][-1]
    for key in ("k", "t", "sigma", "phase", "time_s", "memory_mb", "particles", "mean_pairwise_distance",
                "min_pairwise_distance", "loss"):
        assert key in step
    assert [s["t"] for s in im["steps"]] == [1000, 800, 600, 400, 200]
    assert step["particles"] == 3 and len(step["loss"]) == 3
    assert m["summary"]["images"] == 2
    assert 0 <= m["summary"]["fail_rate"] <= 1
    for f in ("gt.png", "measurement.png", "particle_0.png", "particle_2.png", "grid.png"):
        assert (out / "images" / "00001" / f).is_file()


def test_interrupted_run_keeps_finished_images(tmp_path, monkeypatch):
    real = run_mod.run_batch
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "run_batch", flaky)
    cfg = compose("particle_num=2", "num_eval_images=3", f"save_dir={tmp_path}", "name=r", *TINY)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(cfg)
    m = json.loads((tmp_path / "r" / "metric.json").read_text())
    assert [im["index"] for im in m["images"]] == [0]
    assert m["summary"]["images"] == 1


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "metric.json"
    write_json_atomic(path, {"a": 1, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})
    assert json.loads(path.read_text())["a"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_step_memory_on_a_cpu_is_the_resident_size_now_not_a_running_peak():
    """A step's memory_mb falls when memory is given back (the lifetime peak RSS never does)."""
    import numpy as np

    from tracking.tracker import RunTracker, current_rss_mb, peak_rss_mb

    tracker = RunTracker("cpu", trace=None)
    big = np.ones(50_000_000)                          # 400 MB, touched
    during = tracker._step_memory_mb()
    del big
    after = tracker._step_memory_mb()
    assert during - after > 300 and abs(after - current_rss_mb()) < 50
    assert peak_rss_mb() >= during - 1
