"""The command line: `--flag value` style experiment flags translated to Hydra overrides, and the one way out for
bad input (one line on stderr, exit status 2)."""
from __future__ import annotations

import sys
from pathlib import Path

from core.errors import ConfigError

def int_or_list(value: str):
    """An integer or a bracketed list of them, as Hydra writes one: 200, or [600,400,200] (a schedule)."""
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        return [int(v) for v in text[1:-1].split(",")]
    return int(text)


int_or_list.__name__ = "integer or [list of integers]"

# flag -> type used to check its value before Hydra sees it
FLAGS = {
    "particle_num": int, "repulsion_scale": float, "pruning_step": int_or_list, "optimization_step": int,
    "resampling_interval": int,
    "num_eval_images": int, "images_per_batch": int, "seed": int, "particle_offset": int, "pruning_keep": int_or_list,
    "name": str, "save_dir": str, "device": str, "dtype": str, "resume": bool, "save_images": bool,
    "overwrite": bool,
}
# what each flag means, for --help (the config keys of the same name; configs/default.yaml has the rest)
FLAG_HELP = {
    "particle_num": "particles per measurement, one batch (4 = DAPS's protocol of four runs)",
    "repulsion_scale": "initial repulsion strength, decaying to 0 (0 = independent particles, recommended)",
    "pruning_step": "diffusion time t at which to prune to pruning_keep particles (-1 = off), or a list (a schedule)",
    "optimization_step": "diffusion time t from which ReSample-style latent optimisation runs (-1 = off)",
    "resampling_interval": "annealing steps between loss-guided resampling events in the resampling window (0 = off)",
    "num_eval_images": "the first N images of the data set (1 sanity, 10 tuning, 100 final)",
    "images_per_batch": "images sampled together, particle_num each (throughput; same results up to round-off)",
    "seed": "seed of every particle's and measurement's generator (integer >= 0)",
    "particle_offset": "particle i of this run uses the generator of particle offset + i",
    "pruning_keep": "particles kept per image at pruning_step (default 2); a list for a schedule: [4,2,1]",
    "name": "the run's folder under save_dir (default: model, data, sampler and stage flags)",
    "save_dir": "results root (default results/)",
    "device": "auto | cpu | cuda | cuda:N",
    "dtype": "float32 | float64",
    "resume": "true: expect an earlier run in the folder (one of the same settings is always continued)",
    "save_images": "true: PNGs of every particle and a labelled grid per image",
    "overwrite": "true: replace the folder's earlier results (otherwise a run never writes over another)",
}


def fail(message: str, code: int = 2):
    """The command line's way out: one line on stderr, no traceback; 2 = bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


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


# Hydra's options that take the next argument as their value (long and short forms)
VALUE_OPTIONS = {f"--{k}" for k, v in HYDRA_LONG.items() if v} | {"-c", "-p", "-cp", "-cn", "-cd"}


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


def check_overrides(argv: list[str], config_dir) -> None:
    """Compose the config from the command line's overrides as Hydra will, so that an unknown key (in any form), an
    unknown group choice or a malformed override is a ConfigError of one line, not Hydra's multi-line error.
    Hydra's own settings (hydra.*, hydra/...) are Hydra's to check; a sweep (a,b,c) is checked at its first value."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError

    overrides, skip = [], False
    for a in argv:                       # Hydra's own options and their values are not overrides
        if skip or a.startswith("-"):
            skip = not skip and a in VALUE_OPTIONS
            continue
        overrides.append(a)
    plain = []
    for text in overrides:
        try:
            (override,) = OverridesParser.create().parse_overrides([text])
        except OverrideParseException:
            raise ConfigError(f"cannot read {text!r}: write key=value (or --flag value)") from None
        key = override.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        if override.is_add() or override.is_force_add() or override.is_delete():
            raise ConfigError(f"{text!r}: this tool takes no new keys and removes none; see python posterior_sample.py "
                              f"--help or configs/default.yaml for the settings")
        value = next(override.sweep_string_iterator()) if override.is_sweep_override() else override.value()
        plain.append(f"{key}={value}" if override.is_sweep_override() else text)
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            compose("default", overrides=plain)
    except MissingConfigException as e:
        group = str(e).split("'")[3].split("/")[0] if str(e).count("'") >= 4 else "a group"
        options = sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))
        choice = next((o for o in plain if o.startswith(f"{group}=")), group)
        raise ConfigError(f"{choice} is no choice of {group}: one of {', '.join(options)}") from None
    except HydraException as e:
        cause = e.__cause__
        key = next((o.split("=", 1)[0] for o in plain if f"'{o.split('=', 1)[0]}'" in str(e)), None)
        if isinstance(cause, ConfigAttributeError) and key:
            group = key.split(".")[0]
            where = (f" of {group}={_choice(plain, group)}"
                     if (Path(config_dir) / group).is_dir() and "." in key else "")
            raise ConfigError(f"unknown key {key}: not a setting{where} (python posterior_sample.py --help lists the "
                              f"flags, configs/ the rest)") from None
        raise ConfigError(str(e).strip().splitlines()[0]) from None


def _choice(overrides: list[str], group: str) -> str:
    """The group's choice on the command line, else its default in configs/default.yaml."""
    for o in overrides:
        if o.startswith(f"{group}="):
            return o.split("=", 1)[1]
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" /
                                                     "default.yaml").defaults)
    return next((d[group] for d in defaults if isinstance(d, dict) and group in d), "its default")


def main_argv(config_dir) -> list[str]:
    """sys.argv with flags translated and every override checked; prints a one-line error and exits 2 on a bad
    one."""
    try:
        argv = translate_argv(sys.argv[1:])
        if not any(a.split("=")[0] in ("--help", "-h", "--hydra-help", "--version", "--info", "-i",
                                       "--shell-completion", "-sc") for a in argv):
            check_overrides(argv, config_dir)
        return [sys.argv[0], *argv]
    except ConfigError as e:
        fail(str(e))
