"""Speed levers for the networks, from the sampler's `precision:` block: TF32, bf16 decoder autocast, torch.compile."""
from __future__ import annotations

import contextlib

import torch

from core.settings import boolean, choice, value

DECODER_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}

SETTINGS = {
    "decoder": choice(*DECODER_PRECISIONS, default="fp32",
                      help="the decoder's forward and VJP in the MCMC steps: fp32 or bf16"),
    "tf32": boolean(False, help="TF32 for CUDA matmuls and convolutions"),
    "compile": boolean(False, help="torch.compile the decoder and the denoiser's network"),
}


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (process-wide); no effect on CPU.

    Both are set either way: cuDNN convolutions default to TF32 in PyTorch, so "off" must be explicit
    for an fp32 baseline.
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def decoder_autocast_dtype(precision) -> torch.dtype | None:
    """The autocast dtype for the decoder's forward/VJP inside the MCMC steps (None = plain fp32)."""
    name = value(precision, SETTINGS, "decoder")
    if name not in DECODER_PRECISIONS:
        raise ValueError(f"sampler.precision.decoder={name!r} is invalid: must be one of {', '.join(DECODER_PRECISIONS)}")
    return DECODER_PRECISIONS[name]


def autocast(device_type: str, dtype: torch.dtype | None):
    """torch.autocast for dtype, or a no-op context when dtype is None."""
    return torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def compile_model(model):
    """torch.compile the two network calls the sampler makes (decode: its forward and VJP run in every MCMC
    iteration; the denoiser's network, twice per annealing step); in place, returns the model.

    The instance attributes shadow the methods, so the weights and state-dict keys stay as they are.
    Each new batch size (pruning, latent optimisation's shrinking active set) costs one recompilation.
    """
    model.decode = torch.compile(model.decode)
    # An LDM's UNet is compiled as `eps`, which takes the timestep as a tensor: `denoise` takes sigma as a
    # Python float, and every new value would be a guard failure and a recompilation (50 per run).
    name = "eps" if hasattr(model, "eps") else "denoise"
    setattr(model, name, torch.compile(getattr(model, name)))
    return model
