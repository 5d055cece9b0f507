"""The Hydra choices (model, sampler, data) of the models that run on a CPU: the two-mode benchmarks and the mini
LDM; the study and sweep scripts take one of these names."""
from __future__ import annotations

STACKS = {
    "two_mode": ("model=two_mode", "sampler=two_mode", "data=two_mode"),
    "two_mode_latent": ("model=two_mode_latent", "sampler=two_mode_latent", "data=two_mode_latent"),
    "digits32ldm": ("model=digits32ldm", "sampler=digits32ldm", "data=digits"),
    "naturalldm": ("model=naturalldm", "sampler=naturalldm", "data=natural"),
}


def stack(name: str) -> list[str]:
    return list(STACKS[name])
