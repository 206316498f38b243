"""The conditioning hook and the NFE counter shared by every sampler loop.

A `Conditioner` is how a measurement enters sampling without a copy of the loop:

    score(score_fn)        -> a (possibly) modified score function   (Bayes rule, DPS bookkeeping)
    before(x, t, gen)      -> x before each predictor / corrector update (projection methods)
    after(x, t, gen)       -> x after each update                         (DPS gradient step)
    final(x, gen)          -> x after the loop and the final denoise      (last data consistency)

The base class does nothing, so unconditional sampling is the special case.
"""
from __future__ import annotations

import torch


class Conditioner:
    def score(self, score_fn):
        return score_fn

    def before(self, x: torch.Tensor, t: torch.Tensor, generator=None) -> torch.Tensor:
        return x

    def after(self, x: torch.Tensor, t: torch.Tensor, generator=None) -> torch.Tensor:
        return x

    def final(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        return x


class CountingScore:
    """Wraps a score model and counts network evaluations (NFE)."""

    def __init__(self, score_model):
        self.score_model, self.sde, self.nfe = score_model, score_model.sde, 0

    def __call__(self, x, t):
        self.nfe += 1
        return self.score_model(x, t)


def lookup(table: dict, step, kind: str):
    """A step given as a function is used as is; a name is looked up in its family's table."""
    if callable(step):
        return step
    if step not in table:
        raise ValueError(f"unknown {kind} {step!r}; expected one of {sorted(table)} or a callable")
    return table[step]
