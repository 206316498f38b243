"""Fine-tuning a checkpoint (`sgm-inverse train --init-from`): a trainable copy of a parent score model with a
record of where it came from, and recognising a fine-tuning run already in a workdir."""
from __future__ import annotations

import json
from pathlib import Path


def fine_tune_record(workdir) -> dict | None:
    """The EMA config of a fine-tuning run already in `workdir` (one started from a parent checkpoint), else None.
    Read from its EMA export, or from the metadata of its resume files where only those were kept."""
    from .training import RESUME_FILES, _state_metadata
    workdir = Path(workdir)
    path, resume = workdir / "ema" / "config.json", workdir / RESUME_FILES[1]
    if path.exists():
        config = json.loads(path.read_text())
    elif resume.exists():
        meta = _state_metadata(resume)
        config = {**json.loads(meta["model_config"]), **json.loads(meta.get("record", "{}"))}
    else:
        return None
    return config if "init_from" in config else None


def architecture(config: dict) -> dict:
    """The part of a checkpoint config that rebuilds the model (format, SDE, network, sigma_data, image shape)."""
    return {k: config[k] for k in ("format", "sde", "network", "sigma_data", "image_shape") if k in config}


def init_from(checkpoint, image_shape: tuple | None = None) -> tuple:
    """(model, record): a trainable copy of a checkpoint's score model (architecture, SDE and weights) and a record
    of where it came from, so a fine-tuned checkpoint states its whole training cost (images seen and seconds of
    the parent and of the parent's own ancestors). `checkpoint`: a shipped name, a checkpoint directory or a
    training workdir's state. ValueError when the model's images are not `image_shape` (C, H, W)."""
    from . import load_score_model
    from .checkpoints import training_cost
    from .training import STATE_FILE, ema_from_state
    if (Path(checkpoint) / STATE_FILE).exists() and not (Path(checkpoint) / "config.json").exists():
        model = ema_from_state(checkpoint).requires_grad_(True)   # a committed training state
    else:
        model = load_score_model(checkpoint).requires_grad_(True)
    record = {"checkpoint": str(checkpoint), "step": model.config.get("training", {}).get("step"),
              **training_cost(model.config)}
    # Keep only what rebuilds the model: the parent's data, command and shipping records are not the child's.
    model.config = architecture(model.config)
    if image_shape is not None and tuple(model.image_shape) != tuple(image_shape):
        raise ValueError(f"{checkpoint} is a model of {tuple(model.image_shape)} images, "
                         f"the data are {tuple(image_shape)}")
    return model, record


def fine_tune_start(workdir, checkpoint=None, image_shape: tuple | None = None) -> tuple | None:
    """(model, init_from record) for a training run in `workdir` that fine-tunes a parent, else None. A fine-tuning
    run already in workdir is resumed with its parent's architecture (`checkpoint` is then ignored); otherwise
    `checkpoint`, where given, is copied (`init_from`)."""
    previous = fine_tune_record(workdir)
    if previous is not None:
        from .checkpoints import build_score_model
        return build_score_model(architecture(previous)), previous["init_from"]
    return init_from(checkpoint, image_shape) if checkpoint else None
