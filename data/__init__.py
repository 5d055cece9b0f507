"""Data sets: image folders (FFHQ, ImageNet), the two-mode benchmark's own images, the bundled digits and natural
crops."""
from .datasets import build_dataset, check_config

__all__ = ["build_dataset", "check_config"]
