"""Model registry: `build_model(cfg.model, device)` returns a `LatentModel`."""
from __future__ import annotations

from .base import LatentModel


def build_model(model_cfg, device) -> LatentModel:
    name = model_cfg.name
    if name == "two_mode":
        from .two_mode import build_two_mode
        return build_two_mode(model_cfg, device)
    if name == "two_mode_latent":
        from .two_mode_latent import build_two_mode_latent
        return build_two_mode_latent(model_cfg, device)
    if name == "ldm":
        from .ldm import build_ldm
        return build_ldm(model_cfg, device)
    raise ValueError(f"model.name={name!r} is unknown; choose one of: two_mode, two_mode_latent, ldm")
