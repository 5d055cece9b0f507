"""Entry point: particle LatentDAPS for phase retrieval. `python posterior_sample.py [--flag value | key=value ...]`."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from core.errors import ToolError
from pipeline import report
from pipeline.cli import fail, main_argv
from pipeline.schema import flags, register

CONFIGS = Path(__file__).resolve().parent / "configs"


def interrupted_note(cfg) -> str:
    """What an interrupt leaves, as it is: the finished images in metric.json, or nothing."""
    from pathlib import Path

    from tracking.metric_file import read_json

    path = Path(cfg.save_dir) / str(cfg.name) / "metric.json"
    try:
        done = len(read_json(path).get("images", [])) if cfg.name is not None and path.exists() else 0
    except (OSError, ValueError, AttributeError, TypeError):
        done = 0
    if not done:
        return "no image had finished, so no result was kept"
    return f"{done} finished image(s) are kept in {path}; the same command continues the run"


HELP_EXAMPLES = """Examples:
  python posterior_sample.py --num_eval_images 3                   # the embedded two-mode benchmark, CPU seconds
  python posterior_sample.py model=digits32ldm sampler=digits32ldm data=digits --num_eval_images 2
                                                                   # the mini LDM shipped in weights/, CPU
  python posterior_sample.py model=ffhq256ldm sampler=hmc data=demo-ffhq data.root=PATH --particle_num 4
                                                                   # a real LDM (bash scripts/download_checkpoints.sh)
"""


def print_help() -> None:
    """A short page: examples, the valid combinations, the experiment flags; the full config behind --cfg job."""
    print("posterior_sample.py: particle LatentDAPS for Fourier phase retrieval (README.md, docs/)\n")
    from pipeline.stacks import help_lines

    print(HELP_EXAMPLES)
    print("Models, samplers and data that go together (each model config's goes_with line):")
    print("\n".join(help_lines()) + "\n")
    print("Experiment flags (--flag value, --flag=value, or flag=value):")
    for flag, setting in flags().items():
        default = "null" if setting.default is None else str(setting.default).lower() \
            if isinstance(setting.default, bool) else setting.default
        shown = "" if "default" in setting.help else f" (default {default})"
        print(f"  --{flag:<18} {setting.help}{shown}")
    print("\nAny other setting is an override, e.g. refine.lr=1e-3: --settings lists them all with their valid "
          "values,\n--cfg job prints the whole resolved config (with the overrides given), --hydra-help Hydra's own "
          "options.")


def print_settings(overrides: list[str]) -> None:
    """Every declared setting: its key, its value (the default, or as the given overrides and group choices make
    it), valid values and help (pipeline/schema.py)."""
    from omegaconf import OmegaConf

    import operators
    from core.settings import choice, help_lines
    from pipeline.schema import compose, schema

    cfg = OmegaConf.to_container(compose(*[o for o in overrides if not o.startswith("-")]), resolve=True)

    def value(key):
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return "(unset)"
            node = node[part]
        return json.dumps(node) if isinstance(node, (str, list, dict)) else str(node).lower() \
            if isinstance(node, bool) or node is None else str(node)

    print("Settings (key = value with the choices given, default otherwise: valid values; what it does). The model, "
          "task, sampler and data blocks come from the config groups' YAML files.\n")
    # the task block: the chosen operator's own settings (operators/<name>.py, SETTINGS)
    chosen = operators.OPERATORS[cfg["task"]["operator"]["name"]]
    task = {"task": {"operator": {"name": choice(*operators.OPERATORS, help="the forward operator"),
                                  **chosen.SETTINGS}}}
    for key, what, text in help_lines(schema()) + help_lines(task):
        print(f"  {key} = {value(key)}: {what}" + (f"; {text}" if text else ""))


@hydra.main(version_base="1.3", config_path="configs", config_name="default")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from pipeline.run import run
    from pipeline.run_folder import discard_if_nothing_kept

    def discard():                                    # a run that kept nothing leaves no folder
        if cfg.name is not None:
            discard_if_nothing_kept(Path(cfg.save_dir) / str(cfg.name))

    try:
        metric = run(cfg, sys.argv, dict(HydraConfig.get().runtime.choices))
    except ToolError as e:                            # bad input: the message says what to do
        discard()
        fail(str(e))
    except KeyboardInterrupt:
        note = interrupted_note(cfg)
        discard()
        print(f"interrupted: {note}", file=sys.stderr)
        raise SystemExit(130)
    except Exception as e:                            # a bug, not bad input: one line, the traceback in a file
        discard()
        fd, path = tempfile.mkstemp(prefix="posterior_sample-", suffix=".log")
        with open(fd, "w") as f:
            traceback.print_exc(file=f)
        fail(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} (full traceback in {path})", 1)
    if metric["images"]:
        report.finish(metric["summary"])
    if HydraConfig.get().mode.name == "MULTIRUN":
        # submitit names its folder before it knows the job id: the empty `%j` folder it leaves is not a result
        try:
            (Path(HydraConfig.get().sweep.dir) / ".submitit" / "%j").rmdir()
        except OSError:
            pass
    print(f"results: {cfg.save_dir}/{cfg.name}")


def entry() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print_help()
        raise SystemExit(0)
    if "--settings" in sys.argv[1:]:
        from pipeline.cli import translate_argv

        try:
            print_settings(translate_argv([a for a in sys.argv[1:] if a != "--settings"]))
        except ToolError as e:
            fail(str(e))
        raise SystemExit(0)
    register()
    sys.argv = main_argv(CONFIGS)
    # jobs a launcher starts in other processes (submitit, local or SLURM) import this repository's packages too
    root = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
    main()


if __name__ == "__main__":
    try:
        entry()
    except BrokenPipeError:                    # the reader went away (| head): stop quietly, as a pipe expects
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0)
