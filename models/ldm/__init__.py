"""CompVis-compatible latent diffusion backbone (UNet, VQ-f4, class embedder) behind the `LatentModel` contract."""

from .checkpoint import CheckpointError, CheckpointNotFoundError
from .model import LatentDiffusion, build_ldm

__all__ = ["CheckpointError", "CheckpointNotFoundError", "LatentDiffusion", "build_ldm"]
