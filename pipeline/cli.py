"""The command line: `--flag value` style experiment flags translated to Hydra overrides, and the one way out for
bad input (one line on stderr, exit status 2)."""
from __future__ import annotations

import sys
from pathlib import Path

from core.errors import ConfigError
from pipeline.schema import flags, register, renamed


def did_you_mean(word: str, options) -> str:
    """ " (did you mean X?)" for the closest of the options (the standard library's difflib), or ""."""
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def fail(message: str, code: int = 2):
    """The command line's way out: one line on stderr, no traceback; 2 = bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


# Hydra's own long options and whether they take a value
HYDRA_LONG = {"help": False, "hydra-help": False, "version": False, "cfg": True, "resolve": False,
              "package": True, "run": False, "multirun": False, "shell-completion": False,
              "config-path": True, "config-name": True, "config-dir": True, "info": False,
              "experimental-rerun": True}


# Hydra's options that take the next argument as their value (long and short forms)
VALUE_OPTIONS = {f"--{k}" for k, v in HYDRA_LONG.items() if v} | {"-c", "-p", "-cp", "-cn", "-cd"}


def _current(key: str) -> str:
    """A stage's old name (optimization_step, optimization.lr) as today's, with a note saying so on stderr."""
    now = renamed(key)
    if now != key:
        print(f"note: {key} is called {now} now (the old name still works)", file=sys.stderr)
    return now


def translate_argv(argv: list[str]) -> list[str]:
    """Rewrite `--particle_num 4` / `--particle_num=4` as `particle_num=4` and a stage's old names as today's; pass
    Hydra's options through."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") and "=" in arg:
            key, _, value = arg.partition("=")
            arg = f"{_current(key)}={value}"
        if not arg.startswith("--"):
            out.append(arg)
            i += 1
            continue
        key, eq, value = arg[2:].partition("=")
        key = _current(key)
        if key in HYDRA_LONG:
            out.append(arg)
            if HYDRA_LONG[key] and not eq and i + 1 < len(argv):
                out.append(argv[i + 1])
                i += 1
            i += 1
            continue
        names = flags()
        if key not in names:
            hint = did_you_mean(f"--{key}", [f"--{f}" for f in names])
            raise ConfigError(f"unknown flag --{key}{hint}; flags are: " + ", ".join(f"--{f}" for f in names)
                              + " (or any Hydra override key=value)")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value")
            value = argv[i + 1]
            i += 1
        out.append(f"{key}={value}")      # its value is checked with every other setting (pipeline/schema.py)
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
        register()
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            compose("default", overrides=plain)
    except MissingConfigException as e:
        group = str(e).split("'")[3].split("/")[0] if str(e).count("'") >= 4 else "a group"
        options = sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))
        choice = next((o for o in plain if o.startswith(f"{group}=")), group)
        value = choice.split("=", 1)[-1]
        raise ConfigError(f"{choice} is no choice of {group}{did_you_mean(value, options)}: one of "
                          f"{', '.join(options)}") from None
    except HydraException as e:
        cause = e.__cause__
        key = next((o.split("=", 1)[0] for o in plain if f"'{o.split('=', 1)[0]}'" in str(e)), None)
        if isinstance(cause, ConfigAttributeError) and key:
            group = key.split(".")[0]
            where = (f" of {group}={_choice(plain, group)}"
                     if (Path(config_dir) / group).is_dir() and "." in key else "")
            parent, _, last = key.rpartition(".")
            siblings = [k.rpartition(".")[2] for k in known_keys(config_dir, plain) if k.rpartition(".")[0] == parent]
            hint = did_you_mean(last, siblings).replace("mean ", f"mean {parent}." if parent else "mean ")
            raise ConfigError(f"unknown key {key}{hint}: not a "
                              f"setting{where} (python posterior_sample.py --help lists the flags, configs/ the "
                              f"rest)") from None
        raise ConfigError(str(e).strip().splitlines()[0]) from None


def known_keys(config_dir, overrides: list[str]) -> list[str]:
    """Every dotted key of the config these overrides' group choices compose (for "did you mean")."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    groups = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0]
              and (Path(config_dir) / o.split("=", 1)[0]).is_dir()]
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("default", overrides=groups))

    def walk(node, prefix=""):
        for k, v in node.items():
            yield f"{prefix}{k}"
            if isinstance(v, dict):
                yield from walk(v, f"{prefix}{k}.")
    return list(walk(cfg))


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
        if any(a in ("--multirun", "-m") for a in argv) and not any(a.startswith("name=") for a in argv):
            raise ConfigError("--multirun needs name=: every job is a run folder save_dir/NAME, so name the jobs by "
                              "what they sweep, e.g. 'name=rep${repulsion_scale}' (single quotes keep the shell off "
                              "the $)")
        if not any(a.split("=")[0] in ("--help", "-h", "--hydra-help", "--version", "--info", "-i",
                                       "--shell-completion", "-sc") for a in argv):
            check_overrides(argv, config_dir)
        return [sys.argv[0], *argv]
    except ConfigError as e:
        fail(str(e))
