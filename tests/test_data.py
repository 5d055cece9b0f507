"""Image folders: sorted order, Resize(256) + CenterCrop(256), grey to RGB, clear errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import DataError
from data import build_dataset
from data.datasets import ImageFolder
from tests.conftest import compose


def test_imagenet_demo_is_resized_and_cropped(shared):
    ds = ImageFolder(shared / "data" / "demo-imagenet", 256, start=2, count=3)
    assert [f.name for f in ds.files] == [f"ILSVRC2012_val_0004900{i}.JPEG" for i in (2, 3, 4)]
    assert ds.indices == [2, 3, 4]
    name, x = ds[0]
    assert x.shape == (3, 256, 256) and x.min() >= -1 and x.max() <= 1


def test_ffhq_demo_via_config(shared):
    """The config's folder, sorted by name; each item the file itself in [-1, 1] (the demo faces are 256 x 256:
    no resizing)."""
    cfg = compose("data=demo-ffhq", f"data.root={shared / 'data' / 'demo-ffhq'}")
    ds = build_dataset(cfg.data, cfg.model, 0, 10)
    name, x = ds[9]
    assert len(ds) == 10 and name == "00009.png"
    raw = np.asarray(Image.open(shared / "data" / "demo-ffhq" / name).convert("RGB"), dtype=np.float32)
    torch.testing.assert_close(x, torch.from_numpy(raw).permute(2, 0, 1) / 127.5 - 1, rtol=0, atol=1e-6)


def test_grey_image_becomes_rgb_and_errors_are_clear(tmp_path):
    Image.fromarray(np.full((300, 400), 128, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    ds = ImageFolder(tmp_path, 256)
    _, x = ds[0]
    assert x.shape == (3, 256, 256) and torch.allclose(x, torch.full_like(x, 128 / 255 * 2 - 1), atol=1e-6)
    with pytest.raises(DataError, match="cannot read image .*b.png"):
        ds[1]
    with pytest.raises(DataError, match="has 2 images; start_index=1 with num_eval_images=5 needs 6"):
        ImageFolder(tmp_path, 256, start=1, count=5)
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolder(tmp_path / "nope", 256)
