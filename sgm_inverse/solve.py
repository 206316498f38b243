"""solve(): the one place where a measurement, a forward model and a score model meet."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import torch

from .conditioning import Bayes, DPS, Projection
from .placement import on_device, resolve_device, resolve_dtype, working_precision
from .samplers import pc_sample
from .samplers.correctors import langevin
from .samplers.hooks import Conditioner
from .samplers.warm_start import (TWEEDIE_SAMPLERS, expand_x_init, sampler_option_names, split_sampler_options,
                                  tweedie_sample, warm_start)

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
    warning: one line starting with "warning:" when the measurement looks unlike the prior's training
    data (`sgm_inverse.ood`; checkpoints calibrated for it only), else None; ood_ratio (B,) the statistic.
    """

    samples: torch.Tensor
    residual: torch.Tensor
    nfe: int
    seconds: float
    settings: dict = field(default_factory=dict)
    warning: str | None = None
    ood_ratio: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        return self.samples.mean(0)

    @property
    def std(self) -> torch.Tensor:
        n = self.samples.shape[0]
        return self.samples.std(0) if n > 1 else torch.zeros_like(self.samples[0])


def check_image_shape(score_model, image_shape) -> None:
    """Raise ValueError when the score model cannot take images of (C, H, W) = image_shape: a model trained
    at one size takes only that size; a resolution-free one (`ScoreModel.accepts_shape`) any size its
    network's downsampling allows."""
    model_shape = getattr(score_model, "image_shape", None)
    if model_shape is None or tuple(model_shape) == tuple(image_shape):
        return
    accepts = getattr(score_model, "accepts_shape", None)
    if accepts is not None and accepts(image_shape):
        return
    if getattr(score_model, "resolution_free", False):
        m = score_model.size_multiple
        raise ValueError(f"forward model image shape {tuple(image_shape)}: this resolution-free score model "
                         f"takes {model_shape[0]} channel(s) and H, W multiples of {m}")
    raise ValueError(f"forward model image shape {tuple(image_shape)} does not match the score model's "
                     f"{tuple(model_shape)}")


def _per_measurement(corrector, batch: int, n_samples: int, device):
    """The Langevin corrector with its step-size norms averaged over each measurement's own samples (rows
    b, B + b, 2B + b, ... of the sample-major batch), so a result never depends on the other measurements."""
    if corrector != "langevin" and corrector is not langevin:
        return corrector
    return functools.partial(langevin, groups=torch.arange(batch, device=device).repeat(n_samples))


def pick_method(forward_model) -> str:
    """bayes for time-dependent models, projection for linear models with A = P(Lambda) T, else dps."""
    if getattr(forward_model, "time_dependent", False):
        return "bayes"
    if getattr(forward_model, "has_decomposition", False):
        return "projection"
    return "dps"


# sampler="auto": the few-step sampler that benchmarks/sampler_nfe.py found best at <= 200 NFE from a cold start
# (docs/samplers.md), where it applies; the PC sampler otherwise. Default steps per resolved sampler.
AUTO_SAMPLER = "ddnm"
DEFAULT_STEPS = {"pc": 500, "few_step": 200}   # PC-type samplers; DDS / DiffPIR / DDNM / PiGDM (steps = NFE)
DEFAULT_SNR = 0.16


def pick_sampler(forward_model, method, n_samples: int, snr, method_options: dict) -> str:
    """What sampler="auto" runs: AUTO_SAMPLER for one sample (a point estimate) of a linear, time-independent
    forward model (forward and adjoint) when neither a conditioning method, nor a Langevin snr, nor options
    only the PC sampler takes were asked for; else "pc" (whose samples follow the posterior: use it for
    n_samples > 1 and uncertainty maps)."""
    few_step = (isinstance(method, str) and method == "auto" and n_samples == 1 and snr is None
                and hasattr(forward_model, "adjoint") and not getattr(forward_model, "time_dependent", False)
                and set(method_options) <= set(sampler_option_names(AUTO_SAMPLER)))
    return AUTO_SAMPLER if few_step else "pc"


