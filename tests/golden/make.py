"""The golden records: float64 metric.json images of the two-mode benchmark with every stage on (repulsion,
pruning and branching, refinement, two images per batch, per-step metrics), timing and provenance stripped.

    python tests/golden/make.py            # rewrite tests/golden/two_mode_all_stages.json (a deliberate change)

tests/test_golden.py reruns the same configurations and compares with the file."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FILE = Path(__file__).with_name("two_mode_all_stages.json")
COMMON = ["dtype=float64", "num_eval_images=4", "images_per_batch=2", "particle_num=4", "repulsion_scale=0.3",
          "pruning_step=400", "refine_step=200", "refine.max_iters=20", "eval.per_step=true",
          "save_images=false", "sampler.annealing.num_steps=10", "sampler.mcmc.num_steps=5", "seed=3"]
RUNS = {"prune": COMMON, "branch": [*COMMON, "pruning.mode=branch", "pruning_keep=1"],
        "hmc": [*COMMON, "sampler.mcmc.algo=hmc", "sampler.mcmc.momentum=0.9", "sampler.mcmc.lr=1e-3"]}
# measurements of the machine, not results
VOLATILE = ("time_s", "memory_mb")


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if not str(k).endswith(VOLATILE) and k != "provenance"}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def records() -> dict:
    """run -> its images' records, stripped, as JSON would hold them."""
    import torch

    from pipeline.run import run
    from tests.conftest import compose

    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, overrides in RUNS.items():
            with tempfile.TemporaryDirectory() as d:
                metric = run(compose(*overrides, f"save_dir={d}", f"name={name}"))
            out[name] = json.loads(json.dumps(strip(metric["images"])))
    finally:
        torch.set_num_threads(threads)
    return out


if __name__ == "__main__":
    FILE.write_text(json.dumps(records(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {FILE} ({FILE.stat().st_size / 1024:.0f} KiB)")
