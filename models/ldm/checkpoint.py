"""Loading CompVis/Lightning LDM checkpoints (`model.ckpt`) into our modules with strict=True.

Only `model.diffusion_model.*`, `first_stage_model.*` and `cond_stage_model.*` are loaded; EMA copies and the
diffusion schedule buffers are dropped after checking the stored `alphas_cumprod` against our schedule.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from core.errors import ToolError

from .denoiser import ldm_alphas_cumprod

KEEP_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")
DOWNLOAD_SCRIPT = "scripts/download_checkpoints.sh"


class CheckpointNotFoundError(ToolError, FileNotFoundError):
    """The checkpoint file is missing; the message says how to download it."""


class CheckpointError(ToolError, RuntimeError):
    """The checkpoint exists but cannot be used (corrupt, wrong format, or not matching the model config)."""


def download_command(path_or_name: str | Path | None) -> str:
    """`bash scripts/download_checkpoints.sh <which>`; `which` is ffhq/imagenet, guessed from a name or path."""
    text = str(path_or_name or "").lower()
    which = "imagenet" if ("imagenet" in text or "cin256" in text) else "ffhq" if "ffhq" in text else "all"
    return f"bash {DOWNLOAD_SCRIPT} {which}"


def missing_checkpoint_error(path: str | Path | None, hint: str | None = None) -> CheckpointNotFoundError:
    where = f"LDM checkpoint not found at '{path}'" if path else "model.ckpt_path is null (no LDM checkpoint given)"
    return CheckpointNotFoundError(
        f"{where}. Download it with `{download_command(hint or path)}` (from the repository root) "
        f"and point model.ckpt_path at it, or use random weights (benchmarks/tests only) with model.ckpt_path=null model.random_init_ok=true.")


def _torch_load(path: Path, weights_only: bool):
    # mmap avoids holding a second full copy of a multi-GB file in RAM; only zip-format files support it.
    return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=zipfile.is_zipfile(path))


def read_checkpoint(path: str | Path, hint: str | None = None) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint (or a bare state dict) at `path`, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise missing_checkpoint_error(path, hint)
    try:
        obj = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():  # garbage bytes also surface as UnpicklingError
            raise _corrupt(path, err, hint) from err
        # Lightning checkpoints may pickle callback/hparam objects that weights_only refuses; the public
        # CompVis files are trusted, so retry with full unpickling (this can execute code from the file).
        print(f"[models.ldm] {path}: weights_only=True load refused non-tensor objects; "
              f"retrying with weights_only=False (only do this for files from a trusted source).")
        try:
            obj = _torch_load(path, weights_only=False)
        except Exception as err2:  # noqa: BLE001 - any failure here means the file is unusable
            raise _corrupt(path, err2, hint) from err2
    except Exception as err:  # noqa: BLE001 - truncated zip, bad magic number, EOF, ...
        raise _corrupt(path, err, hint) from err
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (expected a Lightning checkpoint with 'state_dict').")
    return state


def _corrupt(path: Path, err: Exception, hint: str | None) -> CheckpointError:
    return CheckpointError(
        f"could not read LDM checkpoint {path} ({type(err).__name__}: {err}). The file is probably truncated or "
        f"corrupt: delete it and download again with `{download_command(hint or path)}`.")


def check_schedule(state: dict, linear_start: float, linear_end: float, timesteps: int, atol: float = 1e-5) -> None:
    """Raise CheckpointError if the checkpoint's `alphas_cumprod` differs from the configured schedule."""
    stored = state.get("alphas_cumprod")
    if stored is None:
        return
    ours = ldm_alphas_cumprod(linear_start, linear_end, timesteps)
    stored = stored.detach().to("cpu", torch.float64).reshape(-1)
    if stored.shape != ours.shape or not torch.allclose(stored, ours, rtol=0.0, atol=atol):
        diff = (stored - ours).abs().max().item() if stored.shape == ours.shape else float("nan")
        raise CheckpointError(
            f"checkpoint alphas_cumprod (shape {tuple(stored.shape)}) does not match the configured schedule "
            f"(linear_start={linear_start}, linear_end={linear_end}, timesteps={timesteps}; max abs diff {diff:.3g} "
            f"> {atol}). The denoiser's timestep mapping would be wrong; fix model.schedule in the config.")


def filter_state_dict(state: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(tensors of our three sub-networks as float32, names of everything dropped: EMA, schedule buffers, ...)."""
    kept, dropped = {}, []
    for name, value in state.items():
        if name.startswith(KEEP_PREFIXES) and torch.is_tensor(value):
            kept[name] = value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
        else:
            dropped.append(name)
    return kept, dropped


def load_ldm_checkpoint(module: torch.nn.Module, path: str | Path, schedule: dict, hint: str | None = None) -> list[str]:
    """Load `path` into `module` (a LatentDiffusion, possibly on the meta device) strictly; returns dropped names."""
    state = read_checkpoint(path, hint)
    check_schedule(state, float(schedule["linear_start"]), float(schedule["linear_end"]), int(schedule["timesteps"]))
    kept, dropped = filter_state_dict(state)
    try:
        # assign=True adopts the loaded tensors, so a module built on the meta device needs no second copy.
        module.load_state_dict(kept, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not match the model architecture in the config (strict loading failed). "
            f"Is model.ckpt_path the right file for this config?\n{err}") from err
    return dropped
