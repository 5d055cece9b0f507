"""A run's folder: its default name, the earlier run it continues (same settings) or must not destroy (others), and
clearing it for overwrite=true."""
from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import ConfigError
from pipeline.schema import renamed_config
from tracking.metric_file import read_json

# settings that change no result: a resumed run may differ in them (num_eval_images: more images extend the run)
# (images_per_batch is not among them: the times per image of two batch sizes would mix)
RESUMABLE = ("resume", "overwrite", "save_images", "num_eval_images", "save_dir")


def config_diff(a, b, prefix="") -> list[str]:
    """Dotted keys whose values differ between two resolved configs (for the resume refusal message)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix.rstrip(".") or "<root>"]
    return [d for k in sorted(set(a) | set(b), key=str)
            for d in config_diff(a.get(k), b.get(k), f"{prefix}{k}.")]


def added_at_default(key: str, old: dict, new: dict) -> bool:
    """A setting the earlier run's config does not have (added to the tool since) whose value now is its declared
    default: the earlier run ran as that default does, so the two are the same settings."""
    from core.settings import Setting
    from pipeline.schema import schema

    decl, node = schema(), old
    for part in key.split("."):
        if not isinstance(node, dict):
            return False
        if part not in node:
            node = None
            break
        node = node[part]
    if node is not None:
        return False
    value = new
    for part in key.split("."):
        decl = decl.get(part) if isinstance(decl, dict) else None
        value = value.get(part) if isinstance(value, dict) else None
    return isinstance(decl, Setting) and decl.default is not None and value == decl.default


def default_name(cfg, choices: dict | None = None) -> str:
    """What ran: model, data (marked `-decoded` when its ground truths are the model's reconstructions), sampler
    (config-group choices where Hydra gives them) and the stage flags that are on, repeated words dropped, e.g.
    `two_mode_p4`, `naturalldm_natural-decoded_p4` or `ffhq256ldm_demo-ffhq_hmc_p4_rep0.3_prune200k2`; each stage
    that is on adds its fragment (sampler/stage.py) and its block's settings that are not at their defaults."""
    choices = choices or {}
    from data.datasets import SETTINGS
    from pipeline.resolve import block, resolve

    settings = resolve(cfg)

    data = cfg.data.name + ("-decoded" if block(cfg.data, SETTINGS).ground_truth == "decoded" else "")
    task = choices.get("task", cfg.task.name)
    from pipeline.schema import flags

    # other particles of the same measurement (a restart: particle_offset), or another measurement (seed)
    particles = f"p{cfg.particle_num}" + (f"o{cfg.particle_offset}" if cfg.particle_offset else "")
    seed = [] if cfg.seed == flags()["seed"].default else [f"seed{cfg.seed}"]
    words = [choices.get("model", cfg.model.name), data, *([task] if task != "phase_retrieval" else []),
             choices.get("sampler") or _sampler_word(settings.sampler), particles, *seed]
    words += [stage.fragment(s) + changed_block(stage, cfg) for stage, s in settings.active]
    words += changed_groups(cfg, choices)
    return "_".join(dict.fromkeys(words))


def _sampler_word(sampler) -> str:
    """The sampler's word in a run name where Hydra gives no group choice: ReSample, or LatentDAPS's MCMC."""
    return "resample" if sampler.name == "resample" else sampler.mcmc.algo


# the config groups and blocks whose settings change what a run samples or answers, and the keys among them that do
# not (where the images come from, how many threads, which image first) or are named already
NAMED_GROUPS = ("model", "task", "sampler", "data", "orientation")
NOT_NAMED = ("data.root", "data.start_index", "data.ground_truth", "data.name", "model.cpu_threads", "model.goes_with",
             "model.name", "task.name", "sampler.for_model")


def _shown(v) -> str:
    """A setting's value in a run's name: numbers short, booleans and null lower-case, a path by its last part."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    return Path(str(v)).name if "/" in str(v) else str(v)


def changed_groups(cfg, choices: dict | None) -> list[str]:
    """The settings of the chosen model, task, sampler and data groups (and the orientation block, and dtype) that
    the command line moved away from their files' values, `<key><value>` each without the group (e.g.
    `mcmc.lr0.0001`, `annealing.num_steps20`): a run that samples differently never shares a default name. Only where
    Hydra named the groups (the command line); none when a script composes its config."""
    if not choices or not all(g in choices for g in ("model", "sampler", "data")):
        return []
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from pipeline.schema import compose

    groups = [f"{g}={choices[g]}" for g in ("model", "task", "sampler", "data") if g in choices]
    if GlobalHydra.instance().is_initialized():      # inside the command line's Hydra app: its own compose
        from hydra import compose as hydra_compose
        files = hydra_compose("default", overrides=groups)
    else:
        files = compose(*groups)
    base = OmegaConf.to_container(files, resolve=True)
    now = OmegaConf.to_container(cfg, resolve=True)
    words = [] if now.get("dtype") == base.get("dtype") else [f"{now.get('dtype')}"]
    for group in NAMED_GROUPS:
        for key in config_diff(base.get(group, {}), now.get(group, {}), f"{group}."):
            if key in NOT_NAMED:
                continue
            node = now
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            words.append(f"{key.split('.', 1)[1]}{_shown(node)}".replace("/", "_"))
    return words


def changed_block(stage, cfg) -> str:
    """A stage's block settings that differ from their declared defaults, `-<key><value>` each (e.g. refine200-eps0.001,
    prune200k2-modebranch): runs that sample differently never share a default name."""
    block = cfg.get(stage.name) if stage.block else None
    parts = [f"-{key}{_shown(block[key])}".replace("/", "_") for key, setting in stage.block.items()
             if block is not None and key in block and block[key] != setting.default]
    return "".join(parts)


def previous_run(cfg, out_dir: Path, resolved: dict) -> tuple[list, list, str | None]:
    """The earlier run in out_dir that this one continues: its images, its provenance records and a one-line note
    for the user (None when there is nothing to say). A folder of the same settings (up to RESUMABLE) is continued,
    so a repeated or interrupted command picks up where it stopped and more images extend the run; a ConfigError
    where continuing would mix settings or starting would destroy results."""
    metric_path = out_dir / "metric.json"
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"name={cfg.name}: {out_dir} is a file, not a run folder; pass another name=")
    if cfg.overwrite:
        return [], [], None
    if not metric_path.exists():
        note = f"resume=true but {out_dir} holds no earlier run: starting a new one" if cfg.resume else None
        return [], [], note
    try:
        old = read_json(metric_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{metric_path} cannot be read ({e}); move it away or pass overwrite=true") from None
    if not isinstance(old, dict) or not isinstance(old.get("images", []), list) or not all(
            isinstance(im, dict) and "index" in im for im in old.get("images", [])):
        raise ConfigError(f"{metric_path} is not a run's metric.json (no list of image records); move it away or pass "
                          f"overwrite=true")
    images = old.get("images", [])
    old_config = renamed_config(old.get("config", {}))          # a run made before a stage's rename continues
    keep = lambda c: {k: v for k, v in c.items() if k not in RESUMABLE}  # noqa: E731
    diff = [k for k in config_diff(keep(old_config), keep(resolved)) if not added_at_default(k, old_config, resolved)]
    if diff and images:
        shown = ", ".join(diff[:5]) + (f" (+{len(diff) - 5} more)" if len(diff) > 5 else "")
        raise ConfigError(f"{metric_path} holds {len(images)} image(s) run with other settings ({shown}): use the "
                          f"same settings to continue it, another name= for a new run, or overwrite=true to replace it")
    if diff or not images:
        return [], [], None
    # the finished images may come from other commits or machines: keep every earlier run's record
    earlier = old.get("provenance", {}).pop("earlier_runs", []) + [old.get("provenance")]
    return images, earlier, (f"continuing {out_dir}: {len(images)} image(s) of the same settings are done there "
                             f"and kept (overwrite=true redoes them)")


def discard_if_nothing_kept(out_dir: Path) -> None:
    """A run that stopped before its first image (bad input found late, Ctrl-C) keeps nothing, so it leaves no
    folder: this tool's files there (config.yaml, a metric.json without images) are removed, then the folder if
    that empties it. A folder holding a finished image, or anything else, is left as it is."""
    if not out_dir.is_dir():
        return
    metric = out_dir / "metric.json"
    try:
        if metric.exists() and read_json(metric).get("images"):
            return
    except (OSError, ValueError, AttributeError):
        return
    for name in ("metric.json", "config.yaml"):
        (out_dir / name).unlink(missing_ok=True)
    for folder in (out_dir / "images", out_dir):
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:                              # not empty: something else lives there
            return


def clear_outputs(out_dir: Path) -> None:
    """overwrite=true: this tool's outputs of an earlier run in out_dir, and nothing else."""
    for name in ("metric.json", "config.yaml"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "images", ignore_errors=True)
