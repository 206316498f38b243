"""Time-conditional U-Net in the NCSN++/DDPM++ family.

    F(x, c): (B, C, H, W) x (B,) -> (B, C, H, W)

x is the preconditioned input and c the noise conditioning (both O(1)); the output is
an O(1) quantity that `ScoreModel` turns into a score. H and W must be divisible by
2^(len(channel_mult) - 1).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .layers import AttentionBlock, Downsample, FourierEmbedding, ResBlock, SinusoidalEmbedding, Upsample, group_norm


@dataclass
class UNetConfig:
    in_channels: int = 1
    base_channels: int = 32
    channel_mult: tuple = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (16,)
    image_size: int = 64
    dropout: float = 0.0
    embedding: str = "fourier"  # "fourier" (NCSN++) or "sinusoidal" (DDPM++)
    heads: int = 1
    # False: no attention anywhere (with attn_resolutions=()), a purely convolutional network whose
    # output at a pixel depends only on a neighbourhood: it applies at any size divisible by 2^(levels-1)
    mid_attention: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"], d["attn_resolutions"] = list(self.channel_mult), list(self.attn_resolutions)
        return d


_EMBEDDINGS = {"fourier": FourierEmbedding, "sinusoidal": SinusoidalEmbedding}


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None, **kwargs):
        super().__init__()
        cfg = config or UNetConfig(**kwargs)
        if cfg.embedding not in _EMBEDDINGS:
            raise ValueError(f"embedding must be one of {sorted(_EMBEDDINGS)}, got {cfg.embedding!r}")
        factor = 2 ** (len(cfg.channel_mult) - 1)
        if cfg.image_size % factor:
            raise ValueError(f"image_size {cfg.image_size} must be divisible by {factor}")
        self.config = cfg
        ch, emb_dim = cfg.base_channels, 4 * cfg.base_channels
        self.embed = nn.Sequential(_EMBEDDINGS[cfg.embedding](ch), nn.Linear(ch, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skips, res, c = [ch], cfg.image_size, ch
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                block = nn.ModuleList([ResBlock(c, ch * mult, emb_dim, cfg.dropout)])
                c = ch * mult
                if res in cfg.attn_resolutions:
                    block.append(AttentionBlock(c, cfg.heads))
                self.down.append(block)
                skips.append(c)
            if level != len(cfg.channel_mult) - 1:
                self.down.append(nn.ModuleList([Downsample(c)]))
                skips.append(c)
                res //= 2

        mid_attn = [AttentionBlock(c, cfg.heads)] if cfg.mid_attention else []
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, cfg.dropout), *mid_attn,
                                  ResBlock(c, c, emb_dim, cfg.dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                block = nn.ModuleList([ResBlock(c + skips.pop(), ch * mult, emb_dim, cfg.dropout)])
                c = ch * mult
                if res in cfg.attn_resolutions:
                    block.append(AttentionBlock(c, cfg.heads))
                self.up.append(block)
            if level != 0:
                self.up.append(nn.ModuleList([Upsample(c)]))
                res *= 2

        self.norm_out = group_norm(c)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _run(block, h, emb):
        for layer in block:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = self._run(block, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for block in self.up:
            if isinstance(block[0], ResBlock):
                h = torch.cat([h, hs.pop()], dim=1)
            h = self._run(block, h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))
