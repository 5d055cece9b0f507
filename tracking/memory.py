"""A run's memory need per particle, estimated before any work from the model's shapes (pipeline/validate.py's memory
check)."""
from __future__ import annotations

import torch

# a run's peak memory per particle over the decoder's activations of one row: 1.46 measured on the natural mini LDM
# (peak RSS of 128 against 8 particles, 2026-12-04; 4.35 MiB per particle against 2.98 MiB of activations)
ACTIVATION_OVERHEAD = 1.5


def memory_per_particle(model_cfg, dtype_bytes: int = 4) -> float:
    """Bytes a run needs per particle, estimated before any work from the model's shapes: for an LDM its decoder's
    activations of one row (a meta-device forward, no weights) times ACTIVATION_OVERHEAD; for the two-mode mixtures
    the exact log-density's difference and square of every particle against every component in float64 (2.0 MB per
    particle measured for 20 images at 32 x 32 against 1.97 MB by this formula), at least 64 image copies."""
    if model_cfg.name == "ldm":
        from models.ldm.model import LatentDiffusion

        model = LatentDiffusion(model_cfg, meta=True).requires_grad_(False)
        total = [0]

        def count(module, inputs, output):
            if isinstance(output, torch.Tensor):
                total[0] += output.numel()
        leaves = [m for m in model.first_stage_model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(count) for m in leaves]
        try:
            model.decode(torch.zeros(1, *model.latent_shape, device="meta"))
        finally:
            for h in handles:
                h.remove()
        return total[0] * dtype_bytes * ACTIVATION_OVERHEAD
    image = 3 * model_cfg.resolution ** 2
    latent = image if model_cfg.name == "two_mode" else 3 * model_cfg.latent_size ** 2
    return max(2 * model_cfg.num_images * latent * 8 * 2, 64 * image * 8)
