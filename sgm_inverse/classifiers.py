"""Classifier checkpoints: safetensors weights plus a JSON config; nothing is ever unpickled.

A checkpoint is a pair ``<name>.safetensors`` + ``<name>.json``, or a directory holding
``model.safetensors`` + ``config.json``. The config is
{"format", "network": {"type", ...constructor arguments}, "sde": {...} (noise-conditional
classifiers only), "image_shape", "num_classes", ...records (data, training, metrics)}.

    clf = load_classifier("digits32_classifier")        # p_t(y | x_t), for ClassifierGuidance
    judge = load_classifier("digits32_judge")           # clean-image CNN, to score samples
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from .checkpoints import atomic_save_tensors, atomic_write_bytes, checkpoint_paths, resolve_checkpoint
from .nets.classifier import CLASSIFIERS
from .sde import sde_from_config

FORMAT = "sgm-inverse-classifier/1"
# Shipped classifiers: name -> what they are (files: see checkpoints.shipped_weights).
SHIPPED_CLASSIFIERS = {
    "digits32_classifier": "noise-conditional MNIST classifier for guidance, VE SDE (0.01, 25) like digits32",
    "digits32_judge": "clean-image MNIST CNN, an independent judge of generated digits (not for guidance)",
}


def classifier_config(model: nn.Module, **record) -> dict:
    """The JSON config that rebuilds ``model``, plus free-form ``record`` entries."""
    kind = type(model).__name__
    if kind not in CLASSIFIERS:
        raise ValueError(f"cannot save a {kind}; expected one of {sorted(CLASSIFIERS)}")
    cfg = {"format": FORMAT, "network": {"type": kind, **model.config},
           "image_shape": list(model.image_shape), "num_classes": model.num_classes}
    if getattr(model, "sde", None) is not None:
        cfg["sde"] = model.sde.config()
    cfg.update(record)
    return cfg


def save_classifier(model: nn.Module, path, **record) -> Path:
    """Write weights and config atomically; ``path`` a ``.safetensors`` file or a directory.
    Returns the weights path."""
    weights, cfg_path = checkpoint_paths(Path(path), create=True)
    atomic_save_tensors(model.state_dict(), weights)
    atomic_write_bytes(cfg_path, json.dumps(classifier_config(model, **record), indent=2).encode())
    return weights


def resolve_classifier(name_or_path) -> tuple[Path, Path]:
    """(weights, config) paths of a shipped name, a ``.safetensors`` file or a directory."""
    return resolve_checkpoint(name_or_path, SHIPPED_CLASSIFIERS, kind="classifier")


def build_classifier(config: dict) -> nn.Module:
    """An untrained classifier from a config (the SDE too, for noise-conditional ones)."""
    if config.get("format") != FORMAT:
        raise ValueError(f"unsupported classifier format {config.get('format')!r}; expected {FORMAT!r}")
    net = dict(config["network"])
    kind = net.pop("type", None)
    if kind not in CLASSIFIERS:
        raise ValueError(f"unknown classifier type {kind!r}; expected one of {sorted(CLASSIFIERS)}")
    if "sde" in config:
        net["sde"] = sde_from_config(config["sde"])
    if "channel_mult" in net:
        net["channel_mult"] = tuple(net["channel_mult"])
    return CLASSIFIERS[kind](**net)


def load_classifier(name_or_path, device=None) -> nn.Module:
    """Load a classifier by shipped name or path, in eval mode with frozen parameters (gradients
    still flow to the input, as guidance needs); ``device`` defaults to CPU."""
    weights, cfg_path = resolve_classifier(name_or_path)
    model = build_classifier(json.loads(cfg_path.read_text()))
    model.load_state_dict(load_file(str(weights), device="cpu"))
    return model.eval().requires_grad_(False).to(device or "cpu")
