"""PNG output: image grids and labelled comparison panels (matplotlib, no display needed)."""
from __future__ import annotations

import math
import textwrap

import numpy as np
import torch


def _to_numpy_images(x) -> np.ndarray:
    """(B, C, H, W) tensor/array -> (B, H, W, C) float array in [0, 1]."""
    x = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return np.clip(np.transpose(x, (0, 2, 3, 1)), 0.0, 1.0)


def save_grid(x, path, nrow: int | None = None, pad: int = 2) -> None:
    """Tile (B, C, H, W) images in [0, 1] into one PNG (grey for C = 1, RGB for C = 3)."""
    import matplotlib.image
    nrow = nrow or math.ceil(math.sqrt(len(x)))
    canvas = grid_canvas(x, nrow, pad)
    matplotlib.image.imsave(str(path), canvas[..., 0] if canvas.shape[-1] == 1 else canvas, cmap="gray",
                            vmin=0, vmax=1)


def grid_canvas(x, nrow: int, pad: int = 2) -> np.ndarray:
    """(B, C, H, W) images in [0, 1] -> one (rows (H + pad) + pad, nrow (W + pad) + pad, C) canvas, white gaps."""
    imgs = _to_numpy_images(x)
    b, h, w, c = imgs.shape
    ncol = math.ceil(b / nrow)
    canvas = np.ones((ncol * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.float32)
    for i in range(b):
        r, q = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    return canvas


def save_grid_sections(sections: dict, path, nrow: int = 8, title: str | None = None, scale: int = 1) -> None:
    """One PNG of labelled grids stacked top to bottom: {label: (B, C, H, W) images in [0, 1]}.

    E.g. {"held-out": ..., "training images, augmented as in training": ..., "samples": ...}. Each section
    is tiled `nrow` wide at `scale` screen pixels per image pixel, under a strip with its label.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canvases = [(k, np.kron(grid_canvas(v, nrow), np.ones((scale, scale, 1), np.float32)))
                for k, v in sections.items() if len(v)]
    label_px, line_px = 20, 14
    title_lines = textwrap.wrap(title, 100) if title else []
    width = max(max(c.shape[1] for _, c in canvases), 360)
    height = len(title_lines) * line_px + sum(label_px + c.shape[0] for _, c in canvases) + 4
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    y = height - 2                                     # running top edge, in pixels from the bottom
    for line in title_lines:
        fig.text(4 / width, y / height, line, va="top", fontsize=7)
        y -= line_px
    for label, canvas in canvases:
        fig.text(4 / width, (y - 3) / height, label, va="top", fontsize=9)
        y -= label_px
        h, w = canvas.shape[:2]
        ax = fig.add_axes((0, (y - h) / height, w / width, h / height))
        ax.imshow(canvas[..., 0] if canvas.shape[-1] == 1 else canvas, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        y -= h
    fig.savefig(str(path), dpi=dpi)
    plt.close(fig)


def _is_map(name: str) -> bool:
    """Columns shown with their own colour scale (uncertainty and error maps), not as [0, 1] images."""
    return "std" in name or "error" in name


def save_panels(columns: dict, path, rows: int | None = None, cmaps: dict | None = None,
                title: str | None = None) -> None:
    """A figure with one column per entry {name: (B, C, H, W) images}, one row per image.

    Columns whose name contains "std" or "error" are maps with their own colour scale (magma);
    the others are images in [0, 1]. `title` (e.g. the setting and the run's provenance) goes on top.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cmaps = cmaps or {}
    arrays = {}
    for name, v in columns.items():
        if _is_map(name):
            v = v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            arrays[name] = v.transpose(0, 2, 3, 1)
        else:
            arrays[name] = _to_numpy_images(v)
    n = rows or min(len(a) for a in arrays.values())
    fig, axes = plt.subplots(n, len(arrays), figsize=(2.2 * len(arrays), 2.2 * n + (0.4 if title else 0)),
                             squeeze=False)
    for j, (name, a) in enumerate(arrays.items()):
        for i in range(n):
            img = a[i][..., 0] if a[i].shape[-1] == 1 else a[i]
            ax = axes[i][j]
            if _is_map(name):
                ax.imshow(img if img.ndim == 2 else img.mean(-1), cmap=cmaps.get(name, "magma"))
            else:
                ax.imshow(img, cmap=cmaps.get(name, "gray"), vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    if title:  # wrapped to the figure: long benchmark commands otherwise run off both edges
        width = max(40, int(fig.get_figwidth() * 16))  # ~16 characters per inch at 7 pt
        fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.split("\n")), fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)
