"""scikit-learn's bundled handwritten digits (1,797 images of 8x8, no download) as 32x32 RGB images in [-1, 1],
with the fixed split the mini LDM was trained on: indices 0-1499 train, 1500-1796 test."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from .memory import InMemoryImages

TRAIN_SIZE = 1500          # the first 1,500 images (in the file's order) train; the last 297 are the test split
RESOLUTION = 32


@lru_cache(maxsize=1)
def _raw() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits file, read as its load_digits reads it (tests/test_digits.py checks they are equal)
    without importing sklearn.datasets (1.6 s of imports per process for a 0.1 MB file)."""
    import gzip
    import importlib.util
    from pathlib import Path

    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from core.errors import DataError
        raise DataError("data=digits needs scikit-learn (pip install scikit-learn): its digits ship inside it")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return torch.from_numpy(data[:, :-1].reshape(-1, 8, 8)).float(), torch.from_numpy(data[:, -1].astype(int)).long()


def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) in [-1, 1], labels (N,)) of split 'train', 'test' or 'all'."""
    images, labels = _raw()
    part = {"train": slice(0, TRAIN_SIZE), "test": slice(TRAIN_SIZE, None), "all": slice(None)}[split]
    # intensities 0..16 -> [-1, 1] (dark background, bright strokes); bilinear 4x keeps them in range and the
    # upsampling commutes with the 180° rotation, so rotating a test digit is rotating its 8x8 original
    x = F.interpolate(images[part, None] / 8.0 - 1.0, size=RESOLUTION, mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous(), labels[part]


class DigitImages(InMemoryImages):
    """The test split (or the train split) as a data set; items are (name, (3, 32, 32) in [-1, 1]).

    Names carry the split index and the class, e.g. `test0007_6`, so per-class studies need no second source."""

    def __init__(self, split: str, start: int = 0, count: int | None = None):
        images, labels = digits(split)
        names = [f"{split}{i:04d}_{int(c)}" for i, c in enumerate(labels)]
        super().__init__(f"data=digits ({split} split)", images, names, start, count)
        self.labels = labels[start:start + len(self.indices)]
