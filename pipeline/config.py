"""Every check of a run's config before any work: the run's own flags here, each block by its owner (stages, data,
model, sampler, evaluation); a ConfigError names the first bad setting."""
from __future__ import annotations

import tempfile
from pathlib import Path

from core.errors import ConfigError, check, is_int, is_number


def validate(cfg) -> None:
    """Stop before any computation on an impossible setting."""
    check(is_int(cfg.particle_num) and cfg.particle_num >= 1,
          f"particle_num={cfg.particle_num} is invalid: must be an integer >= 1")
    check(is_int(cfg.resampling_interval) and cfg.resampling_interval >= 0,
          f"resampling_interval={cfg.resampling_interval} is invalid: must be an integer >= 0 (0 = off)")
    v = cfg.optimization_step
    check(is_int(v) and (v == -1 or 0 <= v <= 1000),
          f"optimization_step={v} is invalid: must be -1 (off) or a diffusion time t in 0 … 1000")
    check(is_int(cfg.num_eval_images) and cfg.num_eval_images >= 1,
          f"num_eval_images={cfg.num_eval_images} is invalid: must be an integer >= 1")
    check(is_int(cfg.images_per_batch) and cfg.images_per_batch >= 1,
          f"images_per_batch={cfg.images_per_batch} is invalid: must be an integer >= 1")
    check(is_int(cfg.particle_offset) and cfg.particle_offset >= 0,
          f"particle_offset={cfg.particle_offset} is invalid: must be an integer >= 0")
    for key in ("resume", "save_images", "overwrite", "eval.per_step"):
        node, _, leaf = key.rpartition(".")
        value = (cfg[node] if node else cfg).get(leaf, False)
        check(isinstance(value, bool), f"{key}={value!r} is invalid: must be true or false")
    check(is_int(cfg.seed) and cfg.seed >= 0, f"seed={cfg.seed} is invalid: must be an integer >= 0")
    check_device(cfg.device)
    check_writable(cfg.save_dir)
    check(cfg.dtype in ("float32", "float64"), f"dtype={cfg.dtype} is invalid: must be float32 or float64")
    want = cfg.sampler.get("for_model")
    if want is not None and want != cfg.model.name:
        choice = "sampler=langevin or sampler=hmc" if cfg.model.name == "ldm" else f"sampler={cfg.model.name}"
        raise ConfigError(f"the sampler preset is tuned for model {want!r} but model.name={cfg.model.name!r}: "
                          f"use {choice}")

    import data
    import evaluation.orientation
    import evaluation.perceptual
    import models
    import particle.pruning
    import particle.repulsion
    import particle.resampling
    import resample_opt.hook
    import sampler.precision
    from sampler import trigger_step

    sampler.precision.check_config(cfg.sampler.precision)
    models.check_config(cfg.model)
    data.check_config(cfg)
    evaluation.perceptual.check_config(cfg.eval)
    evaluation.orientation.check_config(cfg)
    particle.repulsion.check_config(cfg, trigger_step(cfg.optimization_step, cfg.sampler.annealing.num_steps))
    particle.pruning.check_config(cfg)
    particle.resampling.check_config(cfg)
    resample_opt.hook.check_config(cfg)


def check_device(name) -> None:
    """auto, cpu, cuda or cuda:N, and a CUDA device only where one exists."""
    import torch

    check(isinstance(name, str) and (name in ("auto", "cpu", "cuda") or
                                     (name.startswith("cuda:") and name[5:].isdigit())),
          f"device={name} is invalid: must be auto, cpu, cuda or cuda:N")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        check(count > index, f"device={name} but this machine has {count} CUDA device(s) (torch {torch.__version__}"
                             f"{'' if torch.version.cuda else ', a CPU-only build'}): use device=auto or device=cpu")


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
        raise ConfigError(f"save_dir={save_dir} cannot be written ({p}: {e.strerror or e})") from None
