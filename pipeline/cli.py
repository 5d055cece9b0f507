"""`--flag value` style experiment flags translated to Hydra overrides, and config validation."""
from __future__ import annotations

import sys

# flag -> type used to check its value before Hydra sees it
FLAGS = {
    "particle_num": int, "repulsion_scale": float, "pruning_step": int, "optimization_step": int,
    "num_eval_images": int, "images_per_batch": int, "seed": int, "particle_offset": int, "pruning_keep": int,
    "name": str, "save_dir": str, "device": str, "dtype": str, "resume": str, "save_images": str,
}
# Hydra's own long options and whether they take a value
HYDRA_LONG = {"help": False, "hydra-help": False, "version": False, "cfg": True, "resolve": False,
              "package": True, "run": False, "multirun": False, "shell-completion": False,
              "config-path": True, "config-name": True, "config-dir": True, "info": False,
              "experimental-rerun": True}


class ConfigError(ValueError):
    """A bad flag or an impossible combination; the message is one line naming the flag and its valid range."""


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
            FLAGS[key](value)
        except ValueError:
            raise ConfigError(f"--{key}={value!r} is not a valid {FLAGS[key].__name__}") from None
        out.append(f"{key}={value}")
        i += 1
    return out


def is_int(v) -> bool:
    """An int that is not a bool (YAML's true would pass isinstance(v, int))."""
    return isinstance(v, int) and not isinstance(v, bool)


def _check(ok: bool, message: str):
    if not ok:
        raise ConfigError(message)


def validate(cfg) -> None:
    """Stop before any computation on an impossible setting."""
    _check(is_int(cfg.particle_num) and cfg.particle_num >= 1,
           f"particle_num={cfg.particle_num} is invalid: must be an integer >= 1")
    _check(isinstance(cfg.repulsion_scale, (int, float)) and cfg.repulsion_scale >= 0,
           f"repulsion_scale={cfg.repulsion_scale} is invalid: must be a number >= 0 (0 = off)")
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
    _check(isinstance(cfg.eval.get("per_step", False), bool),
           f"eval.per_step={cfg.eval.get('per_step')!r} is invalid: must be true or false")
    _check(cfg.dtype in ("float32", "float64"), f"dtype={cfg.dtype} is invalid: must be float32 or float64")
    from evaluation.perceptual import VARIANTS
    _check(cfg.eval.get("lpips_variant") in VARIANTS,
           f"eval.lpips_variant={cfg.eval.get('lpips_variant')!r} is invalid: must be one of {', '.join(VARIANTS)}")
    _check(cfg.sampler.precision.decoder in ("fp32", "bf16"),
           f"sampler.precision.decoder={cfg.sampler.precision.decoder} is invalid: must be fp32 or bf16")
    want = cfg.sampler.get("for_model")
    if want is not None and want != cfg.model.name:
        choice = "sampler=langevin or sampler=hmc" if cfg.model.name == "ldm" else "sampler=two_mode"
        raise ConfigError(f"the sampler preset is tuned for model {want!r} but model.name={cfg.model.name!r}: "
                          f"use {choice}")
    if cfg.model.name == "two_mode":
        _check(cfg.data.name == "two_mode", f"model=two_mode runs on data=two_mode, not data={cfg.data.name}")
    else:
        _check(cfg.data.name != "two_mode", "data=two_mode needs model=two_mode")
    # each stage checks its own config block; building the hooks is cheap and loads no model
    from pipeline.run import build_hooks, phase_boundaries
    build_hooks(cfg, *phase_boundaries(cfg))


def main_argv() -> list[str]:
    """sys.argv with flags translated; prints a one-line error and exits 2 on a bad flag."""
    try:
        return [sys.argv[0], *translate_argv(sys.argv[1:])]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
