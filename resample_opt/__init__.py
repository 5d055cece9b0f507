"""Refine stage: ReSample-style latent optimisation, each particle optimised and stopped on its own."""
from .hook import RefineHook
from .optimize import STOP_REASONS, AdamState, adam_step, optimize_latents

__all__ = ["RefineHook", "optimize_latents", "adam_step", "AdamState", "STOP_REASONS"]
