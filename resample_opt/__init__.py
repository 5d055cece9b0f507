"""Refine stage: ReSample-style latent optimisation, each particle optimised and stopped on its own."""
from .hook import RefineHook, validate_optimization
from .optimize import STOP_REASONS, AdamState, adam_step, optimize_latents

__all__ = ["RefineHook", "validate_optimization", "optimize_latents", "adam_step", "AdamState", "STOP_REASONS"]
