"""The reconstruction tasks of `sgm-inverse solve`, callable from Python: the forward model of a task, the image
at the size a prior reconstructs it at, the sampler defaults per task, and the classical baselines
(FBP, zero-filled IFFT, FISTA-TV) run on a measurement.

Tasks: 'ct' (sparse-view CT), 'mri' (undersampled MRI), 'inpaint' (a box or random pixels missing),
'colorize' (RGB from luminance). Errors are ValueErrors with one-line messages.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .samplers.tweedie_samplers import TWEEDIE_SAMPLERS
from .solve import DEFAULT_STEPS, SAMPLERS

# The shipped checkpoint each task uses when none is named.
DEFAULT_CHECKPOINTS = {"ct": "general", "mri": "general", "inpaint": "digits32", "colorize": "patches32"}

# baseline name -> the tasks it applies to
BASELINES = {"fbp": ("ct",), "zero-filled": ("mri",), "fista-tv": ("ct", "mri")}
FISTA_ITERATIONS = 300   # as tuned (benchmarks: fista_iters 300)

# How `sgm-inverse solve` samples per task when not told: (sampler, steps, samples, warm start (t_start,
# baseline) or None). CT and MRI: the mean of 4 (CT) or 8 (MRI) DDNM samples, each warm-started from FISTA-TV
# (validation-tuned weight) at t0 = 0.2 with 50 steps (200 / 400 network evaluations in all, in one batch).
# DDNM warm-started from FISTA-TV was the best at <= 200 NFE in benchmarks/sampler_nfe.py (brain64 / ellipses64,
# 64 x 64) and, for the general prior at 128 x 128, in benchmarks/cli_sampler_choice.py (docs/samplers.md): at
# step 9,000 one sample gave 24.45 dB at 8-view CT and 33.64 dB at 4x MRI on brain validation slices, against
# 22.87 / 29.85 for 200 PC steps (and, at step 2,100, 100 steps were only 0.08 dB better than 50). The mean of
# several samples estimates the posterior mean, which one sample does not: 4 gave 24.84 / 34.68, 8 gave 24.90 /
# 34.91. MRI takes 8 (+0.23 dB; +0.21 at step 5,540, archive/general5540_warm_start/), its data step being a
# cheap FFT; CT keeps 4 (8 added 0.06 dB), so that a 128 x 128 8-view scan stays well inside 3 minutes on 2 CPU
# cores.
# t0 = 0.2 for every view count was kept after benchmarks/warm_start_time.py (docs/samplers.md): a t0 falling
# with the measurements per pixel, which 64 x 64 validation slices favoured, lost up to 1.97 dB on the real
# scans, and 128 x 128 slices chose 0.2 too.
# Inpainting and colorization: the PC sampler, 500 steps, 4 samples (no classical start for them).
SAMPLER_DEFAULTS = {"ct": ("ddnm", 50, 4, (0.2, "fista-tv")), "mri": ("ddnm", 50, 8, (0.2, "fista-tv")),
                    "inpaint": ("pc", 500, 4, None), "colorize": ("pc", 500, 4, None)}
FEW_STEP = tuple(TWEEDIE_SAMPLERS)   # dds, diffpir, ddnm, pigdm: steps = NFE; their own data step
SAMPLER_CHOICES = (*SAMPLERS, *FEW_STEP)
# The PC sampler's defaults where it runs for CT / MRI (a named --sampler pc, or --std): 200 steps (401 network
# evaluations), snr 0.5 (1.0, brain64's best at 64 x 64, diverged for the general prior on 128 x 128 brain
# validation slices at 8 views); a named few-step sampler without a warm start: 200 steps.
PC_DEFAULTS = {"ct": (200, 0.5), "mri": (200, 0.5), "inpaint": (500, 0.16), "colorize": (500, 0.16)}
FEW_STEP_STEPS = DEFAULT_STEPS["few_step"]
WARM_FROM_DEFAULT = "fista-tv"


@dataclass
class SolveSettings:
    """What `sgm-inverse solve` runs: solve(sampler=, steps=, n_samples=samples, snr=) and, where warm is not
    None, a warm start x_init = baseline reconstruction at t_start = warm[0] (baseline warm[1])."""
    sampler: str
    steps: int
    samples: int
    snr: float | None
    warm: tuple[float, str] | None

    def sampler_kwargs(self) -> dict:
        """The keywords of solve() that need no measurement: sampler, steps, n_samples, snr where the sampler
        has one (a warm start's x_init / t_start are solve_kwargs')."""
        kw = {"sampler": self.sampler, "steps": self.steps, "n_samples": self.samples}
        if self.snr is not None:
            kw["snr"] = self.snr
        return kw

    def solve_kwargs(self, task: str, fm, y, *, geometry: str = "parallel", mask: str | None = None):
        """(keywords of solve() for these settings, a line describing the warm start's baseline or None):
        `sampler_kwargs()` and x_init / t_start of a warm start (the baseline run on y with fm, as
        `run_baseline`; solve() moves it to its device)."""
        kw = self.sampler_kwargs()
        if self.warm is None:
            return kw, None
        x_init, what, _ = run_baseline(self.warm[1], task, fm, y, geometry=geometry, mask=mask, progress=False)
        return {**kw, "x_init": x_init, "t_start": self.warm[0]}, what


# the mask each task uses when none is named (CT and colorization have none)
DEFAULT_MASKS = {"mri": "equispaced", "inpaint": "box"}


def _check_task(task: str) -> None:
    if task not in SAMPLER_DEFAULTS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(SAMPLER_DEFAULTS)}")


def solve_settings(task: str, *, sampler: str | None = None, steps: int | None = None, samples: int | None = None,
                   snr: float | None = None, std: bool = False, t_start: float | None = None,
                   warm_from: str | None = None, pc_options: bool = False) -> SolveSettings:
    """The values given, the task's defaults (`SAMPLER_DEFAULTS`, `PC_DEFAULTS`) for those left None.

    samples: the task's (4: the reconstruction is their mean); std=True (an uncertainty map is wanted) asks for 4
    by default and refuses fewer than 2. sampler: the task's, except that without a named sampler "pc" runs for
    an uncertainty map (its samples follow the posterior; the few-step samplers' spread is too narrow,
    docs/samplers.md) and where options only the PC sampler has were given (snr, or pc_options: a conditioning
    method, lam, zeta...).
    A named sampler starts from noise unless t_start is given; a warm start needs a classical baseline for the
    task (`BASELINES`: ct, mri), fista-tv unless warm_from names another. steps: the default sampler's, else
    `PC_DEFAULTS` for PC-type samplers and `FEW_STEP_STEPS` for the few-step ones. snr: PC-type only."""
    _check_task(task)
    if sampler is not None and sampler not in SAMPLER_CHOICES:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLER_CHOICES}")
    default_sampler, default_steps, default_samples, default_warm = SAMPLER_DEFAULTS[task]
    samples = (4 if std else default_samples) if samples is None else samples
    if std and samples < 2:
        raise ValueError(f"an uncertainty map (--std) needs 2 or more samples (--samples), got {samples}")
    if sampler is None and (std or pc_options or snr is not None):
        # an uncertainty map needs samples that follow the posterior: PC's do, the few-step samplers' spread is
        # too narrow (docs/samplers.md); their mean over several samples is still the better reconstruction
        default_sampler, default_warm = "pc", None
    if t_start is None and warm_from is not None:
        if default_warm is None or sampler is not None:
            raise ValueError("--warm-from needs --warm-start T0 (the time the sampler starts at)")
        t_start = default_warm[0]
    if t_start is None:
        warm = default_warm if sampler is None else None
    elif not 0.0 < t_start <= 1.0:
        raise ValueError(f"warm start at t = {t_start:g}: expected 0 < T0 <= 1")
    else:
        warm = (float(t_start), warm_from or (default_warm[1] if default_warm else WARM_FROM_DEFAULT))
    if warm is not None and (warm[1] not in BASELINES or task not in BASELINES[warm[1]]):
        tasks = sorted({t for b in BASELINES.values() for t in b})
        raise ValueError(f"a warm start needs a classical reconstruction for the task: {warm[1]} is not one for "
                         f"{task} (warm starts: {', '.join(tasks)})")
    name = sampler or default_sampler
    pc_steps, pc_snr = PC_DEFAULTS[task]
    if steps is None:   # the default's own steps where the default runs, else the sampler type's
        steps = default_steps if (name, warm) == (SAMPLER_DEFAULTS[task][0], SAMPLER_DEFAULTS[task][3]) else \
            (FEW_STEP_STEPS if name in FEW_STEP else pc_steps)
    if name in FEW_STEP:
        if snr is not None:
            raise ValueError(f"--snr is the Langevin step of the PC sampler; {name} has none")
    else:
        snr = pc_snr if snr is None else snr
    return SolveSettings(name, steps, samples, snr, warm)


def forward_model(task: str, image_shape, *, views: int = 23, geometry: str = "parallel",
                  acceleration: float = 4.0, mask: str | None = None, keep: float = 0.3, noise_std: float = 0.0,
                  seed: int = 0):
    """The physics of a task for images of (C, H, W) = image_shape:
    ct       `SparseViewCT(H, views, geometry=geometry)`;
    mri      `UndersampledMRI(H, acceleration=acceleration, mask_type=mask or 'equispaced')`;
    inpaint  mask 'box' (default: the central H/2 square missing) or 'random' (`keep` of the pixels kept, `seed`);
    colorize `Grayscale(H)`."""
    from forward_models import Grayscale, Inpainting, SparseViewCT, UndersampledMRI
    _check_task(task)
    image_shape = tuple(image_shape)
    size, mask = image_shape[-1], mask or DEFAULT_MASKS.get(task)
    if task == "ct":
        return SparseViewCT(size, views, geometry=geometry, noise_std=noise_std)
    if task == "mri":
        return UndersampledMRI(size, acceleration=acceleration, mask_type=mask, noise_std=noise_std)
    if task == "inpaint":
        if mask == "random":
            return Inpainting.random(image_shape, keep=keep, seed=seed, noise_std=noise_std)
        return Inpainting.box(image_shape, size=size // 2, noise_std=noise_std)
    return Grayscale(size, noise_std=noise_std)


def task_of(op) -> str:
    """The task whose defaults suit the forward model `op`, the inverse of `forward_model()`: SparseViewCT
    (parallel or fan beam) -> 'ct', UndersampledMRI -> 'mri', Inpainting -> 'inpaint', Grayscale -> 'colorize'."""
    from forward_models import Grayscale, Inpainting, SparseViewCT, UndersampledMRI
    for cls, task in ((SparseViewCT, "ct"), (UndersampledMRI, "mri"), (Inpainting, "inpaint"),
                      (Grayscale, "colorize")):
        if isinstance(op, cls):
            return task
    raise TypeError(f"no task's defaults fit a {type(op).__name__}; pass solve()'s sampler settings yourself")


def resize_image(image: torch.Tensor, side: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, side, side): area averaging when shrinking, bilinear when enlarging."""
    if tuple(image.shape[-2:]) == (side, side):
        return image
    return F.interpolate(image, size=(side, side), mode="area" if image.shape[-1] > side else "bilinear")


def fit_image(image: torch.Tensor, model, *, resize: int | None = None, name: str = "the image") -> torch.Tensor:
    """The image (1, C, H, W) at the size `model` reconstructs it at: its own where the model takes it (a
    resolution-free prior takes any square size its network allows), else resampled to `resize` (a side;
    -1: the model's training size). ValueError when the channels differ or the size does not fit."""
    c, size = model.image_shape[0], model.image_shape[-1]
    if image.shape[1] != c:
        raise ValueError(f"{name} has {image.shape[1]} channel(s); the checkpoint expects {c}")
    free = getattr(model, "resolution_free", False)
    if resize is not None:
        side = size if resize == -1 else int(resize)
        if side != size and not free:
            raise ValueError(f"--resize {side}: this checkpoint takes only {size}x{size} images")
        image = resize_image(image, side)
    h, w = image.shape[-2:]
    if h == w and model.accepts_shape((c, h, w)):
        return image
    if free:
        m = model.size_multiple
        raise ValueError(f"{name} is {h}x{w}; this prior takes square images whose side is a multiple of {m}: "
                         f"resample it (--resize SIDE, resize=SIDE in Python; e.g. "
                         f"{max(m, round(max(h, w) / m) * m)})")
    raise ValueError(f"{name} is {h}x{w} but the checkpoint expects {size}x{size}; resample it with --resize "
                     f"(resize=-1 in Python), or use the resolution-free default prior")


def run_baseline(method: str, task: str, fm, y, *, geometry: str = "parallel", mask: str | None = None,
                 lam: float | None = None, iterations: int = FISTA_ITERATIONS, progress: bool = True):
    """A classical reconstruction of y: (x (1, 1, N, N), a one-line description of the settings, seconds).

    'fbp' (ct): filtered back-projection with the validation-tuned filter for the number of views;
    'zero-filled' (mri): magnitude of the inverse FFT; 'fista-tv' (ct, mri): TV-regularised least squares in
    [0, 1], weight `lam`, or where None c ||A||^2 with c validation-tuned for the setting
    (`sgm_inverse.baselines.tuned`; noisy when fm.noise_std > 0)."""
    from .baselines import fbp, fista_tv, power_method, zero_filled
    from .baselines.fista_tv import LIPSCHITZ_MARGIN
    from .baselines.tuned import tuned_fbp_filter, tuned_fista_c
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; expected one of {sorted(BASELINES)}")
    if task not in BASELINES[method]:
        raise ValueError(f"{method} is a baseline for {' and '.join(BASELINES[method])}, not {task}")
    if lam is not None and not lam > 0:
        raise ValueError(f"lam {lam}: the FISTA-TV weight must be > 0")
    if iterations < 1:
        raise ValueError(f"iterations {iterations}: need at least 1")
    start = time.time()
    if method == "fbp":
        name = tuned_fbp_filter(y.shape[-2], geometry)
        what, x = f"filter {name}", fbp(fm, y, filter=name)
    elif method == "zero-filled":
        what, x = "magnitude of the inverse FFT", zero_filled(fm, y)
    else:
        lipschitz = LIPSCHITZ_MARGIN * power_method(fm, fm.image_shape)
        if lam is not None:
            what = f"lambda {lam:g} (--lam)"
        else:
            setting = dict(views=y.shape[-2], geometry=geometry) if task == "ct" else \
                dict(acceleration=fm.acceleration_achieved, mask_type=mask or "equispaced")
            c, where = tuned_fista_c(task, noisy=getattr(fm, "noise_std", 0.0) > 0, **setting)
            lam = c * lipschitz
            what = f"lambda {lam:.3g} = {c:.2g} ||A||^2, validation-tuned for {where}"
        x = fista_tv(fm, y, lam, n_iter=iterations, lipschitz=lipschitz, box=(0.0, 1.0), progress=progress)
    return x, what, time.time() - start
