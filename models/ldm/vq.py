"""VQ-regularised first stage (VQ-f4) with the module layout of CompVis `Encoder`/`Decoder`/`VQModelInterface`.

encode(x) = quant_conv(encoder(x)) without quantisation; decode(z) = decoder(post_quant_conv(quantize(z)))
with a straight-through quantiser, so gradients reach z.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """Two 3x3 convolutions with a residual (1x1 `nin_shortcut` when the width changes); no timestep input."""

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1-conv q/k/v projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.norm(x)

        def tokens(t):  # (B, C, H, W) -> (B, 1, HW, C); free for channels_last tensors
            return t.permute(0, 2, 3, 1).reshape(b, 1, h * w, c)

        out = F.scaled_dot_product_attention(tokens(self.q(y)), tokens(self.k(y)), tokens(self.v(y)))
        out = out.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv with asymmetric (right/bottom) zero padding, as the original."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = AttnBlock(channels)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


def _check_resamp(resamp_with_conv: bool, attn_type: str) -> None:
    if not resamp_with_conv or attn_type != "vanilla":
        raise NotImplementedError("only resamp_with_conv=True and attn_type='vanilla' are supported")


class Encoder(nn.Module):
    """Image (B, in_channels, R, R) -> (B, z_channels, R/2^(L-1), R/2^(L-1))."""

    def __init__(self, *, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_resolutions: Sequence[int],
                 in_channels: int, resolution: int, z_channels: int, double_z: bool = True, dropout: float = 0.0,
                 resamp_with_conv: bool = True, attn_type: str = "vanilla", **_ignored):
        super().__init__()
        _check_resamp(resamp_with_conv, attn_type)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1,) + tuple(ch_mult)
        res = resolution
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            block_in = ch * in_mult[level]
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, ch * mult, dropout))
                block_in = ch * mult
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != len(ch_mult) - 1:
                stage.downsample = Downsample(block_in)
                res //= 2
            self.down.append(stage)
        self.mid = _mid(block_in, dropout)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for stage in self.down:
            h = _run_stage(stage, h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


def _run_stage(stage: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """A resolution level's ResnetBlocks, each followed by its attention block where the level has them."""
    for i, block in enumerate(stage.block):
        h = block(h)
        if len(stage.attn):
            h = stage.attn[i](h)
    return h


class Decoder(nn.Module):
    """(B, z_channels, r, r) -> image (B, out_ch, r*2^(L-1), r*2^(L-1))."""

    def __init__(self, *, ch: int, out_ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_resolutions: Sequence[int], resolution: int, z_channels: int, dropout: float = 0.0,
                 resamp_with_conv: bool = True, attn_type: str = "vanilla", give_pre_end: bool = False,
                 tanh_out: bool = False, **_ignored):
        super().__init__()
        _check_resamp(resamp_with_conv, attn_type)
        if give_pre_end or tanh_out:
            raise NotImplementedError("give_pre_end / tanh_out are not supported")
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, dropout)
        stages = []
        for level in reversed(range(len(ch_mult))):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, ch * ch_mult[level], dropout))
                block_in = ch * ch_mult[level]
                if res in attn_resolutions:
                    stage.attn.append(AttnBlock(block_in))
            if level != 0:
                stage.upsample = Upsample(block_in)
                res *= 2
            stages.insert(0, stage)  # index by level, as the checkpoint names (`up.0` is the finest)
        self.up = nn.ModuleList(stages)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for stage in reversed(self.up):
            h = _run_stage(stage, h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantiser (squared Euclidean) with a straight-through gradient."""

    def __init__(self, n_embed: int, embed_dim: int, chunk_codes: int = 1024):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        # bounds the (rows x codes) distance matrix: 4096 rows per 64x64 latent x 1024 codes = 16 MiB per
        # particle (256 MiB at 16). Chunks of the codebook, not of the rows: their number does not depend on the
        # batch size, so a compiled decoder keeps one graph when pruning or the optimiser changes the batch.
        self.chunk_codes = chunk_codes

    @torch.no_grad()
    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Codebook index of every latent vector: (B, C, H, W) -> (B, H, W); the first index on ties."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c).float()
        book = self.embedding.weight.float()
        # fp32 even under a bf16 autocast of the decoder: in bf16 a third of the codes flip (8192-entry codebook)
        with (torch.autocast(z.device.type, enabled=False) if torch.amp.is_autocast_available(z.device.type)
              else contextlib.nullcontext()):
            flat_sq = (flat ** 2).sum(1, keepdim=True)
            best = torch.full((flat.shape[0],), torch.inf, device=z.device)
            index = torch.zeros(flat.shape[0], dtype=torch.long, device=z.device)
            for start in range(0, book.shape[0], self.chunk_codes):
                part = book[start:start + self.chunk_codes]
                # |z|^2 + |e|^2 - 2 z.e, the original's expansion, but the dot product over the few latent channels
                # as multiply-adds, never a matmul that TF32 could round: the original's einsum rounds differently,
                # so a near-tie in float32 (about 0.01 % of noisy latent vectors) may take the other code
                dot = flat[:, :1] * part[:, 0]
                for j in range(1, c):
                    dot += flat[:, j:j + 1] * part[:, j]
                d_min, i_min = (flat_sq + (part ** 2).sum(1)).sub_(dot, alpha=2).min(1)
                closer = d_min < best                  # strict: an earlier chunk keeps a tie
                best = torch.where(closer, d_min, best)
                index = torch.where(closer, i_min + start, index)
        return index.reshape(b, h, w)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for indices (B, H, W) -> (B, C, H, W)."""
        return self.embedding.weight[idx].permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        q = self.lookup(self.indices(z)).to(z.dtype)
        # Straight-through: forward value q, gradient of the identity w.r.t. z.
        return z + (q - z).detach()


class VQModel(nn.Module):
    """VQ autoencoder as used by LDM (`VQModelInterface`): continuous encode, quantised decode."""

    def __init__(self, ddconfig: dict, embed_dim: int, n_embed: int):
        super().__init__()
        ddconfig = dict(ddconfig)
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))

    def decode(self, z: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        if quantize:
            z = self.quantize(z)
        return self.decoder(self.post_quant_conv(z))
