"""Crops of the natural photographs that scikit-image and scikit-learn ship inside their packages (no download),
split by source image: the mini LDM `naturalldm` trains on crops of six skimage photos and is tested on crops of
scikit-learn's two (china, flower), which no benchmark uses."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .memory import InMemoryImages

RESOLUTION = 32
# colour photographs without black regions (a black border or sky would map to the zero padding and let shifted
# copies fit the measurement: retina and hubble_deep_field are left out for that)
TRAIN_SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "motorcycle_left")
TEST_SOURCES = ("china", "flower")
# each source is resized so its short side is one of these, then cropped: a 32 px crop spans half to a sixth of it
SCALES = (64, 96, 128, 192)
TEST_CROPS_PER_SOURCE = 32
TEST_SEED = 1234
# a test crop must have structure: a near-uniform patch (sky, bokeh) fits almost any smooth reconstruction of its
# brightness, which would make "found" meaningless; the pixel standard deviation in [-1, 1] units
MIN_TEST_STD = 0.2


def _load(name: str) -> np.ndarray:
    """(H, W, 3) uint8 of one source photograph, read from the installed package."""
    if name in TEST_SOURCES:
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    if name == "motorcycle_left":
        from pathlib import Path

        import skimage
        from PIL import Image
        return np.asarray(Image.open(Path(skimage.__file__).parent / "data" / "motorcycle_left.png").convert("RGB"))
    from skimage import data
    return getattr(data, name)()


@lru_cache(maxsize=None)
def pyramid(name: str) -> tuple[torch.Tensor, ...]:
    """The source in [-1, 1] at every scale of SCALES: (3, h, w) tensors, short side = the scale (antialiased)."""
    try:
        img = torch.from_numpy(_load(name).copy()).permute(2, 0, 1).float()[None] / 127.5 - 1.0
    except ImportError:
        from core.errors import DataError
        raise DataError("data=natural needs scikit-image and scikit-learn (pip install -r requirements.txt): "
                        "its photographs ship inside them") from None
    h, w = img.shape[-2:]
    out = []
    for s in SCALES:
        size = (s, round(w * s / h)) if h <= w else (round(h * s / w), s)
        out.append(F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)[0]
                   .clamp(-1, 1))
    return tuple(out)


def random_crops(sources, n: int, generator: torch.Generator, flip: bool) -> tuple[torch.Tensor, list[str]]:
    """n crops of RESOLUTION px: a uniform source, scale and position each (and a left-right flip with p = 1/2 when
    `flip`: the only augmentation; an up-down flip or rotation would teach the prior the ambiguity phase retrieval
    cannot resolve). Returns (n, 3, R, R) and a name per crop: source, scale, top, left (and 'f' when flipped)."""
    R = RESOLUTION
    src = torch.randint(len(sources), (n,), generator=generator).tolist()
    scl = torch.randint(len(SCALES), (n,), generator=generator).tolist()
    u = torch.rand((n, 2), generator=generator, dtype=torch.float64).tolist()
    flips = (torch.rand(n, generator=generator) < 0.5).tolist() if flip else [False] * n
    crops, names = [], []
    for s, c, (a, b), f in zip(src, scl, u, flips):      # data loading: slices of stored images, no arithmetic
        img = pyramid(sources[s])[c]
        top, left = int(a * (img.shape[1] - R + 1)), int(b * (img.shape[2] - R + 1))
        crop = img[:, top:top + R, left:left + R]
        crops.append(torch.flip(crop, (-1,)) if f else crop)
        names.append(f"{sources[s]}_s{SCALES[c]}_{top}_{left}" + ("f" if f else ""))
    return torch.stack(crops), names


@lru_cache(maxsize=1)
def held_out_crops() -> tuple[torch.Tensor, tuple[str, ...]]:
    """The fixed test set: TEST_CROPS_PER_SOURCE crops of each test source in turn (china 0, flower 1, china 2, ...),
    the first draws from TEST_SEED (no flips) with a pixel std of at least MIN_TEST_STD."""
    per = []
    for i, s in enumerate(TEST_SOURCES):
        x, names = random_crops((s,), 8 * TEST_CROPS_PER_SOURCE, torch.Generator().manual_seed(TEST_SEED + i), False)
        keep = (x.flatten(1).std(1) >= MIN_TEST_STD).nonzero().flatten()[:TEST_CROPS_PER_SOURCE]
        assert len(keep) == TEST_CROPS_PER_SOURCE, "too few structured crops"
        per.append((x[keep], [names[j] for j in keep.tolist()]))
    x = torch.stack([per[j % 2][0][j // 2] for j in range(2 * TEST_CROPS_PER_SOURCE)])
    names = tuple(per[j % 2][1][j // 2] for j in range(2 * TEST_CROPS_PER_SOURCE))
    return x, names


class NaturalCrops(InMemoryImages):
    """The test crops as a data set; items are (name, (3, 32, 32) in [-1, 1]), names such as `china_s96_12_40`."""

    def __init__(self, start: int = 0, count: int | None = None):
        images, names = held_out_crops()
        super().__init__("data=natural", images, names, start, count)
