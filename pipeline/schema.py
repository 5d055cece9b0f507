"""Every setting of a run, declared once: the run's own flags here, each stage's flag and block in its module
(particle/, resample_opt/), every other block by the module that reads it. From these declarations come the config node Hydra
composes configs/default.yaml from (its `base`), the command line's flags and --help, and the check of every value
before any work."""
from __future__ import annotations

from pathlib import Path

from core.settings import Block, Setting, boolean, check_settings, choice, defaults, integer, optional, text
from stages import ordered

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _device_ok(v) -> bool:
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))


RUN_FLAGS = {
    "particle_num": integer(1, default=4, help="particles per measurement, one batch (4 = DAPS's protocol of four "
                                               "runs)"),
    "num_eval_images": integer(1, default=1, help="the first N images of the data set (1 sanity, 10 tuning, "
                                                  "100 final)"),
    "images_per_batch": integer(1, default=1, help="images sampled together, particle_num each (throughput; same "
                                                   "results up to round-off)"),
    "seed": integer(0, default=42, help="seed of every particle's and measurement's generator"),
    "particle_offset": integer(0, default=0, help="particle i of this run uses the generator of particle offset + i"),
    "name": optional(text(), help="the run's folder under save_dir (default: model, data, sampler and stage flags)"),
    "save_dir": text("results", help="results root"),
    "device": Setting("auto", _device_ok, "auto, cpu, cuda or cuda:N", "auto = cuda when available"),
    "dtype": choice("float32", "float64", default="float32", help="the sampler's floating-point type"),
    "resume": boolean(False, help="true: expect an earlier run in the folder (one of the same settings is always "
                                  "continued)"),
    "overwrite": boolean(False, help="true: replace the folder's earlier results (otherwise a run never writes over "
                                     "another)"),
    "save_images": boolean(True, help="true: PNGs of every particle, the answer and a labelled grid per image"),
}
FIRST_FLAGS = ("particle_num",)        # --help lists these, then the stages' flags, then the run's others


def flags() -> dict[str, Setting]:
    """Every top-level flag (accepted as --flag value): the run's own and each stage's, in --help's order."""
    stage_flags = {}
    for stage in ordered():
        stage_flags[stage.flag] = stage.flag_setting
        stage_flags.update(stage.more_flags)
    first = {k: RUN_FLAGS[k] for k in FIRST_FLAGS}
    return {**first, **stage_flags, **{k: v for k, v in RUN_FLAGS.items() if k not in first}}


def renamed(key: str) -> str:
    """A dotted key under its current name: a stage's old flag or block name (Stage.old_names) becomes today's, so
    what users typed before, and earlier runs' configs, still read."""
    head, dot, rest = key.partition(".")
    for stage in ordered():
        if head in stage.old_names:
            return stage.old_names[head] + dot + rest
    return key


def renamed_config(node):
    """A resolved config (a dict) with every old stage name replaced by today's (pipeline/run_folder.py)."""
    return {renamed(k): v for k, v in node.items()} if isinstance(node, dict) else node


def blocks() -> dict:
    """The blocks of the base config: each stage's, the orientation, the trust label and the evaluation settings."""
    from evaluation import orientation, perceptual, trajectory, trust

    out = {stage.name: stage.block for stage in ordered() if stage.block}
    out["orientation"] = orientation.SETTINGS
    out["trust"] = trust.SETTINGS
    out["eval"] = {**perceptual.SETTINGS, **trajectory.SETTINGS}
    return out


def schema() -> dict:
    """The whole run's schema: flags, blocks and the config groups' blocks (model, task, sampler, data)."""
    import data
    import models
    import sampler

    return {**flags(), **blocks(), "model": models.SETTINGS, "sampler": sampler.SETTINGS, "data": data.SETTINGS}


def register() -> None:
    """The `base` node of configs/default.yaml: every declared default (call before Hydra composes)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base", node={**defaults(flags()), **defaults(blocks())})


def check_declared(cfg) -> None:
    """Every declared setting of cfg against its declaration, and the task's operator against its own: a
    ConfigError naming the first bad one."""
    from omegaconf import OmegaConf

    import operators

    check_settings(OmegaConf.to_container(cfg, resolve=True), schema())
    operators.check_config(Block(OmegaConf.to_container(cfg.task, resolve=True)))


def compose(*overrides: str):
    """The config Hydra's entry point would compose from these overrides (for scripts and tests)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose("default", overrides=list(overrides))
