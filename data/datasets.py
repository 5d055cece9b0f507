"""Image-folder data set (sorted, Resize + CenterCrop, RGB, [-1, 1]), the benchmark's bundled images, and
`build_dataset`, which picks one of them or the bundled digits (data/digits.py) for a data config."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from core.errors import DataError, check
from core.settings import choice, integer, number, text, value

from .memory import InMemoryImages

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class ImageFolder:
    """The first `count` images of `root` from `start`, sorted by file name; items are (name, (3, R, R) in [-1, 1])."""

    def __init__(self, root, resolution: int = 256, start: int = 0, count: int | None = None, min_side: int = 1,
                 name: str = ""):
        from torchvision import transforms

        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data.root={str(root)!r} is not a folder: {FETCH.get(name, FETCH['*'])}")
        self.min_side = min_side
        files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        count = len(files) - start if count is None else count
        if start < 0 or start + count > len(files):
            raise DataError(f"data.root={str(root)!r} has {len(files)} images; start_index={start} with "
                            f"num_eval_images={count} needs {start + count}")
        self.files = files[start:start + count]
        self.indices = list(range(start, start + count))
        self.transform = transforms.Compose([
            transforms.Resize(resolution), transforms.CenterCrop(resolution), transforms.ToTensor(),
        ])

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        path = self.files[i]
        try:
            with Image.open(path) as img:
                if min(img.size) < self.min_side:
                    raise DataError(f"image {path} is {img.size[0]}x{img.size[1]}, smaller than the model's "
                                    f"{self.min_side}x{self.min_side} latent grid: it would be upscaled into "
                                    f"an image the measurement says nothing new about; leave it out of data.root")
                x = self.transform(img.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"cannot read image {path}: {e}") from None
        return path.name, x * 2 - 1

    def verify(self) -> None:
        """Decode every image of the range now (DataError naming the first bad file), before any model is built."""
        for i in range(len(self)):
            self[i]


class BenchmarkImages(InMemoryImages):
    """The two-mode benchmark's ground truths: its bundled images (not their rotations)."""

    def __init__(self, resolution: int, num_images: int, start: int = 0, count: int | None = None, images=None):
        from models.two_mode import SKIMAGE_IMAGES, benchmark_images

        images = benchmark_images(resolution, num_images) if images is None else images
        names = [SKIMAGE_IMAGES[i].rsplit(".", 1)[0] for i in range(num_images)]
        super().__init__("the two-mode benchmark", images[:num_images].float(), names, start, count)


BENCHMARKS = ("two_mode", "two_mode_latent")       # their data are the models' own mixture components
# where an image folder's images come from, for the message when data.root is not there
FETCH = {"test-ffhq": "get DAPS's test set with `bash scripts/download_test_sets.sh ffhq`",
         "test-imagenet": "get DAPS's test set with `bash scripts/download_test_sets.sh imagenet`",
         "demo-ffhq": "copy the DAPS repository's demo images (its dataset/demo-ffhq) there, or point data.root= at "
                      "a folder of face images",
         "demo-imagenet": "copy the DAPS repository's demo images (its dataset/demo-imagenet) there, or point "
                          "data.root= at a folder of images",
         "*": "point data.root= at a folder of images"}
GROUND_TRUTHS = ("decoded", "raw")
SETTINGS = {
    "name": text(help="the data set"),
    "root": text(help="the image folder (image-folder data sets)"),
    "resolution": integer(1, help="images are resized and centre-cropped to this side"),
    "start_index": integer(0, help="the first image of the range"),
    "fail_psnr": number(help="a particle under this PSNR against every member of the image's class is a failure"),
    "split": choice("test", "train", default="test", help="the digits' split"),
    "ground_truth": choice(*GROUND_TRUTHS, default="raw", help="decoded: the model's reconstruction D(E(x)) (on its "
                                                               "manifold); raw: the image itself"),
}


def check_config(data, model) -> None:
    """The `data:` block against the `model:` block: the benchmarks run on their own data, image folders at the
    model's size, and each bundled set's own keys."""
    if model.name in BENCHMARKS or data.name in BENCHMARKS:
        check(data.name == model.name,
              f"data={data.name} does not go with this model (the benchmarks run on their own data): use "
              f"{model.goes_with}")
    if model.name == "ldm" and data.get("resolution") is not None:
        size = model.first_stage.ddconfig.resolution
        check(data.resolution == size, f"data={data.name} has {data.resolution}x{data.resolution} images but the "
                                       f"model makes {size}x{size} ones: pick a data set of its size")


def build_dataset(data_cfg, model_cfg, start: int, count: int):
    if data_cfg.name == "digits":
        from .digits import DigitImages
        return DigitImages(value(data_cfg, SETTINGS, "split"), start, count)
    if data_cfg.name == "natural":
        from .natural import NaturalCrops
        return NaturalCrops(start, count)
    if data_cfg.name in ("two_mode", "two_mode_latent"):
        if model_cfg.name != data_cfg.name:
            raise DataError(f"data={data_cfg.name} needs model={data_cfg.name} (its images are the model's mixture "
                            f"components)")
        images = None
        if data_cfg.name == "two_mode_latent" and data_cfg.ground_truth == "decoded":
            # on the decoder's manifold: D(mu_j), the component mean seen through the decoder
            from models.two_mode_latent import decode, fitted_latents
            factor = model_cfg.resolution // model_cfg.latent_size
            images = decode(fitted_latents(model_cfg.resolution, factor, model_cfg.num_images), factor)
        return BenchmarkImages(model_cfg.resolution, model_cfg.num_images, start, count, images)
    min_side = 1
    if model_cfg.name == "ldm":                          # the latent grid's side: resolution / 2^(levels - 1)
        dd = model_cfg.first_stage.ddconfig
        min_side = dd.resolution // 2 ** (len(dd.ch_mult) - 1)
    return ImageFolder(data_cfg.root, data_cfg.resolution, start, count, min_side, data_cfg.name)
