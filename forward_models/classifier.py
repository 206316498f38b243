"""Classifier guidance: a noise-conditional classifier as the likelihood of a class label.

    log p_t(y | x_t) = scale * log_softmax(classifier(x_t, t))[y],   y: (B,) int64 labels

``time_dependent = True``: the sampler applies the Bayes rule at every t with this
term as is (Song et al. 2021, class-conditional sampling). ``scale`` is the guidance
strength (an inverse temperature). ``forward(x)`` returns the logits (B, K); they are
not a physical measurement, only what ``log_likelihood`` is built from.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import ForwardModel, _as_tensor

__all__ = ["ClassifierGuidance"]


class ClassifierGuidance(ForwardModel):
    """Wraps ``classifier(x, t) -> logits (B, K)``; ``t`` is the diffusion time (B,)."""

    time_dependent = True

    def __init__(self, classifier: nn.Module, scale: float = 1.0):
        super().__init__(image_shape=getattr(classifier, "image_shape", None))
        self.classifier = classifier
        self.scale = float(scale)
        self.num_classes = getattr(classifier, "num_classes", None)

    def _measurement_shape(self, image_shape):
        return ()

    @property
    def measurement_dtype(self) -> torch.dtype:
        return torch.int64

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K); ``t`` defaults to 0 (clean images)."""
        if t is None:
            t = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        elif t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.classifier(x, t)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor, t=None) -> torch.Tensor:
        """scale * log softmax(classifier(x_t, t))[b, y_b] -> (B,)."""
        logp = torch.log_softmax(self(x, t), dim=-1)
        return self.scale * logp.gather(-1, y.long().reshape(-1, 1).to(logp.device)).squeeze(-1)

    def simulate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw labels y ~ softmax(classifier(x, 0)) (B,) through ``generator``."""
        p = torch.softmax(self(x), dim=-1)
        dev = generator.device if generator is not None else p.device
        return torch.multinomial(p.to(dev), 1, generator=generator).squeeze(-1).to(p.device)

    def check_measurement(self, y, batch_size: int | None = None) -> torch.Tensor:
        """Integer labels (B,) (a scalar becomes (1,)), each in [0, num_classes) if known."""
        y = _as_tensor(y)
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"class labels must be integers of shape (B,); got dtype {y.dtype}")
        y = y.long().reshape(1) if y.ndim == 0 else y.long()
        if y.ndim != 1:
            raise ValueError(f"class labels have shape {tuple(y.shape)}; expected (B,)")
        if batch_size is not None and y.shape[0] != batch_size:
            raise ValueError(f"class labels have shape {tuple(y.shape)}; expected ({batch_size},)")
        k = self.num_classes
        if k is not None and ((y < 0) | (y >= k)).any():
            raise ValueError(f"class labels must lie in [0, {k}); got min {int(y.min())}, max {int(y.max())}")
        return y