def solve(measurement, forward_model, score_model, *, method: str = "auto", sampler: str = "auto",
          steps: int | None = None, corrector_steps: int = 1, snr: float | None = None, n_samples: int = 1,
          seed: int | None = None, progress: bool = True, ood_check: bool = True,
          device=None, dtype=None, **method_options) -> Solution:
    """Sample x ~ p(x | y) for y = A(x) + noise with the prior given by `score_model`.

    sampler "auto" (default): `pick_sampler` — DDNM with 200 steps (200 NFE) for one sample of a linear
    forward model, else the PC sampler ("pc": reverse diffusion + 1 Langevin step, 500 steps, snr 0.16).
    steps None: `DEFAULT_STEPS`, 200 for the few-step samplers, 500 for the PC-type ones.

    measurement: (B, *measurement_shape) or one unbatched measurement; forward_model: a
    `forward_models.ForwardModel`; score_model: anything with `.sde` and `__call__(x, t)`.
    method: "bayes" | "projection" | "dps" | "auto"; method_options: `lam`, `consistency`
    ("transform": Song et al.'s step in the transform domain; "cg": the minimum-norm correction by
    CG, forward and adjoint only; default: the forward model's `default_consistency`),
    `cg_iterations` and `noise_aware` (default True: with forward_model.noise_std > 0 the cg step, and
    the transform step where it is an exact projection, are damped so they do not fit the noise, see
    `Projection`) (projection),
    `zeta` (dps), `predictor` / `corrector` (override the sampler's pair).
    sampler "dds" | "diffpir" | "ddnm" | "pigdm": few-step samplers with their own data step (method must
    be "auto"; steps = NFE; options `schedule` ("geometric" | "edm" | "linear") and the sampler's own, e.g.
    `eta`, `cg_iterations`; see docs/samplers.md). Warm start (CCDF), any sampler: `x_init` (B, C, H, W)
    an estimate (FBP, zero-filled, FISTA-TV) and `t_start` in (eps, T]: the steps run from
    x_t0 = alpha(t0) x_init + std(t0) z.
    ood_check: for a checkpoint calibrated for it, measure whether y looks unlike the prior's training
    data (9 extra network calls; `Solution.warning`, `sgm_inverse.ood`).
    method may also be a `samplers.Conditioner` of your own (its score / before / after / final hooks see the
    batch of n_samples * B, sample-major: row k * B + b holds sample k of measurement b).
    device: default the score model's (its weights', else its `device`, else the measurement's); a forward or
    score model elsewhere is copied there, never moved in place. dtype: torch.float32 (default) or
    torch.float64; the measurement is converted to it (complex to its complex counterpart).
    A result does not depend on the other measurements of the batch (the Langevin step is set per measurement).
    All B measurements and n_samples samples of each run in one batch of n_samples * B.
    """
    if not isinstance(method, Conditioner) and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS} or a Conditioner")
    if sampler == "auto":
        sampler = pick_sampler(forward_model, method, n_samples, snr, method_options)
    if steps is None:
        steps = DEFAULT_STEPS["few_step" if sampler in TWEEDIE_SAMPLERS else "pc"]
    snr = DEFAULT_SNR if snr is None else snr
    if sampler not in SAMPLERS and sampler not in TWEEDIE_SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected 'auto' or one of "
                         f"{tuple(SAMPLERS) + tuple(TWEEDIE_SAMPLERS)}")
    if sampler in TWEEDIE_SAMPLERS and method != "auto":  # they condition on y in their own data step
        raise ValueError(f"sampler {sampler!r} brings its own data step; leave method='auto' (got {method!r})")
    if n_samples < 1 or steps < 1:
        raise ValueError(f"n_samples and steps must be >= 1, got {n_samples} and {steps}")
    predictor, corrector = SAMPLERS.get(sampler, ("none", "none"))
    sampler_options = split_sampler_options(sampler, method_options)   # x_init, t_start, eta, schedule, ...
    if sampler in TWEEDIE_SAMPLERS and method_options:
        raise ValueError(f"unknown option(s) {sorted(method_options)} for sampler {sampler!r}; expected "
                         f"{sampler_option_names(sampler)}")
    predictor = method_options.pop("predictor", predictor)
    corrector = method_options.pop("corrector", corrector)
    options = {"projection": ("lam", "consistency", "cg_iterations", "noise_aware"), "dps": ("zeta",), "bayes": ()}
    method = pick_method(forward_model) if method == "auto" else method
    allowed = options[method] if isinstance(method, str) else ()   # a Conditioner brings its own settings
    unknown = set(method_options) - set(allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)} for method {method!r}; expected {allowed}")

    image_shape = getattr(forward_model, "image_shape", None) or getattr(score_model, "image_shape", None)
    if image_shape is None:
        raise ValueError("the forward model has no image_shape (C, H, W); set forward_model.image_shape")
    check_image_shape(score_model, image_shape)
    device, dtype = resolve_device(score_model, measurement, device), resolve_dtype(dtype)
    forward_model, score_model = on_device(forward_model, device), on_device(score_model, device)  # copies if moved
    y = working_precision(forward_model.check_measurement(measurement).to(device), dtype)  # also NumPy arrays
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
    if isinstance(method, Conditioner):
        conditioner = method
    elif method == "bayes":
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
    x_init = expand_x_init(sampler_options.pop("x_init", None), sampler_options.get("t_start"), n_samples, batch,
                           image_shape, device, dtype)
    if sampler in TWEEDIE_SAMPLERS:  # DDS / DiffPIR / DDNM / PiGDM (samplers/tweedie_samplers.py)
        sampler_options.setdefault("schedule", "geometric")
        x = tweedie_sample(sampler, score_model, forward_model, y_rep, (n_samples * batch, *image_shape), steps=steps,
                           x_init=x_init, generator=generator, progress=progress, device=device, dtype=dtype, info=info,
                           **sampler_options)
    else:
        x = pc_sample(score_model, (n_samples * batch, *image_shape), steps=steps, predictor=predictor,
                      corrector=_per_measurement(corrector, batch, n_samples, device), corrector_steps=corrector_steps,
                      snr=snr, denoise=True, generator=generator, progress=progress, conditioner=conditioner,
                      device=device, dtype=dtype, info=info,
                      x_init=None if x_init is None else warm_start(score_model.sde, x_init,
                                                                    sampler_options["t_start"], generator),
                      t_start=sampler_options.get("t_start"))
    seconds = time.time() - start
    with torch.no_grad():
        if getattr(forward_model, "time_dependent", False):
            residual = torch.full((x.shape[0],), float("nan"), device=device)
        else:
            residual = (forward_model(x) - y_rep).abs().flatten(1).norm(dim=1)
    samples = x.reshape(n_samples, batch, *image_shape)
    settings = {"method": method if isinstance(method, str) else type(method).__name__, "sampler": sampler,
                "predictor": predictor if isinstance(predictor, str) else
                getattr(predictor, "__name__", "custom"), "corrector": corrector if isinstance(corrector, str)
                else getattr(corrector, "__name__", "custom"), "steps": steps, "corrector_steps": corrector_steps,
                "snr": snr, "n_samples": n_samples, "seed": seed, "device": str(device),
                "dtype": str(dtype).replace("torch.", ""), **method_options}
    if method == "projection":  # whether the consistency step was damped (noise_aware asks; the model decides)
        settings["damped"] = conditioner.damped
    backward = info.get("backward_passes", info["nfe"] if isinstance(method, str) and method == "dps" else 0)
    settings.update(sampler_options, backward_passes=backward, warm_start=x_init is not None)
    if sampler in TWEEDIE_SAMPLERS:  # the data step is the sampler's own, not a conditioning method
        settings.update(method=sampler, predictor=None, corrector=None, corrector_steps=0, snr=None)
        for key in ("consistency", "noise_aware", "damped"):   # resolved for the unused projection method
            settings.pop(key, None)
    ratio, warning = _ood_check(score_model, forward_model, y) if ood_check else (None, None)
    return Solution(samples=samples, residual=residual.reshape(n_samples, batch), nfe=info["nfe"],
                    seconds=seconds, settings=settings, warning=warning, ood_ratio=ratio)


def _ood_check(score_model, forward_model, y):
    """(ratio (B,) or None, warning line or None) for checkpoints that carry an "ood" calibration."""
    from .ood import measurement_ood_ratio, ood_warning
    if not (getattr(score_model, "config", None) or {}).get("ood"):
        return None, None
    with torch.no_grad():
        ratio = measurement_ood_ratio(score_model, forward_model, y)
    return ratio, ood_warning(score_model, ratio)
