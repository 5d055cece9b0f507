"""LPIPS (VGG16, v0.1 linear layers) in DAPS's variant, average pooling as piq's LPIPS(replace_pooling=True), or the
lpips package's max-pooling one; the backbone from a file, torchvision's cache, or a download."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import torch
from torch import nn

from core.settings import choice, optional, text

# eval.lpips_variant -> (VGG pooling, feature-normalisation eps): DAPS's eval.py calls piq.LPIPS(replace_pooling=True),
# whose eps is 1e-8; the lpips package keeps max pooling and uses 1e-10
VARIANTS = {"daps": ("avg", 1e-8), "lpips": ("max", 1e-10)}
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
TAPS = (3, 8, 15, 22, 29)              # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16.features
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def vgg16_features(pool: str) -> nn.Sequential:
    """torchvision's vgg16().features up to relu5_3 (indices and shapes kept), max or average pooling."""
    layers, c_in = [], 3
    for block, (c_out, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if block:
            layers.append(nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2))
        for _ in range(convs):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=False)]
            c_in = c_out
    return nn.Sequential(*layers)


class VggLPIPS(nn.Module):
    """d(x, y) = sum over the five relu stages of mean_hw sum_c w_c (x̂ - ŷ)², x̂ the channel-unit-normalised
    features of the ImageNet-normalised image; inputs in [0, 1], (B, C, H, W) -> (B,)."""

    def __init__(self, variant: str = "daps"):
        super().__init__()
        pool, self.eps = VARIANTS[variant]
        self.variant = variant
        self.features = vgg16_features(pool)
        self.lin = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in (64, 128, 256, 512, 512)])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _taps(self, x):
        out = []
        x = (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                out.append(x / (x.square().sum(1, keepdim=True).sqrt() + self.eps))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for fx, fy, w in zip(self._taps(x), self._taps(y), self.lin):
            total = total + ((fx - fy).square() * w).sum(1).mean((1, 2))
        return total


def lpips_linear_weights() -> list[torch.Tensor]:
    """LPIPS v0.1's VGG linear layers, as the lpips package ships them (no download)."""
    import lpips

    sd = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "vgg.pth", map_location="cpu", weights_only=True)
    return [sd[f"lin{i}.model.1.weight"] for i in range(5)]


def backbone_state(weights: str | None) -> tuple[dict | None, str]:
    """VGG16 feature weights keyed like torchvision's `features.N.weight`, and where they came from: the file
    `weights` (keyed like torchvision's vgg16 or like lpips.pretrained_networks.vgg16, `sliceK.N.weight`),
    else torchvision's cache, else a download into that cache; (None, reason) when none works."""
    if weights:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        return {f"features.{k.split('.', 1)[1]}" if k.startswith("slice") else k: v for k, v in sd.items()}, weights
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_URL).name
    if not cached.is_file():
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)            # an offline machine must not hang here
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(VGG16_URL, str(cached), progress=False)
        except Exception as e:                                            # offline: LPIPS is recorded as null
            cached.unlink(missing_ok=True)
            return None, f"no eval.lpips_weights, nothing in torchvision's cache ({cached}), download failed ({e})"
        finally:
            socket.setdefaulttimeout(previous)
    return torch.load(cached, map_location="cpu", weights_only=True), str(cached)


SETTINGS = {
    "lpips_variant": choice(*VARIANTS, default="daps",
                            help="daps: VGG16 with average pooling (piq.LPIPS(replace_pooling=True), DAPS's eval.py); "
                                 "lpips: the lpips package's max pooling"),
    "lpips_weights": optional(text(), help="VGG16 backbone state dict (torchvision's or lpips' keys); null = "
                                           "torchvision's cache, downloaded there when online"),
}


def check_config(eval_cfg) -> None:
    """eval.lpips_weights: a readable file, or null."""
    import os
    from pathlib import Path

    from core.errors import check

    weights = eval_cfg.get("lpips_weights")
    check(weights is None or (Path(str(weights)).is_file() and os.access(str(weights), os.R_OK)),
          f"eval.lpips_weights={weights} is not a readable file (null: torchvision's cache or a download)")


def load_lpips(variant: str = "daps", weights: str | None = None, device="cpu") -> VggLPIPS | None:
    """The LPIPS model of `variant`, frozen; None, said in one line on stderr, when no backbone weights can be had;
    ConfigError when the `weights` file is not a VGG16 state dict."""
    from core.errors import ConfigError

    try:
        sd, source = backbone_state(weights)
    except Exception as e:                                   # a corrupt or foreign file: say which, stop early
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"eval.lpips_weights={weights} cannot be read as a VGG16 state dict ({reason})") from None
    if sd is None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_URL).name
        print(f"note: LPIPS is recorded as null: {source}; to record it, get {VGG16_URL} (or lpips' VGG16 slices) on a "
              f"machine with a network and pass eval.lpips_weights=PATH, or put the file at {cached}", file=sys.stderr)
        return None
    model = VggLPIPS(variant)
    try:
        model.features.load_state_dict({k.split(".", 1)[1]: v for k, v in sd.items() if k.startswith("features.")
                                        and int(k.split(".")[1]) < len(model.features)})
    except (RuntimeError, ValueError, AttributeError) as e:
        raise ConfigError(f"LPIPS backbone from {source} does not fit VGG16: {str(e).splitlines()[0]}") from None
    for p, w in zip(model.lin, lpips_linear_weights()):
        p.data.copy_(w)
    model.source = source
    return model.eval().requires_grad_(False).to(device)
