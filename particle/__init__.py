"""Particle search hooks for the LatentDAPS loop: repulsion while exploring, diversity-aware pruning or branching."""
from .pruning import PruningHook, choose_kept
from .repulsion import RepulsionHook, rbf_repulsion
from .resampling import ResamplingHook

__all__ = ["RepulsionHook", "PruningHook", "ResamplingHook", "rbf_repulsion", "choose_kept"]
