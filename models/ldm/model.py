"""`LatentDiffusion`: CompVis LDM (UNet + VQ-f4 first stage + optional class embedder) behind the project's
`LatentModel` contract, and `build_ldm(model_cfg, device)` that builds it from a Hydra/dict config."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from models.base import LatentModel

from .checkpoint import load_ldm_checkpoint, missing_checkpoint_error
from .denoiser import VPDenoiser, ldm_alphas_cumprod
from .unet import UNetModel
from .vq import VQModel

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEDULE = {"linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000}


class ClassEmbedder(nn.Module):
    """Class label -> cross-attention context token (`cond_stage_model.embedding`)."""

    def __init__(self, n_classes: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_classes, embed_dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding(labels)[:, None, :]  # (B, 1, embed_dim)


def _plain(cfg) -> dict:
    """OmegaConf / Mapping -> plain nested dict (lists stay lists)."""
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # omegaconf is optional for this package
        pass
    return {k: (_plain(v) if isinstance(v, Mapping) else v) for k, v in dict(cfg).items()}


def _setting(cfg, key: str):
    """A model setting, its declared default where the config (a YAML group or a checkpoint card) leaves it out."""
    from core.settings import value

    from models import SETTINGS

    return value(cfg, SETTINGS, key)


class LatentDiffusion(LatentModel):
    """Frozen LDM. Submodule names follow the Lightning checkpoint (`model.diffusion_model`, `first_stage_model`,
    `cond_stage_model`); conditional models always use the null class (1000 for cin256-v2), as DAPS does."""

    def __init__(self, cfg, meta: bool = False):
        super().__init__()
        cfg = _plain(cfg)
        self.cfg = cfg
        unet_cfg, fs_cfg, cond_cfg = dict(cfg["unet"]), dict(cfg["first_stage"]), cfg.get("cond_stage")
        self.scale_factor = float(_setting(cfg, "scale_factor"))
        self.channels_last = bool(_setting(cfg, "channels_last"))
        # On the meta device only shapes exist: building is instant and a checkpoint can be assigned in place.
        with torch.device("meta") if meta else contextlib.nullcontext():
            self.model = nn.Module()
            self.model.diffusion_model = UNetModel(**unet_cfg)
            self.first_stage_model = VQModel(fs_cfg["ddconfig"], int(fs_cfg["embed_dim"]), int(fs_cfg["n_embed"]))
            self.cond_stage_model = None
            if cond_cfg:
                self.cond_stage_model = ClassEmbedder(int(cond_cfg["n_classes"]), int(cond_cfg["embed_dim"]))
        self.null_class = int(cond_cfg.get("null_class", int(cond_cfg["n_classes"]) - 1)) if cond_cfg else None
        if bool(unet_cfg.get("use_spatial_transformer")) != bool(cond_cfg):
            raise ValueError("a cross-attention UNet needs cond_stage (class embedder) and vice versa")
        schedule = {**DEFAULT_SCHEDULE, **(cfg.get("schedule") or {})}
        self.denoiser = VPDenoiser(c_noise=_setting(cfg, "c_noise"), **schedule)  # buffers only, never meta
        # the DDPM schedule's abar_t in float32, as the CompVis LDM holds it (ReSample's DDIM grid reads it)
        self.alphas_cumprod = ldm_alphas_cumprod(**schedule).float()

        dd = fs_cfg["ddconfig"]
        f = 2 ** (len(dd["ch_mult"]) - 1)
        self.latent_shape = (int(fs_cfg["embed_dim"]), int(dd["resolution"]) // f, int(dd["resolution"]) // f)
        self.image_shape = (int(dd["out_ch"]), int(dd["resolution"]), int(dd["resolution"]))
        if self.latent_shape[1] != unet_cfg["image_size"] or self.latent_shape[0] != unet_cfg["in_channels"]:
            raise ValueError(f"first stage latent shape {self.latent_shape} does not fit the UNet "
                             f"(in_channels={unet_cfg['in_channels']}, image_size={unet_cfg['image_size']})")

    def finalize(self, device) -> "LatentDiffusion":
        """Move to device, freeze, eval mode, optional channels_last for the UNet and the decoder."""
        self.to(device)
        self.eval()
        self.requires_grad_(False)
        if self.channels_last:
            self.model.diffusion_model.to(memory_format=torch.channels_last)
            self.first_stage_model.decoder.to(memory_format=torch.channels_last)
            self.first_stage_model.post_quant_conv.to(memory_format=torch.channels_last)
        return self

    def _fmt(self, t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def context(self, batch: int, device) -> torch.Tensor | None:
        """Cross-attention context of the null class, (B, 1, embed_dim); None for unconditional models."""
        if self.cond_stage_model is None:
            return None
        label = torch.full((1,), self.null_class, dtype=torch.long, device=device)
        return self.cond_stage_model(label).expand(batch, -1, -1)

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Raw eps-prediction of the UNet at (continuous) timesteps t of shape (B,)."""
        return self.model.diffusion_model(self._fmt(x), t, self.context(x.shape[0], x.device)).contiguous()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_factor * self.first_stage_model.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # Straight-through quantisation inside: the gradient w.r.t. z is that of the decoder at q(z).
        return self.first_stage_model.decode(self._fmt(z / self.scale_factor)).contiguous()

    def denoise(self, z: torch.Tensor, sigma) -> torch.Tensor:
        return self.denoiser(self.eps, z, sigma)


_warned_random = False


def _warn_random_once(cfg: dict) -> None:
    global _warned_random
    if not _warned_random:
        _warned_random = True
        warnings.warn(
            "models.ldm: model.ckpt_path is null and random_init_ok=true, so the LDM has RANDOM weights. Use this "
            "only for benchmarks and tests (timings/memory are real, images are not). For real results run "
            "`bash scripts/download_checkpoints.sh ffhq|imagenet` and set model.ckpt_path.", stacklevel=3)


def _resolve(path: str) -> Path:
    # Relative paths are taken from the working directory, falling back to the repository root.
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p if (REPO_ROOT / p).exists() else p


def build_ldm(model_cfg, device) -> LatentDiffusion:
    """LatentDiffusion from a model config: checkpoint loaded strictly, or random weights if explicitly allowed."""
    cfg = _plain(model_cfg)
    ckpt_path = cfg.get("ckpt_path")
    hint = "imagenet" if cfg.get("cond_stage") else "ffhq"  # which download_checkpoints.sh target to suggest
    if ckpt_path is None:
        if not _setting(cfg, "random_init_ok"):
            raise missing_checkpoint_error(None, hint)
        _warn_random_once(cfg)
        with torch.device(device):  # initialise directly on the target device
            model = LatentDiffusion(cfg)
        return model.finalize(device)
    path = _resolve(str(ckpt_path))
    if not path.is_file():
        raise missing_checkpoint_error(path, hint)
    model = LatentDiffusion(cfg, meta=True)
    dropped = load_ldm_checkpoint(model, path, {**DEFAULT_SCHEDULE, **(cfg.get("schedule") or {})}, hint)
    print(f"[models.ldm] loaded {path} (strict; ignored {len(dropped)} EMA/schedule entries)")
    return model.finalize(device)
