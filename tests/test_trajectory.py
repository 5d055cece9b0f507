"""eval.per_step: per-step PSNR and mode of every particle, an observer that leaves the sampling unchanged."""
from __future__ import annotations

import pytest

import pipeline.run as pipeline_run
from tests.conftest import compose
from tracking.metric_file import read_json

RUN = ["dtype=float64", "particle_num=3", "num_eval_images=2", "save_images=false", "sampler.annealing.num_steps=6",
       "sampler.mcmc.num_steps=3", "repulsion_scale=0.3", "pruning_step=500", "pruning_keep=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("traj")
    out = {}
    for on in (False, True):
        pipeline_run.run(compose(*RUN, f"eval.per_step={str(on).lower()}", f"save_dir={root}", f"name=per_step_{str(on).lower()}"))
        out[on] = read_json(root / f"per_step_{str(on).lower()}" / "metric.json")["images"]
    return out


def test_per_step_metrics_end_at_the_final_particles(runs):
    for im in runs[True]:
        for s in im["steps"]:
            assert len(s["psnr"]) == len(s["psnr_180"]) == len(s["mode"]) == s["particles"] == len(s["particle_ids"])
            assert set(s["mode"]) <= {"0", "180", "fail"}
        last = im["steps"][-1]
        final = {p["particle"]: p for p in im["particles"] if p["pruned_at"] is None}
        assert sorted(final) == sorted(last["particle_ids"])
        for pid, psnr, psnr_180, mode in zip(last["particle_ids"], last["psnr"], last["psnr_180"], last["mode"]):
            assert psnr == pytest.approx(final[pid]["psnr"], abs=1e-4)
            assert psnr_180 == pytest.approx(final[pid]["psnr_180"], abs=1e-4)
            assert mode == final[pid]["mode"]
        # early steps are far from any solution: the estimate sharpens as sigma falls
        assert max(im["steps"][0]["psnr"]) < max(last["psnr"])


def test_per_step_metrics_only_observe(runs):
    for off, on in zip(runs[False], runs[True]):
        assert "psnr" not in off["steps"][0]
        assert off["particles"] == on["particles"]
        assert off["pruning"] == on["pruning"]
        assert [s["loss"] for s in off["steps"]] == [s["loss"] for s in on["steps"]]


def test_per_step_flag_must_be_a_bool():
    from core.errors import ConfigError
    from pipeline.validate import validate

    with pytest.raises(ConfigError, match="eval.per_step=yes is invalid"):
        validate(compose("eval.per_step=yes"))


def test_commit_times_from_per_step_labels():
    from evaluation.trajectory import commit_times, committed_fraction

    def step(t, ids, modes):
        return {"t": t, "particle_ids": ids, "mode": modes}

    record = {"steps": [
        step(1000, [0, 1, 2], ["fail", "180", "0"]),
        step(750, [0, 1, 2], ["0", "180", "180"]),
        step(500, [0, 1, 2], ["180", "180", "0"]),     # 2 is pruned after this step, 3 is born (a branch child)
        step(250, [0, 1, 3], ["180", "180", "0"]),
        step(0, [0, 1, 3], ["180", "180", "0"]),
    ]}
    assert commit_times(record) == {0: 500, 1: 1000, 3: 250}
    assert committed_fraction(record) == {1000: 1 / 3, 750: 1 / 3, 500: 2 / 3, 250: 1.0, 0: 1.0}
    assert commit_times({"steps": [{"t": 0, "particle_ids": [0]}]}) == {}


def test_summary_and_table_carry_the_commit_t(runs):
    from evaluation.summary import summarize

    assert summarize(runs[False])["mode_commit_t_median"] is None
    t = summarize(runs[True])["mode_commit_t_median"]
    assert t is not None and 0 <= t <= 1000
