"""Classifiers of images: a noise-conditional one for guidance, a plain one as a judge.

``NoiseConditionalClassifier`` models p_t(y | x_t) for x_t = alpha(t) x_0 + std(t) z, as
class-conditional sampling needs (Song et al. 2021): the Bayes term is
grad_x log softmax(f(x_t, t))[y]. Inputs are preconditioned like the score model
(see ``sgm_inverse.score``) so that every noise level looks O(1) to the network:

    x~ = x_t / alpha,   sigma~ = std / alpha,
    input = x~ / sqrt(sigma~^2 + 0.25),   c_noise = ln(sigma~) / 4,

and c_noise enters every residual block through a Fourier embedding.
Shapes: x (B, C, H, W), t (B,) (or a scalar) -> logits (B, num_classes).

``CleanClassifier`` is a plain CNN on clean images, ``forward(x) -> logits``. It is trained
separately and used only to judge generated digits, never for guidance, so that a guided
sample cannot score well merely by fooling the classifier that steered it.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..sde import SDE
from ..utils import append_dims, time_vector
from .layers import Downsample, FourierEmbedding, ResBlock, group_norm

SIGMA_DATA = 0.5  # as in ScoreModel: images in [0, 1] have std ~0.3-0.5


class NoiseConditionalClassifier(nn.Module):
    """Residual conv net f(x_t, t) -> logits with the noise level as input.

    Resolution halves after every level of ``channel_mult`` (one ResBlock per level; the
    first level works at full resolution), then GroupNorm-SiLU, global average pooling and
    a linear head. ``sde`` (keyword, required) fixes how t maps to the noise level; ``t`` is
    clamped to [sde.eps, sde.T] so that t = 0 (a clean image) is finite for every SDE.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 32, num_classes: int = 10,
                 base_channels: int = 32, channel_mult: tuple = (1, 2, 2, 2), fourier_scale: float = 4.0,
                 dropout: float = 0.0, *, sde: SDE):
        super().__init__()
        factor = 2 ** (len(channel_mult) - 1)
        if image_size % factor:
            raise ValueError(f"image_size {image_size} must be divisible by {factor}")
        self.sde = sde
        self.config = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes,
                       "base_channels": base_channels, "channel_mult": list(channel_mult),
                       "fourier_scale": fourier_scale, "dropout": dropout}
        self.image_shape, self.num_classes = (in_channels, image_size, image_size), num_classes
        ch, emb_dim = base_channels, 4 * base_channels
        # c_noise spans only ~[-1.2, 0.8] for sigma in [0.01, 25]: a moderate Fourier scale
        # keeps neighbouring noise levels close in embedding space.
        self.embed = nn.Sequential(FourierEmbedding(ch, fourier_scale), nn.Linear(ch, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.blocks, self.downs = nn.ModuleList(), nn.ModuleList()
        c = ch
        for level, mult in enumerate(channel_mult):
            self.blocks.append(ResBlock(c, ch * mult, emb_dim, dropout))
            c = ch * mult
            self.downs.append(Downsample(c) if level < len(channel_mult) - 1 else nn.Identity())
        self.norm_out, self.head = group_norm(c), nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = time_vector(t, x.shape[0], x).clamp(self.sde.eps, self.sde.T)
        alpha, std = self.sde.scale_std(t)
        sigma = std / alpha
        h = x / append_dims(alpha * (sigma ** 2 + SIGMA_DATA ** 2).sqrt(), x.ndim)
        emb = self.embed(sigma.log() / 4)
        h = self.conv_in(h)
        for block, down in zip(self.blocks, self.downs):
            h = down(block(h, emb))
        return self.head(F.silu(self.norm_out(h)).mean(dim=(2, 3)))


class CleanClassifier(nn.Module):
    """Plain CNN on clean images: 3 x (conv-BN-ReLU-conv-BN-ReLU-maxpool), dropout, linear.

    ``forward(x) -> logits`` for x (B, C, H, W) in [0, 1]; H, W divisible by 8. A judge of
    generated images only (independent of the guidance classifier).
    """

    def __init__(self, in_channels: int = 1, image_size: int = 32, num_classes: int = 10,
                 base_channels: int = 32, dropout: float = 0.3):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"image_size {image_size} must be divisible by 8")
        self.config = {"in_channels": in_channels, "image_size": image_size, "num_classes": num_classes,
                       "base_channels": base_channels, "dropout": dropout}
        self.image_shape, self.num_classes = (in_channels, image_size, image_size), num_classes
        layers, c = [], in_channels
        for mult in (1, 2, 2):
            out = base_channels * mult
            for c_in in (c, out):
                layers += [nn.Conv2d(c_in, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            layers.append(nn.MaxPool2d(2))
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


CLASSIFIERS = {"NoiseConditionalClassifier": NoiseConditionalClassifier, "CleanClassifier": CleanClassifier}
