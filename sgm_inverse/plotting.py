"""PNG output: image grids and labelled comparison panels (matplotlib, no display needed)."""
from __future__ import annotations

import math

import numpy as np
import torch


def _to_numpy_images(x) -> np.ndarray:
    """(B, C, H, W) tensor/array -> (B, H, W, C) float array in [0, 1]."""
    x = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return np.clip(np.transpose(x, (0, 2, 3, 1)), 0.0, 1.0)


def save_grid(x, path, nrow: int | None = None, pad: int = 2) -> None:
    """Tile (B, C, H, W) images in [0, 1] into one PNG (grey for C = 1, RGB for C = 3)."""
    import matplotlib.image
    imgs = _to_numpy_images(x)
    b, h, w, c = imgs.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    ncol = math.ceil(b / nrow)
    canvas = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float32)
    for i in range(b):
        r, q = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    matplotlib.image.imsave(str(path), canvas[..., 0] if c == 1 else canvas, cmap="gray", vmin=0, vmax=1)


def save_panels(columns: dict, path, rows: int | None = None, cmaps: dict | None = None,
                title: str | None = None) -> None:
    """A figure with one column per entry {title: (B, C, H, W) images}, one row per image.

    `title` (e.g. the setting and the run's provenance) is printed above the panels.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cmaps = cmaps or {}
    arrays = {k: _to_numpy_images(v) if not k.startswith(("std", "|error|")) else
              (v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)).transpose(0, 2, 3, 1)
              for k, v in columns.items()}
    n = rows or min(len(a) for a in arrays.values())
    fig, axes = plt.subplots(n, len(arrays), figsize=(2.2 * len(arrays), 2.2 * n), squeeze=False)
    for j, (title, a) in enumerate(arrays.items()):
        for i in range(n):
            img = a[i][..., 0] if a[i].shape[-1] == 1 else a[i]
            ax = axes[i][j]
            ax.imshow(img, cmap=cmaps.get(title, "gray"), **({} if title.startswith(("std", "|error|")) else
                                                             {"vmin": 0, "vmax": 1}))
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)
