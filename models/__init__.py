"""Model registry: `build_model(cfg.model, device)` returns a `LatentModel`."""
from __future__ import annotations

from core.settings import boolean, choice, integer, number, optional, resolve, text, value

from .base import LatentModel


# the model config group's settings (an LDM's architecture blocks unet, first_stage, cond_stage are checked by its
# strict checkpoint load)
SETTINGS = {
    "name": choice("two_mode", "two_mode_latent", "ldm", help="the model family"),
    "goes_with": text(help="the model, sampler and data choices it runs with (named in hints)"),
    "resolution": integer(1, help="the benchmarks' image side"),
    "latent_size": integer(1, help="two_mode_latent: the latent side (resolution / latent_size = the upsampling)"),
    "num_images": integer(1, 20, help="the benchmarks' mixture components: bundled images and their rotations"),
    "component_std": number(0, low_open=True, help="the benchmarks' per-entry standard deviation"),
    "rotated_weight": number(0, default=1.0, low_open=True, help="a rotated twin's weight against its image "
                                                                 "(1 = symmetric)"),
    "cpu_threads": optional(integer(1), help="torch threads on a CPU (null: torch's default)"),
    "ckpt_path": optional(text(), help="the LDM checkpoint (null: random weights, with random_init_ok)"),
    "random_init_ok": boolean(False, help="allow random weights when ckpt_path is null (the untrained control)"),
    "c_noise": choice("vp", "alphas_cumprod", default="vp",
                      help="sigma -> timestep: DAPS's continuous VP map or the schedule's"),
    "channels_last": boolean(False, help="channels-last memory format for the UNet and the decoder"),
    "scale_factor": number(0, default=1.0, low_open=True, help="the latent scale (z = scale_factor E(x))"),
    "schedule": {"linear_start": number(0, low_open=True), "linear_end": number(0, low_open=True),
                 "timesteps": integer(1)},
}


def check_config(model_cfg) -> None:
    """An LDM's checkpoint file exists (its download command otherwise), before any data is read."""
    if model_cfg.name == "ldm" and model_cfg.get("ckpt_path") is not None:
        from .ldm.checkpoint import missing_checkpoint_error
        from .ldm.model import _resolve

        path = _resolve(str(model_cfg.ckpt_path))
        if not path.is_file():
            raise missing_checkpoint_error(path, "imagenet" if model_cfg.get("cond_stage") else "ffhq")


def mode_weights(model_cfg) -> dict | None:
    """The exact posterior weights of the 0° and 180° modes where the prior fixes them (the benchmarks: a rotated
    twin weighs rotated_weight against its image); None for learned priors."""
    if model_cfg.name not in ("two_mode", "two_mode_latent"):
        return None
    w = float(value(model_cfg, SETTINGS, "rotated_weight"))
    return {"0": 1 / (1 + w), "180": w / (1 + w)}


def build_model(model_cfg, device) -> LatentModel:
    """The model of a checked `model:` group (a core.settings.Block); the builder of its kind gets it resolved
    (every declared setting present)."""
    model_cfg = resolve(model_cfg, SETTINGS)
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
