"""scikit-learn's bundled handwritten digits (1,797 images of 8x8, no download) as 32x32 RGB images in [-1, 1],
with the fixed split the mini LDM was trained on: indices 0-1499 train, 1500-1796 test."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

TRAIN_SIZE = 1500          # the first 1,500 images (in the file's order) train; the last 297 are the test split
RESOLUTION = 32


@lru_cache(maxsize=1)
def _raw() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        from .datasets import DataError
        raise DataError("data=digits needs scikit-learn (pip install scikit-learn): its digits ship inside it") from None
    digits = load_digits()
    return torch.from_numpy(digits.images).float(), torch.from_numpy(digits.target).long()


def digits(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) in [-1, 1], labels (N,)) of split 'train', 'test' or 'all'."""
    images, labels = _raw()
    part = {"train": slice(0, TRAIN_SIZE), "test": slice(TRAIN_SIZE, None), "all": slice(None)}[split]
    # intensities 0..16 -> [-1, 1] (dark background, bright strokes); bilinear 4x keeps them in range and the
    # upsampling commutes with the 180° rotation, so rotating a test digit is rotating its 8x8 original
    x = F.interpolate(images[part, None] / 8.0 - 1.0, size=RESOLUTION, mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous(), labels[part]


class DigitImages:
    """The test split (or the train split) as a data set; items are (name, (3, 32, 32) in [-1, 1]).

    Names carry the split index and the class, e.g. `test0007_6`, so per-class studies need no second source."""

    def __init__(self, split: str, start: int = 0, count: int | None = None):
        from .datasets import DataError

        images, labels = digits(split)
        count = len(images) - start if count is None else count
        if start < 0 or start + count > len(images):
            raise DataError(f"data=digits ({split} split) has {len(images)} images; start_index={start} with "
                            f"num_eval_images={count} needs {start + count}")
        self.images, self.labels = images[start:start + count], labels[start:start + count]
        self.indices = list(range(start, start + count))
        self.names = [f"{split}{i:04d}_{int(c)}" for i, c in zip(self.indices, self.labels)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.names[i], self.images[i]

    def verify(self) -> None:
        """The images were loaded when the set was built."""
