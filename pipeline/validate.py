"""Every check of a run's config before any work: each setting's own range from its declaration, then the checks
across settings, each by the module that owns them (stages, data, sampler, evaluation); a ConfigError names the first
bad setting."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from core.errors import ConfigError, check


def validate(cfg, machine: bool = True):
    """Stop before any computation on an impossible setting: every declared setting's own range (pipeline/schema.py),
    then what settings must satisfy together, each checked by the module that owns it; returns the run's settings
    resolved once (pipeline/settings.RunSettings), whose making checks the stages'. machine=False leaves out what
    depends on the machine that will run it (its device, free memory, writable folders, the checkpoint file): a
    study's plan checks its jobs here for a cluster's GPUs."""
    import data
    import evaluation.orientation
    import models
    import evaluation.perceptual
    from pipeline import schema
    from pipeline.resolve import block, resolve

    schema.check_declared(cfg)
    check_sampler(cfg)
    if machine:
        check_device(cfg.device)
        check_writable(cfg.save_dir)
    want = cfg.sampler.get("for_model")
    if want is not None and want != cfg.model.name:
        raise ConfigError(f"the sampler preset is tuned for model {want!r} but model.name={cfg.model.name!r}: "
                          f"use {cfg.model.goes_with} (this model's), or {' or '.join(combinations(want))} (this "
                          f"sampler's)")
    data.check_config(block(cfg.data), block(cfg.model))
    if machine:
        models.check_config(block(cfg.model))
        check_memory(cfg)
    evaluation.perceptual.check_config(block(cfg.eval))
    evaluation.orientation.check_config(block(cfg.orientation), cfg.model.name)
    return resolve(cfg)                     # each stage's settings checked as they are made (ReSample: none)


def check_sampler(cfg) -> None:
    """The sampler's blocks present and consistent: LatentDAPS's schedule; ReSample's own loop, which no stage hooks
    into (each stage is refused in one line)."""
    from pipeline.resolve import sampler_name, stage_values
    from stages import ordered

    if sampler_name(cfg) == "resample":
        check("resample" in cfg.sampler, "sampler.name=resample needs a `resample:` block (configs/sampler/resample.yaml)")
        for stage in ordered():
            check(not stage.is_on(stage_values(stage, cfg)),
                  f"{stage.flag}={cfg[stage.flag]} turns on the {stage.name} stage, a LatentDAPS stage that ReSample's "
                  f"loop does not run: leave it off with sampler=resample")
        return
    for block in ("annealing", "ode", "mcmc"):
        check(block in cfg.sampler, f"the sampler preset has no `{block}:` block, which LatentDAPS needs")
    a = cfg.sampler.annealing
    check(a.sigma_max > a.sigma_min, f"sampler.annealing.sigma_max={a.sigma_max} is not above sigma_min={a.sigma_min}")


def combinations(family: str) -> list[str]:
    """The model, sampler and data choices each model of a family runs with (its config's goes_with line)."""
    from omegaconf import OmegaConf

    models = sorted((Path(__file__).resolve().parents[1] / "configs" / "model").glob("*.yaml"))
    return [str(m.goes_with) for m in map(OmegaConf.load, models) if m.get("name") == family and m.get("goes_with")]


def check_device(name) -> None:
    """A CUDA device only where one exists (the schema checked the name)."""
    import torch

    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        check(count > index, f"device={name} but this machine has {count} CUDA device(s) (torch {torch.__version__}"
                             f"{'' if torch.version.cuda else ', a CPU-only build'}): use device=auto or device=cpu")


def available_memory(device) -> int:
    """Bytes free now: the CUDA device's free memory, or the machine's available physical memory (Linux's
    MemAvailable, which counts the page cache the kernel gives back; bare free pages miss it and under-report a
    busy machine by gigabytes)."""
    import os

    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


@functools.lru_cache(maxsize=16)
def _per_particle(model_yaml: str, dtype_bytes: int) -> float:
    from omegaconf import OmegaConf

    import models
    from pipeline.resolve import block
    from tracking.memory import memory_per_particle

    return memory_per_particle(block(OmegaConf.create(model_yaml), models.SETTINGS), dtype_bytes)


def check_memory(cfg) -> None:
    """The batch's particles (particle_num x images_per_batch) fit in the memory left, by tracking.compute's
    estimate from the model's shapes."""
    from omegaconf import OmegaConf

    from pipeline.build import resolve_device

    per = _per_particle(OmegaConf.to_yaml(cfg.model), 8 if cfg.dtype == "float64" else 4)
    batch = cfg.particle_num * cfg.images_per_batch
    free = available_memory(resolve_device(cfg.device))
    gib = 2 ** 30
    check(batch * per <= free, f"particle_num={cfg.particle_num} x images_per_batch={cfg.images_per_batch} needs "
                               f"about {batch * per / gib:.1f} GiB ({per / 2 ** 20:.1f} MiB per particle for this "
                               f"model) but {free / gib:.1f} GiB are free: use fewer particles or images per batch")


def check_writable(save_dir) -> None:
    """save_dir, or the nearest folder above it that exists, takes a file (tried with a temporary one, which leaves
    nothing behind)."""
    p = Path(str(save_dir)).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise ConfigError(f"save_dir={save_dir} cannot be written: {p}, the nearest folder of it that exists, takes no "
                          f"new file ({e.strerror or e}); choose another save_dir") from None
