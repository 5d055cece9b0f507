"""Data sets: image folders (FFHQ, ImageNet) and the two-mode benchmark's own images."""
from .datasets import build_dataset, DataError

__all__ = ["build_dataset", "DataError"]
