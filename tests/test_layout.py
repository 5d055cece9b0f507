"""The config goes no further than the pipeline: a real run, profiled call by call (scripts/config_walk.py), hands no
module below pipeline/ a config node, and none the whole config; each stage reads its own typed settings."""
import importlib.util

from tests.conftest import ROOT, settings


def _walk_module():
    spec = importlib.util.spec_from_file_location("config_walk", ROOT / "scripts" / "config_walk.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_module_below_the_pipeline_receives_a_config_node(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    walk = _walk_module()
    out = walk.walk(walk.EVERY_STAGE)
    assert out["files_below_pipeline"] == [] and out["whole_config_below_pipeline"] == []
    # the walk sees what it should: the pipeline hands the config around (else the profiler saw nothing)
    assert {"pipeline/run.py", "pipeline/resolve.py", "pipeline/validate.py"} <= set(out["files"])


def test_each_stage_gets_its_steps_computed_once():
    """Every stage's settings carry step indices, not times; the repulsion ends where a drift-ending stage
    (refine) begins without naming it."""
    s = settings("repulsion_scale=0.3", "resampling_interval=5", "pruning_step=[600,400]", "pruning_keep=[2,1]",
                 "refine_step=200")
    assert [stage.name for stage, _ in s.active] == ["repulsion", "resampling", "pruning", "refine"]
    assert s.stages["refine"].k == 40 and s.stages["repulsion"].stop_k == 40 == s.stages["repulsion"].end_k
    assert s.stages["pruning"].steps == ((20, 2), (30, 1))                 # t 600, 400 of 50 steps
    assert s.stages["resampling"].events[0] == 5                            # the first step with t <= 900
    off = settings()
    assert off.active == () and off.stages["refine"].k is None and off.stages["repulsion"].stop_k is None
    assert settings("sampler=resample", "model=ffhq256ldm", "data=demo-ffhq").stages == {}
