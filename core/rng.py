"""Every random generator of a run derives from (seed, image, stream, ...) by one recipe, so a stream never depends
on the batch it shares or on how many other draws came before."""
from __future__ import annotations

import numpy as np
import torch

# the streams of one image: its measurement noise, each particle's draws, the orientation score's noise, the draws
# of each resampling event
MEASUREMENT, PARTICLE, ORIENTATION, RESAMPLING = 0, 1, 2, 3


def generator(seed: int, image: int, stream: int, *path: int, device="cpu") -> torch.Generator:
    """A torch generator seeded from SeedSequence([seed, image, stream, *path]) (63 bits)."""
    s = int(np.random.SeedSequence([seed, image, stream, *path]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(s)
