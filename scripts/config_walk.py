"""Where the config goes: run one posterior_sample run in this process under a profiler and list every function of
the tool that receives a config node (an OmegaConf DictConfig or ListConfig) as an argument, and which receive the
whole config. docs/architecture.md reports its output; tests/test_layout.py holds the line (below pipeline/, only
the builders take a config group, and nothing takes the whole config).

    python scripts/config_walk.py                        # the default run, every stage on, tiny steps
    python scripts/config_walk.py --json walk.json sampler=naturalldm_resample model=naturalldm data=natural
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the entry and the layer that composes, checks and resolves the config: they hold it by design
HOLDERS = ("posterior_sample.py", "pipeline/", "scripts/", "tests/", "parse_metrics.py")
# below pipeline/, the modules allowed a config group: the builders that turn one into a model, an operator, a data set
BUILDERS = ("models/__init__.py", "operators/__init__.py", "data/datasets.py")
EVERY_STAGE = ["repulsion_scale=0.3", "resampling_interval=1", "pruning_step=500", "refine_step=300",
               "refine.max_iters=2", "sampler.annealing.num_steps=4", "sampler.mcmc.num_steps=2", "save_images=false"]


def walk(overrides: list[str]) -> dict:
    """Run the config these overrides compose (pipeline.run.run, in a temporary folder) and record every call of
    the tool's own code with a config node among its arguments."""
    from omegaconf import DictConfig, ListConfig

    from pipeline.run import run
    from pipeline.schema import compose

    cfg = compose(*overrides, f"save_dir={tempfile.mkdtemp(prefix='config_walk-')}")
    calls: Counter = Counter()
    whole: Counter = Counter()
    root = str(ROOT) + os.sep

    def profile(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        path = code.co_filename
        if not path.startswith(root) or "/.venv/" in path or "/site-packages/" in path:
            return
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        values = [frame.f_locals.get(n) for n in names]
        nodes = [v for v in values if isinstance(v, (DictConfig, ListConfig))]
        if nodes:
            where = (path[len(root):], code.co_name)
            calls[where] += 1
            if any(v is cfg for v in nodes):
                whole[where] += 1

    sys.setprofile(profile)
    try:
        run(cfg)
    finally:
        sys.setprofile(None)
    below = sorted({f for f, _ in calls if not f.startswith(HOLDERS)})
    return {"overrides": overrides,
            "functions": [{"file": f, "function": fn, "calls": n, "whole_config": whole.get((f, fn), 0)}
                          for (f, fn), n in sorted(calls.items())],
            "files": sorted({f for f, _ in calls}),
            "files_below_pipeline": below,
            "not_builders": [f for f in below if f not in BUILDERS],
            "whole_config_below_pipeline": sorted({f for f, _ in whole if not f.startswith(HOLDERS)})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (default: every stage on, tiny steps)")
    parser.add_argument("--json", help="write the whole walk here")
    args = parser.parse_args()
    out = walk(args.overrides or EVERY_STAGE)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{'file':<34} {'function':<28} {'calls':>6} {'whole':>6}")
    for f in out["functions"]:
        print(f"{f['file']:<34} {f['function']:<28} {f['calls']:>6} {f['whole_config']:>6}")
    print(f"{len(out['functions'])} functions in {len(out['files'])} files receive a config node; below pipeline/: "
          f"{', '.join(out['files_below_pipeline']) or 'none'}; the whole config below pipeline/: "
          f"{', '.join(out['whole_config_below_pipeline']) or 'none'}")
    sys.exit(1 if out["not_builders"] or out["whole_config_below_pipeline"] else 0)


if __name__ == "__main__":
    main()
