"""Model registry: `build_model(cfg.model, device)` returns a `LatentModel`."""
from __future__ import annotations

from .base import LatentModel


def check_config(model_cfg) -> None:
    """The `model:` block's own settings (a checkpoint is checked when it is loaded)."""
    from core.errors import check, is_number

    if model_cfg.name in ("two_mode", "two_mode_latent"):
        w = model_cfg.get("rotated_weight", 1.0)
        check(is_number(w) and w > 0, f"model.rotated_weight={w} is invalid: must be a number > 0 (1 = symmetric)")


def mode_weights(model_cfg) -> dict | None:
    """The exact posterior weights of the 0° and 180° modes where the prior fixes them (the benchmarks: a rotated
    twin weighs rotated_weight against its image); None for learned priors."""
    if model_cfg.name not in ("two_mode", "two_mode_latent"):
        return None
    w = float(model_cfg.get("rotated_weight", 1.0))
    return {"0": 1 / (1 + w), "180": w / (1 + w)}


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
