"""Checkpoints: safetensors weights plus a JSON config. Nothing is ever unpickled.

A score-model checkpoint is either a directory holding `config.json` and `model.safetensors`,
or a pair `<name>.safetensors` + `<name>.json`. The config records everything needed to rebuild
the model: {"format", "sde": {...}, "network": {"type", ...}, "sigma_data", "image_shape",
"data": {...}, "training": {...}}. The weights file may also hold `prior_mean`, the training-data mean
image the samplers start from (ScoreModel.prior_mean).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from .nets import NETWORKS, UNetConfig
from .score import ScoreModel
from .sde import sde_from_config

FORMAT = "sgm-inverse/1"
WEIGHTS_DIR = Path(__file__).parent / "weights"
# A folder searched before WEIGHTS_DIR for shipped names: weights installed outside the package, or
# candidate weights whose benchmarks are being re-run before they replace the shipped ones.
WEIGHTS_ENV = "SGM_INVERSE_WEIGHTS"
# Shipped reference checkpoints: name -> what they are (files: see shipped_weights).
SHIPPED = {
    "ellipses64": "random-ellipse CT phantoms, 1x64x64",
    "brain64": "MNI ICBM152 T1 slices, 1x64x64 (CT and MRI)",
    "digits32": "MNIST digits, 1x32x32",
    "patches32": "colour photo patches, 3x32x32",
    "general": "diverse grey corpus (brain, photographs, microscopy, phantoms), resolution-free: 1xSxS, S a multiple of 8",
}
# The training-data mean image (ScoreModel.prior_mean) in the weights file, beside the network's tensors.
PRIOR_MEAN_KEY = "prior_mean"
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}


def refuse_pickle(path: Path) -> None:
    """Raise ValueError for a file that is (or is named like) a pickle; it is never opened as one."""
    head = path.open("rb").read(4) if path.is_file() else b""
    # 0x80 starts a pickle stream; "PK" is torch.save's zip container (pickle inside).
    if path.suffix.lower() in _PICKLE_SUFFIXES or head[:1] == b"\x80" or head[:2] == b"PK":
        raise ValueError(f"{path} looks like a pickle/torch.save file; sgm-inverse never unpickles files "
                         f"(arbitrary code execution). Convert it to safetensors + a JSON config.")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_tensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def training_cost(config: dict) -> dict:
    """Images seen and seconds of a checkpoint's training, those of the run it was fine-tuned from
    (`init_from`, itself a total over its ancestors) included; keys missing from the record are left out."""
    own, parent = config.get("training", {}), config.get("init_from", {})
    return {k: own[k] + parent.get(k, 0) for k in ("images_seen", "seconds") if own.get(k) is not None}


def build_score_model(config: dict) -> ScoreModel:
    """Rebuild an (untrained) ScoreModel from a checkpoint config."""
    if config.get("format") != FORMAT:
        raise ValueError(f"unsupported checkpoint format {config.get('format')!r}; expected {FORMAT!r}")
    net_cfg = dict(config["network"])
    kind = net_cfg.pop("type", "UNet")
    if kind not in NETWORKS:
        raise ValueError(f"unknown network type {kind!r}; expected one of {sorted(NETWORKS)}")
    for key in ("channel_mult", "attn_resolutions"):
        if key in net_cfg:
            net_cfg[key] = tuple(net_cfg[key])
    network = NETWORKS[kind](UNetConfig(**net_cfg))
    return ScoreModel(network, sde_from_config(config["sde"]), sigma_data=config.get("sigma_data", 0.5),
                      config=config)


def model_config(model: ScoreModel, **extra) -> dict:
    """The JSON config describing `model` (plus data / training records in `extra`)."""
    # A custom network without a UNetConfig still trains and checkpoints; only its type is recorded
    # (load_score_model can rebuild networks listed in nets.NETWORKS).
    net_cfg = getattr(model.network, "config", None)
    shape = model.image_shape
    cfg = {"format": FORMAT, "sde": model.sde.config(),
           "network": {"type": type(model.network).__name__,
                       **(net_cfg.to_dict() if hasattr(net_cfg, "to_dict") else {})},
           "sigma_data": model.sigma_data, "image_shape": None if shape is None else list(shape)}
    for key, value in model.config.items():
        cfg.setdefault(key, value)
    cfg.update(extra)
    return cfg


def save_score_model(model: ScoreModel, path, **extra) -> Path:
    """Write `<path>/model.safetensors` and `<path>/config.json` (path a directory) or
    `<stem>.safetensors` + `<stem>.json` (path ending in .safetensors)."""
    path = Path(path)
    weights, cfg_path = checkpoint_paths(path, create=True)
    tensors = dict(model.network.state_dict())
    if getattr(model, "prior_mean", None) is not None:
        tensors[PRIOR_MEAN_KEY] = model.prior_mean
    atomic_save_tensors(tensors, weights)
    atomic_write_bytes(cfg_path, json.dumps(model_config(model, **extra), indent=2).encode())
    return weights


def checkpoint_paths(path: Path, create: bool = False) -> tuple[Path, Path]:
    """(weights, config) of `<stem>.safetensors` + `<stem>.json`, or of a directory's model.safetensors + config.json."""
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path / "model.safetensors", path / "config.json"


def shipped_weights(name: str) -> Path:
    """`<name>.safetensors` of a shipped name (its config: the same path with .json): in the folder
    $SGM_INVERSE_WEIGHTS where that holds it, else in WEIGHTS_DIR. Read at every call."""
    override = os.environ.get(WEIGHTS_ENV)
    if override and (Path(override).expanduser() / f"{name}.safetensors").exists():
        return Path(override).expanduser() / f"{name}.safetensors"
    return WEIGHTS_DIR / f"{name}.safetensors"


def resolve_checkpoint(name_or_path, shipped: dict = SHIPPED, kind: str = "checkpoint") -> tuple[Path, Path]:
    """Return (weights, config) paths for a name in `shipped` (see shipped_weights), a directory or
    a .safetensors file; `kind` names the thing in error messages."""
    name = str(name_or_path)
    if name in shipped:
        weights = shipped_weights(name)
        if not weights.exists():
            raise FileNotFoundError(f"shipped {kind} {name!r} is not in this installation ({weights})")
        return weights, weights.with_suffix(".json")
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no {kind} named {name!r}: not a shipped name ({', '.join(shipped)}) "
                                f"and no such file or directory")
    if path.is_file():
        refuse_pickle(path)
        if path.suffix != ".safetensors":
            raise ValueError(f"{path}: expected a .safetensors file or a {kind} directory")
    weights, cfg = checkpoint_paths(path)
    for p in (weights, cfg):
        if not p.exists():
            raise FileNotFoundError(f"{kind} {path} is missing {p.name}")
    refuse_pickle(weights)
    return weights, cfg


def load_score_model(name_or_path, device=None) -> ScoreModel:
    """Load a ScoreModel (EMA weights, eval mode) by shipped name or path; `device` defaults to CPU."""
    weights, cfg_path = resolve_checkpoint(name_or_path)
    config = json.loads(cfg_path.read_text())
    model = build_score_model(config)
    tensors = load_file(str(weights), device="cpu")
    mean = tensors.pop(PRIOR_MEAN_KEY, None)
    model.network.load_state_dict(tensors)
    model.prior_mean = mean
    return model.eval().requires_grad_(False).to(device or "cpu")
