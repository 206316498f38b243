"""Building blocks of the NCSN++/DDPM++-style U-Net: time embedding, residual and attention blocks."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def group_norm(channels: int) -> nn.GroupNorm:
    # 32 groups as in DDPM++, fewer for thin layers so each group keeps >= 4 channels.
    groups = min(32, max(1, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, eps=1e-6)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar noise level c (B,) -> (B, dim) (NCSN++)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, c):
        arg = 2 * math.pi * c[:, None] * self.freqs[None, :].to(c.dtype)
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar (B,) -> (B, dim) (DDPM++)."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half))

    def forward(self, c):
        # Noise levels c are O(1); scale so the features span many periods.
        arg = 1000.0 * c[:, None] * self.freqs[None, :].to(c.dtype)
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv x2 with an additive time embedding and a 1x1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        # Zero-init the last conv so each block starts as the identity (stable deep training).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.skip(x) + h) / math.sqrt(2.0)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, residual."""

    def __init__(self, channels: int, heads: int = 1):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.heads = heads
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return (x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))) / math.sqrt(2.0)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
