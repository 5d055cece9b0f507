"""`--flag value` style experiment flags translated to Hydra overrides, and config validation."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .checks import ConfigError, check as _check, fail, is_int, is_number

# flag -> type used to check its value before Hydra sees it
FLAGS = {
    "particle_num": int, "repulsion_scale": float, "pruning_step": int, "optimization_step": int,
    "num_eval_images": int, "images_per_batch": int, "seed": int, "particle_offset": int, "pruning_keep": int,
    "name": str, "save_dir": str, "device": str, "dtype": str, "resume": bool, "save_images": bool,
    "overwrite": bool,
}
# what each flag means, for --help (the config keys of the same name; configs/default.yaml has the rest)
FLAG_HELP = {
    "particle_num": "particles per measurement, one batch (4 = DAPS's protocol of four runs)",
    "repulsion_scale": "initial repulsion strength, decaying to 0 (0 = independent particles; 0.3 recommended)",
    "pruning_step": "diffusion time t at which to prune to pruning_keep particles (-1 = off)",
    "optimization_step": "diffusion time t from which ReSample-style latent optimisation runs (-1 = off)",
    "num_eval_images": "the first N images of the data set (1 sanity, 10 tuning, 100 final)",
    "images_per_batch": "images sampled together, particle_num each (throughput; same results up to round-off)",
    "seed": "seed of every particle's and measurement's generator (integer >= 0)",
    "particle_offset": "particle i of this run uses the generator of particle offset + i",
    "pruning_keep": "particles kept per image at pruning_step (default 2)",
    "name": "the run's folder under save_dir (default: model, data, sampler and stage flags)",
    "save_dir": "results root (default results/)",
    "device": "auto | cpu | cuda | cuda:N",
    "dtype": "float32 | float64",
    "resume": "true: continue the folder's metric.json (same settings; more images allowed)",
    "save_images": "true: PNGs of every particle and a labelled grid per image",
    "overwrite": "true: replace the folder's earlier results (otherwise a run never writes over another)",
}


def parse_bool(value: str) -> bool:
    """true/false (any case), as Hydra reads YAML booleans; anything else is an error, not 'true'."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(value)


parse_bool.__name__ = "true/false"
# Hydra's own long options and whether they take a value
HYDRA_LONG = {"help": False, "hydra-help": False, "version": False, "cfg": True, "resolve": False,
              "package": True, "run": False, "multirun": False, "shell-completion": False,
              "config-path": True, "config-name": True, "config-dir": True, "info": False,
              "experimental-rerun": True}


