"""A data set held in memory (the bundled images: benchmark, digits, natural crops): a range of it by start and
count, items (name, image in [-1, 1])."""
from __future__ import annotations

import torch

from core.errors import DataError


class InMemoryImages:
    """images[start:start + count] with their names; `what` names the set in the range error."""

    def __init__(self, what: str, images: torch.Tensor, names: list[str], start: int = 0, count: int | None = None):
        count = len(images) - start if count is None else count
        if start < 0 or start + count > len(images):
            raise DataError(f"{what} has {len(images)} images; start_index={start} with num_eval_images={count} "
                            f"needs {start + count}")
        self.images, self.names = images[start:start + count], list(names[start:start + count])
        self.indices = list(range(start, start + count))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.names[i], self.images[i]

    def verify(self) -> None:
        """The images were loaded when the set was built: nothing can fail later."""
