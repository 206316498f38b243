"""solve(): the one place where a measurement, a forward model and a score model meet."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .conditioning import Bayes, DPS, Projection
from .samplers import pc_sample

# sampler name -> (predictor, corrector)
SAMPLERS = {"pc": ("reverse_diffusion", "langevin"), "reverse_diffusion": ("reverse_diffusion", "none"),
            "euler_maruyama": ("euler_maruyama", "none"), "ancestral": ("ancestral", "none")}
METHODS = ("auto", "bayes", "projection", "dps")


@dataclass
class Solution:
    """Posterior samples and their summaries.

    samples (n, B, C, H, W); mean, std (B, C, H, W) pixelwise over the n samples (std = the
    uncertainty map, zero when n = 1); residual (n, B) = ||A x - y|| per sample (NaN for
    time-dependent models, whose "measurement" is a label); nfe score evaluations per sample.
    """

    samples: torch.Tensor
    residual: torch.Tensor
    nfe: int
    seconds: float
    settings: dict = field(default_factory=dict)

    @property
    def mean(self) -> torch.Tensor:
        return self.samples.mean(0)

    @property
    def std(self) -> torch.Tensor:
        n = self.samples.shape[0]
        return self.samples.std(0) if n > 1 else torch.zeros_like(self.samples[0])


def _model_device(score_model) -> torch.device:
    params = getattr(score_model, "parameters", None)
    if params is not None:
        p = next(iter(params()), None)
        if p is not None:
            return p.device
    return torch.device("cpu")


def pick_method(forward_model) -> str:
    """bayes for time-dependent models, projection for linear models with A = P(Lambda) T, else dps."""
    if getattr(forward_model, "time_dependent", False):
        return "bayes"
    if getattr(forward_model, "has_decomposition", False):
        return "projection"
    return "dps"


def solve(measurement, forward_model, score_model, *, method: str = "auto", sampler: str = "pc",
          steps: int = 500, corrector_steps: int = 1, snr: float = 0.16, n_samples: int = 1,
          seed: int | None = None, progress: bool = True, **method_options) -> Solution:
    """Sample x ~ p(x | y) for y = A(x) + noise with the prior given by `score_model`.

    measurement: (B, *measurement_shape) or one unbatched measurement; forward_model: a
    `forward_models.ForwardModel`; score_model: anything with `.sde` and `__call__(x, t)`.
    method: "bayes" | "projection" | "dps" | "auto"; method_options: `lam`, `consistency`
    ("transform": Song et al.'s step in the transform domain; "cg": the minimum-norm correction by
    CG, forward and adjoint only; default: the forward model's `default_consistency`),
    `cg_iterations` and `noise_aware` (default True: with forward_model.noise_std > 0 the cg step, and
    the transform step where it is an exact projection, are damped so they do not fit the noise, see
    `Projection`) (projection),
    `zeta` (dps), `predictor` / `corrector` (override the sampler's pair).
    All B measurements and n_samples samples of each run in one batch of n_samples * B.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {tuple(SAMPLERS)}")
    if n_samples < 1 or steps < 1:
        raise ValueError(f"n_samples and steps must be >= 1, got {n_samples} and {steps}")
    predictor, corrector = SAMPLERS[sampler]
    predictor = method_options.pop("predictor", predictor)
    corrector = method_options.pop("corrector", corrector)
    options = {"projection": ("lam", "consistency", "cg_iterations", "noise_aware"), "dps": ("zeta",), "bayes": ()}
    method = pick_method(forward_model) if method == "auto" else method
    unknown = set(method_options) - set(options[method])
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method {method!r}; expected {options[method]}")

    image_shape = getattr(forward_model, "image_shape", None) or getattr(score_model, "image_shape", None)
    if image_shape is None:
        raise ValueError("the forward model has no image_shape (C, H, W); set forward_model.image_shape")
    model_shape = getattr(score_model, "image_shape", None)
    if model_shape is not None and tuple(model_shape) != tuple(image_shape):
        raise ValueError(f"forward model image shape {tuple(image_shape)} does not match the score model's "
                         f"{tuple(model_shape)}")
    device = _model_device(score_model)
    forward_model = forward_model.to(device)
    y = forward_model.check_measurement(measurement).to(device)   # also converts NumPy arrays
    if y.is_floating_point():
        y = y.float()
    batch = y.shape[0]
    y_rep = y.repeat(n_samples, *([1] * (y.ndim - 1)))   # sample-major: row k * B + b
    if method == "projection" and not hasattr(forward_model, "adjoint"):
        raise ValueError("method 'projection' needs a linear forward model (forward and adjoint); use method='dps'")
    if method == "projection":  # resolved, so sol.settings says what ran
        method_options.setdefault("consistency", forward_model.default_consistency)
        method_options.setdefault("noise_aware", True)

    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, (1,)))
    generator = torch.Generator(device=device).manual_seed(seed)
    if method == "bayes":
        conditioner = Bayes(forward_model, y_rep)
    elif method == "projection":
        conditioner = Projection(forward_model, y_rep, score_model.sde, lam=method_options.get("lam", 1.0),
                                 consistency=method_options["consistency"],
                                 cg_iterations=method_options.get("cg_iterations", 20),
                                 noise_aware=method_options["noise_aware"])
    else:
        conditioner = DPS(forward_model, y_rep, score_model, zeta=method_options.get("zeta", 1.0))

    info: dict = {}
    start = time.time()
    x = pc_sample(score_model, (n_samples * batch, *image_shape), steps=steps, predictor=predictor,
                  corrector=corrector, corrector_steps=corrector_steps, snr=snr, denoise=True,
                  generator=generator, progress=progress, conditioner=conditioner, device=device, info=info)
    seconds = time.time() - start
    with torch.no_grad():
        if getattr(forward_model, "time_dependent", False):
            residual = torch.full((x.shape[0],), float("nan"), device=device)
        else:
            residual = (forward_model(x) - y_rep).abs().flatten(1).norm(dim=1)
    samples = x.reshape(n_samples, batch, *image_shape)
    settings = {"method": method, "sampler": sampler, "predictor": predictor if isinstance(predictor, str) else
                getattr(predictor, "__name__", "custom"), "corrector": corrector if isinstance(corrector, str)
                else getattr(corrector, "__name__", "custom"), "steps": steps, "corrector_steps": corrector_steps,
                "snr": snr, "n_samples": n_samples, "seed": seed, "device": str(device), **method_options}
    if method == "projection":  # whether the consistency step was damped (noise_aware asks; the model decides)
        settings["damped"] = conditioner.damped
    return Solution(samples=samples, residual=residual.reshape(n_samples, batch), nfe=info["nfe"],
                    seconds=seconds, settings=settings)
