"""The model, sampler and data choices that go together, declared once: each model config's `goes_with` line
(configs/model/*.yaml, e.g. `model=ffhq256ldm sampler=langevin|hmc data=test-ffhq|demo-ffhq|ffhq`). From them come
the stacks the studies and sweeps run (the first sampler and data of each), the combinations --help lists, the hints,
and the experiment scripts' choice of model for a data set (`python -m pipeline.stacks --data SET`)."""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SAMPLERS = ("langevin", "hmc")                    # a full-size stack's sampler choices


@lru_cache(maxsize=None)
def pairings() -> dict[str, dict[str, list[str]]]:
    """model choice -> {"model": [it], "sampler": [choices], "data": [choices]}, in --help's order: the benchmarks,
    the mini LDMs, the full-size LDMs (the first data choice of each is the one its study measures)."""
    import yaml

    out = {}
    for path in sorted((CONFIGS / "model").glob("*.yaml")):
        line = yaml.safe_load(path.read_text()).get("goes_with")
        if line:
            out[path.stem] = {k: v.split("|") for k, v in (word.split("=") for word in line.split())}
    return {k: out[k] for k in sorted(out, key=lambda n: (out[n]["sampler"] == list(SAMPLERS),
                                                           not n.startswith("two_mode"), n != "two_mode", n))}


def full_size() -> tuple[str, ...]:
    """The models that run only on GPUs: those whose samplers are the full-size presets (langevin, hmc)."""
    return tuple(m for m, p in pairings().items() if p["sampler"] == list(SAMPLERS))


STACKS = {m: (f"model={m}", f"sampler={p['sampler'][0]}", f"data={p['data'][0]}") for m, p in pairings().items()}
FULL_SIZE = full_size()


def stack(name: str, sampler: str | None = None) -> list[str]:
    """The overrides of a stack; sampler (full-size stacks only): langevin (default) or hmc."""
    out = list(STACKS[name])
    if sampler is not None:
        if name not in FULL_SIZE or sampler not in SAMPLERS:
            from core.errors import ConfigError
            raise ConfigError(f"--sampler {sampler} is for the full-size stacks ({', '.join(FULL_SIZE)}), one of "
                              f"{', '.join(SAMPLERS)}")
        out[1] = f"sampler={sampler}"
    return out


def for_data(data: str, sampler: str) -> list[str]:
    """The model, sampler and data choices a data set runs with (the experiment scripts' --data and --demo)."""
    for model, p in pairings().items():
        if data in p["data"]:
            return [f"model={model}", f"sampler={sampler if p['sampler'] == list(SAMPLERS) else p['sampler'][0]}",
                    f"data={data}"]
    raise SystemExit(f"error: no model goes with data={data}")


def help_lines() -> list[str]:
    """--help's table of the combinations that go together."""
    lines = []
    for model, p in pairings().items():
        words = [f"model={model}", f"sampler={'|'.join(p['sampler'])}", f"data={'|'.join(p['data'])}"]
        lines.append(f"  {words[0]:<22} {words[1]:<24} {words[2]}" + ("          (the default)" if model == "two_mode"
                                                                     else ""))
    return lines


if __name__ == "__main__":                     # python -m pipeline.stacks --data SET [--sampler S]: one per line
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    print("\n".join(for_data(args["--data"], args.get("--sampler", "langevin"))))
