"""The Hydra choices (model, sampler, data) each study and sweep runs a model with: the CPU stacks (the two-mode
benchmarks, the mini LDMs) and the full-size CompVis LDMs on DAPS's 100-image test sets (GPU), whose sampler is
Langevin or the published HMC preset."""
from __future__ import annotations

STACKS = {
    "two_mode": ("model=two_mode", "sampler=two_mode", "data=two_mode"),
    "two_mode_latent": ("model=two_mode_latent", "sampler=two_mode_latent", "data=two_mode_latent"),
    "digits32ldm": ("model=digits32ldm", "sampler=digits32ldm", "data=digits"),
    "naturalldm": ("model=naturalldm", "sampler=naturalldm", "data=natural"),
    "ffhq256ldm": ("model=ffhq256ldm", "sampler=langevin", "data=test-ffhq"),
    "imagenet256ldm": ("model=imagenet256ldm", "sampler=langevin", "data=test-imagenet"),
}
FULL_SIZE = ("ffhq256ldm", "imagenet256ldm")      # GPU only; every other stack runs on a CPU
SAMPLERS = ("langevin", "hmc")                    # a full-size stack's sampler choices


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