def translate_argv(argv: list[str]) -> list[str]:
    """Rewrite `--particle_num 4` / `--particle_num=4` as `particle_num=4`; pass Hydra's options through."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            out.append(arg)
            i += 1
            continue
        key, eq, value = arg[2:].partition("=")
        if key in HYDRA_LONG:
            out.append(arg)
            if HYDRA_LONG[key] and not eq and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
            i += 1
            continue
        if key not in FLAGS:
            raise ConfigError(f"unknown flag --{key}; flags are: " + ", ".join(f"--{f}" for f in FLAGS)
                              + " (or any Hydra override key=value)")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        try:
            (parse_bool if FLAGS[key] is bool else FLAGS[key])(value)
        except ValueError:
            raise ConfigError(f"--{key}={value!r} is not a valid "
                          f"{'true/false' if FLAGS[key] is bool else FLAGS[key].__name__}") from None
        out.append(f"{key}={value}")
        i += 1
    return out


def validate(cfg) -> None:
    """Stop before any computation on an impossible setting."""
    _check(is_int(cfg.particle_num) and cfg.particle_num >= 1,
           f"particle_num={cfg.particle_num} is invalid: must be an integer >= 1")
    _check(is_number(cfg.repulsion_scale) and cfg.repulsion_scale >= 0,
           f"repulsion_scale={cfg.repulsion_scale} is invalid: must be a finite number >= 0 (0 = off)")
    for flag in ("pruning_step", "optimization_step"):
        v = cfg[flag]
        _check(is_int(v) and (v == -1 or 0 <= v <= 1000),
               f"{flag}={v} is invalid: must be -1 (off) or a diffusion time t in 0 … 1000")
    _check(is_int(cfg.num_eval_images) and cfg.num_eval_images >= 1,
           f"num_eval_images={cfg.num_eval_images} is invalid: must be an integer >= 1")
    _check(is_int(cfg.images_per_batch) and cfg.images_per_batch >= 1,
           f"images_per_batch={cfg.images_per_batch} is invalid: must be an integer >= 1")
    _check(is_int(cfg.particle_offset) and cfg.particle_offset >= 0,
           f"particle_offset={cfg.particle_offset} is invalid: must be an integer >= 0")
    if cfg.repulsion_scale > 0:
        _check(cfg.particle_num >= 2, "repulsion_scale > 0 needs particle_num >= 2 (repulsion acts between particles)")
    for key in ("resume", "save_images", "overwrite", "eval.per_step"):
        node, _, leaf = key.rpartition(".")
        value = (cfg[node] if node else cfg).get(leaf, False)
        _check(isinstance(value, bool), f"{key}={value!r} is invalid: must be true or false")
    _check(is_int(cfg.seed) and cfg.seed >= 0, f"seed={cfg.seed} is invalid: must be an integer >= 0")
    check_device(cfg.device)
    check_writable(cfg.save_dir)
    weights = cfg.eval.get("lpips_weights")
    _check(weights is None or (Path(str(weights)).is_file() and os.access(str(weights), os.R_OK)),
           f"eval.lpips_weights={weights} is not a readable file (null: torchvision's cache or a download)")
    _check(cfg.dtype in ("float32", "float64"), f"dtype={cfg.dtype} is invalid: must be float32 or float64")
    from evaluation.perceptual import VARIANTS
    _check(cfg.eval.get("lpips_variant") in VARIANTS,
           f"eval.lpips_variant={cfg.eval.get('lpips_variant')!r} is invalid: must be one of {', '.join(VARIANTS)}")
    _check(cfg.sampler.precision.decoder in ("fp32", "bf16"),
           f"sampler.precision.decoder={cfg.sampler.precision.decoder} is invalid: must be fp32 or bf16")
    want = cfg.sampler.get("for_model")
    if want is not None and want != cfg.model.name:
        choice = "sampler=langevin or sampler=hmc" if cfg.model.name == "ldm" else f"sampler={cfg.model.name}"
        raise ConfigError(f"the sampler preset is tuned for model {want!r} but model.name={cfg.model.name!r}: "
                          f"use {choice}")
    benchmarks = ("two_mode", "two_mode_latent")       # their data are the models' own mixture components
    if cfg.model.name in benchmarks or cfg.data.name in benchmarks:
        _check(cfg.data.name == cfg.model.name,
               f"model={cfg.model.name} and data={cfg.data.name} do not go together: the benchmarks run on their "
               f"own data (model=X sampler=X data=X with X = two_mode or two_mode_latent)")
    if cfg.model.name in benchmarks:
        w = cfg.model.get("rotated_weight", 1.0)
        _check(is_number(w) and w > 0, f"model.rotated_weight={w} is invalid: must be a number > 0 (1 = symmetric)")
    from evaluation.orientation import METHODS
    o = cfg.orientation
    _check(o.method in METHODS, f"orientation.method={o.method} is invalid: must be one of {', '.join(METHODS)}")
    _check(o.method != "exact" or cfg.model.name in benchmarks,
           "orientation.method=exact needs a model with an exact density (the two-mode benchmarks): use auto or elbo")
    _check(is_int(o.elbo_evals) and o.elbo_evals >= 2, f"orientation.elbo_evals={o.elbo_evals} is invalid: "
                                                        f"must be an integer >= 2")
    _check(is_number(o.sigma_min) and is_number(o.sigma_max) and 0 < o.sigma_min < o.sigma_max,
           f"orientation.sigma_min={o.sigma_min}, sigma_max={o.sigma_max}: must be numbers with 0 < min < max")
    if cfg.model.name == "ldm" and cfg.data.get("resolution") is not None:
        size = cfg.model.first_stage.ddconfig.resolution
        _check(cfg.data.resolution == size, f"data={cfg.data.name} has {cfg.data.resolution}x{cfg.data.resolution} images "
                                            f"but the model makes {size}x{size} ones: pick a data set of its size")
    if cfg.data.name == "digits":
        _check(cfg.data.get("split") in ("test", "train"),
               f"data.split={cfg.data.get('split')!r} is invalid: must be test or train")
    if cfg.data.name == "two_mode_latent":
        _check(cfg.data.get("ground_truth") in ("decoded", "raw"),
               f"data.ground_truth={cfg.data.get('ground_truth')!r} is invalid: must be decoded or raw")
    # each stage checks its own config block; building the hooks is cheap and loads no model
    from pipeline.run import build_hooks, phase_boundaries
    build_hooks(cfg, *phase_boundaries(cfg))


def check_device(name) -> None:
    """auto, cpu, cuda or cuda:N, and a CUDA device only where one exists."""
    import torch

    _check(isinstance(name, str) and (name in ("auto", "cpu", "cuda") or
                                      (name.startswith("cuda:") and name[5:].isdigit())),
           f"device={name} is invalid: must be auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        _check(count > index, f"device={name} but this machine has {count} CUDA device(s) (torch {torch.__version__}"
                              f"{'' if torch.version.cuda else ', a CPU-only build'}): use device=auto or device=cpu")


def check_writable(save_dir) -> None:
    """save_dir, or the nearest folder above it that exists, takes a file (tried with a temporary one, which leaves
    nothing behind)."""
    import tempfile

    p = Path(str(save_dir)).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise ConfigError(f"save_dir={save_dir} cannot be written ({p}: {e.strerror or e})") from None


def main_argv() -> list[str]:
    """sys.argv with flags translated; prints a one-line error and exits 2 on a bad flag."""
    try:
        return [sys.argv[0], *translate_argv(sys.argv[1:])]
    except ConfigError as e:
        fail(str(e))
