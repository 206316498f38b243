"""A whole-image score assembled from patch scores with a random shift per evaluation (PaDIS, Hu et al. 2024).

For an image of H x W and patches of P x P, the image is zero-padded to (k_h + 1) P x (k_w + 1) P
(k = floor(H / P)), placed at a random offset (dy, dx) in [0, P]², cut into (k_h + 1)(k_w + 1)
non-overlapping patches, each scored by the patch model as if it were a whole image, and the patch
scores are put back (summed, no averaging: the patches do not overlap) and cropped to H x W:

    s(x, t) = crop_{dy,dx}( Σ_j  P_jᵀ s_patch(P_j pad_{dy,dx}(x), t) )

A fresh offset at every call moves the patch seams, so over a sampling run no pixel is always at a
seam. The alternative for a convolutional, crop-trained network is to apply it to the whole image
directly; benchmarks/patch_vs_direct.py measures both (on brain validation slices at 128 x 128, with the command
line's sampler, they were within 0.08 dB of each other, 64 px patches at 1.6-2.1x the time, so the library
applies the network directly) and benchmarks/real_scans.py can add a patch-assembled row (`--patch`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class PatchScore:
    """ScoreModel-protocol wrapper: `.sde`, `__call__(x, t)`; x (B, C, H, W), t (B,).

    `max_batch` bounds how many patches go through the network at once.
    """

    def __init__(self, score_model, patch_size: int, generator: torch.Generator | None = None,
                 max_batch: int = 64):
        self.score_model, self.patch_size, self.max_batch = score_model, int(patch_size), int(max_batch)
        self.sde = score_model.sde
        self.generator = generator or torch.Generator().manual_seed(0)
        self.prior_mean = getattr(score_model, "prior_mean", None)
        self.config = getattr(score_model, "config", {})

    def __getattr__(self, name):        # image_shape, accepts_shape, resolution_free, ... of the patch model
        if name == "score_model":
            raise AttributeError(name)
        return getattr(self.score_model, name)

    def parameters(self):
        return self.score_model.parameters()

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch_size
        nh, nw = h // p + 1, w // p + 1
        dy, dx = (int(v) for v in torch.randint(0, p + 1, (2,), generator=self.generator))
        dy, dx = min(dy, nh * p - h), min(dx, nw * p - w)
        padded = F.pad(x, (dx, nw * p - w - dx, dy, nh * p - h - dy))
        # (B, C, nh, p, nw, p) -> (B * nh * nw, C, p, p)
        patches = padded.reshape(b, c, nh, p, nw, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)
        tt = t.repeat_interleave(nh * nw)
        out = torch.cat([self.score_model(patches[i:i + self.max_batch], tt[i:i + self.max_batch])
                         for i in range(0, patches.shape[0], self.max_batch)])
        out = out.reshape(b, nh, nw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, nh * p, nw * p)
        return out[:, :, dy:dy + h, dx:dx + w]
