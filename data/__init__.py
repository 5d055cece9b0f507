"""Data sets: image folders (FFHQ, ImageNet), the two-mode benchmark's own images, the bundled digits and natural
crops."""
from .datasets import SETTINGS, build_dataset, check_config

__all__ = ["SETTINGS", "build_dataset", "check_config"]
