"""Epsilon-prediction UNet with the module layout of the CompVis `openaimodel.UNetModel`.

Parameter names equal the original ones so `model.diffusion_model.*` tensors of a real
checkpoint load with strict=True; attention runs through `F.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm (32 groups) evaluated in float32, as the original does for half-precision safety."""

    def forward(self, x):
        # at least float32 (half-precision safety); a float64 model stays float64 (exactness tests, dtype=float64)
        return super().forward(x if x.dtype == torch.float64 else x.float()).to(x.dtype)


def norm32(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] of (possibly fractional) timesteps t of shape (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepBlock(nn.Module):
    """Marker base class: forward(x, emb) takes the timestep embedding."""


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that routes the timestep embedding / cross-attention context to the layers needing it."""

    def forward(self, x, emb, context=None):
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


class Downsample(nn.Module):
    """Stride-2 3x3 convolution (or average pooling without conv)."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling followed by an optional 3x3 convolution."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding (additive or scale-shift)."""

    def __init__(self, channels: int, emb_channels: int, dropout: float = 0.0, out_channels: int | None = None,
                 use_scale_shift_norm: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(norm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels))
        self.out_layers = nn.Sequential(norm32(out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with the legacy QKV layout: qkv channels are ordered (head, q|k|v, dim)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            assert channels % num_head_channels == 0, (channels, num_head_channels)
            self.num_heads = channels // num_head_channels
        self.norm = norm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)  # reshape, not view: channels_last inputs are not contiguous here
        qkv = self.qkv(self.norm(x))
        n = qkv.shape[-1]
        # Legacy ordering: split heads first, then q/k/v inside each head.
        q, k, v = qkv.reshape(b, self.num_heads, 3 * (c // self.num_heads), n).chunk(3, dim=2)
        # SDPA's default scale 1/sqrt(d) equals the original's two factors d^-1/4 on q and k.
        h = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        h = h.transpose(-1, -2).reshape(b, c, n)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class CrossAttention(nn.Module):
    """Multi-head attention of x over a context (self-attention when context is None)."""

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape

        def split(t):  # (B, N, H*D) -> (B, H, N, D)
            return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    """Gated GELU projection: x * gelu(gate)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x):
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward network (`net.0.proj`, `net.2`)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention and feed-forward, each residual."""

    def __init__(self, dim: int, n_heads: int, d_head: int, dropout: float = 0.0, context_dim: int | None = None):
        super().__init__()
        self.attn1 = CrossAttention(dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim=context_dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x, context=None):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context=context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the H*W tokens of a feature map, cross-attending to a context."""

    def __init__(self, in_channels: int, n_heads: int, d_head: int, depth: int = 1, dropout: float = 0.0,
                 context_dim: int | None = None):
        super().__init__()
        inner = n_heads * d_head
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6)
        self.proj_in = nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, n_heads, d_head, dropout=dropout, context_dim=context_dim)
             for _ in range(depth)])
        self.proj_out = nn.Conv2d(inner, in_channels, 1)

    def forward(self, x, context=None):
        b, _, h, w = x.shape
        y = self.proj_in(self.norm(x))
        # (B, C, H, W) -> (B, HW, C); a free view when the input is channels_last.
        y = y.permute(0, 2, 3, 1).reshape(b, h * w, -1)
        for block in self.transformer_blocks:
            y = block(y, context=context)
        y = y.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return self.proj_out(y) + x


class UNetModel(nn.Module):
    """openaimodel-style UNet: eps = unet(x, timesteps, context)."""

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Sequence[int], dropout: float = 0.0,
                 channel_mult: Sequence[int] = (1, 2, 4, 8), conv_resample: bool = True, num_heads: int = -1,
                 num_head_channels: int = -1, num_heads_upsample: int = -1, use_scale_shift_norm: bool = False,
                 use_spatial_transformer: bool = False, transformer_depth: int = 1, context_dim: int | None = None,
                 legacy: bool = True, **unsupported):
        super().__init__()
        # Options of the original that our checkpoints leave at their defaults; anything else is refused
        # rather than silently ignored.
        defaults = dict(dims=2, use_checkpoint=None, use_fp16=False, num_classes=None, resblock_updown=False,
                        use_new_attention_order=False, n_embed=None)
        bad = {k: v for k, v in unsupported.items()
               if k not in defaults or (k != "use_checkpoint" and v != defaults[k])}
        if bad:
            raise NotImplementedError(f"UNetModel options not supported: {bad}")
        if num_heads == -1 and num_head_channels == -1:
            raise ValueError("either num_heads or num_head_channels has to be set")
        if use_spatial_transformer and context_dim is None:
            raise ValueError("use_spatial_transformer needs context_dim")
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size = image_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.model_channels = model_channels
        attention_resolutions = set(attention_resolutions)
        emb_dim = 4 * model_channels

        def attention(ch: int, upsampling: bool):
            # Head bookkeeping of the original, `legacy` branch included (numerics only; shapes never change).
            if use_spatial_transformer:
                heads = num_heads if num_head_channels == -1 else ch // num_head_channels
                dim_head = ch // heads if (legacy or num_head_channels == -1) else num_head_channels
                return SpatialTransformer(ch, heads, dim_head, depth=transformer_depth, dropout=dropout,
                                          context_dim=context_dim)
            if num_head_channels != -1:
                return AttentionBlock(ch, num_head_channels=num_head_channels)
            return AttentionBlock(ch, num_heads=num_heads_upsample if (upsampling and legacy) else num_heads)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        skip_chans = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb_dim, dropout, mult * model_channels, use_scale_shift_norm)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(attention(ch, upsampling=False))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, conv_resample)))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, dropout, use_scale_shift_norm=use_scale_shift_norm),
            attention(ch, upsampling=False),
            ResBlock(ch, emb_dim, dropout, use_scale_shift_norm=use_scale_shift_norm),
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chans.pop(), emb_dim, dropout, model_channels * mult,
                                   use_scale_shift_norm)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(attention(ch, upsampling=True))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch, conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(norm32(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1))

    def forward(self, x, timesteps, context=None):
        """x: (B, C, H, W); timesteps: (B,) possibly fractional; context: (B, L, context_dim) or None."""
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h)
