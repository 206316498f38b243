"""Data sets, all offline: items are float32 tensors (C, H, W) in [0, 1].

    name        class          item shape       splits (train / val / test)
    ellipses    Ellipses       (1, S, S)        100 000 virtual / 200 / 200, disjoint seeds
    brain       BrainSlices    (1, S, S)        162 / 60 / 71 MNI152 slices, held-out slabs
    digits      Digits         (1, 32, 32)      4000 / 500 / 500 MNIST, stratified
    patches     ColorPatches   (3, 32, 32)      crops; whole photographs held out
    folder      ImageFolder    (C, H, W)        your PNG / JPEG / .npy / DICOM files
    general     GeneralCorpus  (1, S, S)        crops of several sizes of a diverse grey corpus

Every data set has ``split``, ``image_shape`` and ``augment(batch, generator) -> batch``
(batched, generator-driven, so training is reproducible from its seed); the same
arguments always give bit-identical items. Brain and digits need their files put in
place once: ``python data_scripts/prepare_brain.py && python data_scripts/prepare_digits.py``.
"""
from .augment import no_augment, random_affine_elastic, random_hflip
from .brain import BrainSlices
from .dicom import dicom_to_unit, read_dicom
from .digits import Digits
from .ellipses import Ellipses, ellipse_phantom
from .folder import ImageFolder, read_unit_image
from .general import GeneralCorpus
from .patches import ColorPatches

DATASETS = {"ellipses": Ellipses, "brain": BrainSlices, "digits": Digits,
            "patches": ColorPatches, "folder": ImageFolder,
            "general": GeneralCorpus}


def get_dataset(name: str, split: str = "train", image_size: int | None = None, **kw):
    """``DATASETS[name](split=split, image_size=image_size, **kw)``; ``image_size`` is the
    patch size for 'patches' and is left to the class default when None."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")
    if image_size is not None:
        kw["patch_size" if name == "patches" else "image_size"] = image_size
    return DATASETS[name](split=split, **kw)


__all__ = ["DATASETS", "get_dataset", "Ellipses", "BrainSlices", "Digits", "ColorPatches",
           "ImageFolder", "GeneralCorpus", "read_dicom", "dicom_to_unit", "read_unit_image", "ellipse_phantom",
           "random_affine_elastic", "random_hflip", "no_augment"]
