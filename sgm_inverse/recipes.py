"""Reference training recipes (`sgm-inverse train NAME`): the data set, image size and U-Net of each shipped
prior, and the same for a data set name or an image folder of one's own."""
from __future__ import annotations

from pathlib import Path

REFERENCE_RECIPES = {
    # name: (dataset, image_size, channels, sigma_max, unet overrides)
    "ellipses64": ("ellipses", 64, 1, 40.0, {}),
    "brain64": ("brain", 64, 1, 40.0, {}),
    "digits32": ("digits", 32, 1, 25.0, {"channel_mult": (1, 2, 2), "attn_resolutions": (8,)}),
    "patches32": ("patches", 32, 3, 25.0, {"channel_mult": (1, 2, 2), "attn_resolutions": (8,)}),
    # the resolution-free grey prior: no attention, so it applies at any size divisible by 8
    "general": ("general", 64, 1, 80.0, {"attn_resolutions": (), "mid_attention": False}),
}
DEFAULT_SIGMA_MAX = 40.0   # VE SDE sigma_max for data that are not a reference recipe


def recipe_dataset(name: str, image_size: int | None = None):
    """(dataset name, training set) of a reference recipe, a data set name (`sgm_inverse.data.get_dataset`) or
    an image folder (FOLDER/train when it exists, a FOLDER/test beside it never trained on; else FOLDER).
    image_size: overrides the recipe's size (64 for data sets and folders where None). Unknown names raise
    ValueError or FileNotFoundError."""
    from .data import get_dataset
    dataset_name, size = REFERENCE_RECIPES[name][:2] if name in REFERENCE_RECIPES else (name, 64)
    size = image_size or size
    if Path(dataset_name).is_dir():
        from .data.folder import ImageFolder
        return dataset_name, ImageFolder(dataset_name, image_size=size, split="train")
    data_kwargs = {"image_size": size} if dataset_name in ("ellipses", "brain") else {}
    return dataset_name, get_dataset(dataset_name, "train", **data_kwargs)


def recipe_model(name: str, image_shape, *, base_channels: int = 32, sigma_max: float | None = None):
    """A new (untrained) ScoreModel for images of (C, H, W) = image_shape: a U-Net with the recipe's overrides
    (defaults for other data) and a VE SDE from 0.01 to sigma_max (the recipe's where None)."""
    from .nets import UNet, UNetConfig
    from .score import ScoreModel
    from .sde import VESDE
    recipe_sigma, overrides = REFERENCE_RECIPES[name][3:] if name in REFERENCE_RECIPES else (DEFAULT_SIGMA_MAX, {})
    cfg = UNetConfig(in_channels=image_shape[0], image_size=image_shape[-1], base_channels=base_channels,
                     **overrides)
    return ScoreModel(UNet(cfg), VESDE(0.01, sigma_max or recipe_sigma), sigma_data=0.5)
