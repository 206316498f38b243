"""The `sgm-inverse` command. Each subcommand is a thin layer over the public Python API."""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

from .allocator import retain_freed_memory
from .finetune import fine_tune_record as _fine_tune_record
from .io import IMAGE_FORMATS, check_output, read_image, std_path, write_image, write_images
from .recipes import REFERENCE_RECIPES
from .tasks import (BASELINES, DEFAULT_CHECKPOINTS, FISTA_ITERATIONS, SAMPLER_CHOICES, fit_image, forward_model,
                    resize_image, run_baseline, solve_settings)

__all__ = ["main", "build_parser", "UserError", "REFERENCE_RECIPES", "DEFAULT_CHECKPOINTS", "_fine_tune_record"]


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def _device(name: str | None):
    import torch
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for but CUDA is not available on this machine")
    return torch.device(name)


@contextmanager
def _user_errors(*types):
    """Library errors (ValueError by default) as one-line UserErrors."""
    try:
        yield
    except (types or (ValueError,)) as e:
        raise UserError(str(e)) from e


# ---------------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    import torch
    from .finetune import fine_tune_start
    from .recipes import recipe_dataset, recipe_model
    from .training import TrainConfig, cpu_supports_bf16, train

    with _user_errors(ValueError, FileNotFoundError):
        dataset_name, dataset = recipe_dataset(args.dataset, args.image_size)
    sample = dataset[0]
    sample = sample[0] if isinstance(sample, (tuple, list)) else sample
    augment = getattr(dataset, "augment", None) if not args.no_augment else None
    torch.manual_seed(args.seed)
    record = {"data": {"dataset": dataset_name, "split": "train", "range": [0.0, 1.0],
                       # what the model is fitted to: sample-quality checks compare against the same augmentation
                       "augment": getattr(augment, "__name__", type(augment).__name__) if augment else None},
              "command": "sgm-inverse " + " ".join(sys.argv[1:])}
    workdir = Path(args.workdir or f"runs/{args.dataset}")
    with _user_errors(ValueError, FileNotFoundError):   # a fine-tune's parent, --init-from or the run's own
        parent = fine_tune_start(workdir, args.init_from, tuple(sample.shape))
    if parent is not None:
        model, record["init_from"] = parent
    else:
        model = recipe_model(args.dataset, tuple(sample.shape), base_channels=args.base_channels,
                             sigma_max=args.sigma_max)
    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, checkpoint_every=args.checkpoint_every,
                     seed=args.seed, weighting=args.weighting, cpu_bf16=args.cpu_bf16,
                     max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    if args.cpu_bf16 and not cpu_supports_bf16():
        print("warning: this CPU has no native bfloat16 kernels (AVX512-BF16 / AMX): --cpu-bf16 will be slower "
              "than fp32", file=sys.stderr)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"training {args.dataset}: {len(dataset)} images {tuple(sample.shape)}, U-Net {n_params / 1e6:.2f} M params, "
          f"{type(model.sde).__name__} sigma_max={getattr(model.sde, 'sigma_max', '-')}, workdir {workdir}"
          + (f", from {record['init_from']['checkpoint']}" if "init_from" in record else ""))
    train(model, dataset, tc, workdir, augment=augment, progress=not args.quiet, record=record)
    print(f"EMA weights: {workdir / 'ema'} (load with sgm_inverse.load_score_model('{workdir / 'ema'}'))")
    return 0


def _load_model(checkpoint, device, bf16: bool = False):
    """A score model by name or path, as a UserError when it cannot be loaded; bf16: its network runs
    under bfloat16 autocast (ScoreModel.autocast)."""
    import torch
    from . import load_score_model
    with _user_errors(FileNotFoundError, ValueError):
        model = load_score_model(checkpoint, device=device)
    model.autocast = torch.bfloat16 if bf16 else None
    return model


# ---------------------------------------------------------------------------------------- sample
def cmd_sample(args) -> int:
    import torch
    from . import pc_sample
    with _user_errors():
        check_output(args.output)
    model = _load_model(args.checkpoint, _device(args.device), args.bf16)
    g = torch.Generator(device=_device(args.device)).manual_seed(args.seed)
    shape = tuple(model.image_shape)
    if args.size is not None:       # a resolution-free prior draws at any size its network takes
        shape = (shape[0], args.size, args.size)
        if not model.accepts_shape(shape):
            raise UserError(f"--size {args.size}: this checkpoint takes {tuple(model.image_shape)} images"
                            + (f" or sides that are multiples of {model.size_multiple}"
                               if getattr(model, "resolution_free", False) else ""))
    x = pc_sample(model, (args.n, *shape), steps=args.steps, snr=args.snr, generator=g,
                  progress=not args.quiet).clamp(0, 1)
    write_images(x, args.output)
    print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------------------------------- solve
def _problem(args, source: Path, model=None):
    """(forward model, measurement, NIfTI affine or None) from a --measurement sinogram (CT) or k-space (MRI), or
    simulated from the INPUT image at the size `model` reconstructs it at (None, a baseline: its own or --resize)."""
    import torch
    from .io import kspace_summary, load_measurement
    if args.measurement is not None:
        if args.task not in ("ct", "mri"):
            raise UserError("--measurement is supported for ct (sinogram) and mri (k-space)")
        # a resolution-free prior reconstructs at the size the measurement implies; a fixed one at its own
        free = model is None or getattr(model, "resolution_free", False)
        with _user_errors():   # checked against the conventions of sgm_inverse.io
            fm, y = load_measurement(source, args.task, geometry=args.geometry, noise_std=args.noise,
                                     image_size=None if free else model.image_shape[-1])
        if args.task == "mri":
            print(kspace_summary(fm, y))
        if model is not None and not model.accepts_shape(fm.image_shape):
            raise UserError(f"{source}: the measurement implies {fm.image_shape[-2]}x{fm.image_shape[-1]} images; "
                            f"this prior takes sides that are multiples of {model.size_multiple}")
        return fm, y, None
    with _user_errors():
        image, affine = read_image(source, kind=args.kind, slice=args.slice)
        if model is not None:
            image = fit_image(image, model, resize=args.resize, name=str(source))
    if model is None and args.resize is not None:   # a baseline has no checkpoint size: only an explicit SIDE
        if args.resize < 2:
            raise UserError(f"--resize with --method {args.method} needs a SIDE (e.g. --resize 128)")
        image = resize_image(image, args.resize)
    if model is None and (image.shape[1] != 1 or image.shape[-1] != image.shape[-2]):
        raise UserError(f"{source} is {'x'.join(map(str, image.shape[1:]))}; the {args.task} baselines take "
                        f"square grey images (--resize SIDE makes it square)")
    fm = forward_model(args.task, tuple(image.shape[1:]), views=args.views, geometry=args.geometry,
                       acceleration=args.acceleration, mask=args.mask, keep=args.keep, noise_std=args.noise,
                       seed=args.seed)
    return fm, fm.simulate(image, generator=torch.Generator().manual_seed(args.seed)), affine


def _write_result(x, output: str, source: Path | None, affine) -> None:
    with _user_errors():
        write_image(x, output, source=source, affine=affine, description="sgm-inverse reconstruction (posterior mean)")


def _solve_baseline(args, source: Path) -> int:
    """FBP / zero-filled / FISTA-TV on the user's measurement (or on the simulated measurement of an image),
    FISTA-TV's weight from --lam or the validation-tuned table (`sgm_inverse.baselines.tuned`)."""
    if args.task not in BASELINES[args.method]:
        raise UserError(f"--method {args.method} is a baseline for {' and '.join(BASELINES[args.method])}, "
                        f"not {args.task}")
    if args.std or (args.samples or 1) > 1:
        raise UserError(f"--method {args.method} gives one image: --std and --samples need a sampling method")
    fm, y, affine = _problem(args, source)
    with _user_errors():
        x, what, seconds = run_baseline(args.method, args.task, fm, y, geometry=args.geometry, mask=args.mask,
                                        lam=args.lam, iterations=args.iterations, progress=not args.quiet)
    _write_result(x.clamp(0, 1), args.output, source, affine)
    residual = float((fm(x) - y).abs().flatten(1).norm(dim=1)[0] / y.abs().flatten(1).norm(dim=1)[0].clamp_min(1e-12))
    print(f"{args.method} ({what}): {source.name} -> {'x'.join(map(str, x.shape[-2:]))} image; wrote {args.output} "
          f"({seconds:.1f} s, relative residual {residual:.3g})")
    return 0


def cmd_solve(args) -> int:
    """Reconstruct from a measurement file, or from the simulated measurement of an image."""
    from . import solve
    from .data.dicom import is_dicom
    if (args.input is None) == (args.measurement is None):
        raise UserError("give either an INPUT image or --measurement FILE")
    source = Path(args.input or args.measurement)
    with _user_errors():
        check_output(args.output, IMAGE_FORMATS)
    if not source.exists():
        raise UserError(f"input {source} does not exist")
    if args.output.endswith(".dcm") and (args.input is None or not is_dicom(source)):
        raise UserError("a .dcm output needs a DICOM input image (its identifiers and HU scaling are kept)")
    if args.method in BASELINES:   # classical reconstructions: no prior, no sampling
        return _solve_baseline(args, source)
    device = _device(args.device)
    model = _load_model(args.checkpoint or DEFAULT_CHECKPOINTS[args.task], device, args.bf16)
    fm, y, affine = _problem(args, source, model)
    with _user_errors():   # --std: 4 samples by default, 2 or more
        run = solve_settings(args.task, sampler=args.sampler, steps=args.steps, samples=args.samples, snr=args.snr,
                             std=args.std, t_start=args.warm_start, warm_from=args.warm_from,
                             pc_options=args.method != "auto" or any(getattr(args, k) is not None
                                                                     for k in ("lam", "consistency", "zeta")))
    warm = run.warm
    print(f"{args.task}: {source.name} -> measurement {tuple(y.shape[1:])}; reconstructing with "
          f"{run.samples} sample(s), {run.steps} steps of {run.sampler}"
          + (f", warm-started at t = {warm[0]:g} from {warm[1]}" if warm else ""))
    with _user_errors():
        options = {k: getattr(args, k) for k in ("lam", "consistency", "zeta", "eta") if getattr(args, k) is not None}
        # a warm start (CCDF) runs the baseline here: the sampler starts at t_start from its noised result
        kw, what = run.solve_kwargs(args.task, fm, y, geometry=args.geometry, mask=args.mask)
        if what and not args.quiet:
            print(f"warm start: {warm[1]} ({what})")
        sol = solve(y.to(device), fm, model, method=args.method, seed=args.seed, progress=not args.quiet, **kw,
                    **options)
    if sol.warning:
        print(sol.warning, file=sys.stderr)
    _write_result(sol.mean.clamp(0, 1), args.output, source, affine)
    written = [args.output]
    if args.std:
        path, std = std_path(args.output), sol.std
        _write_result(std / std.max().clamp_min(1e-12) if path.endswith(".png") else std, path, source, affine)
        written.append(path)
    residual = (sol.residual / y.abs().flatten(1).norm(dim=1).cpu().clamp_min(1e-12)).mean()
    batch = f" of a batch of {run.samples} samples" if run.samples > 1 else ""   # one call scores every sample
    print(f"wrote {', '.join(written)} ({sol.nfe} score evaluations{batch}, {sol.seconds:.1f} s, relative residual "
          f"{float(residual):.3g})")
    return 0


# ---------------------------------------------------------------------------------------- benchmark
BENCHMARK_SCRIPTS = {"ct": "ct_sparse_view.py", "mri": "mri_undersampled.py"}


def cmd_benchmark(args) -> int:
    """Run benchmarks/<script> of the source checkout (the library itself never imports benchmarks/)."""
    import subprocess
    script = Path(__file__).resolve().parents[1] / "benchmarks" / BENCHMARK_SCRIPTS[args.task]
    if not script.exists():
        raise UserError(f"{script} not found: the benchmarks ship with the source repository; run this "
                        f"command from an editable install (pip install -e .) of a checkout")
    options = [a for a in args.options if a != "--"]
    return subprocess.call([sys.executable, str(script), *(["--quick"] if args.quick else []), *options])


# ---------------------------------------------------------------------------------------- generate
def cmd_generate(args) -> int:
    """Class-conditional samples: the unconditional score plus grad log p_t(class | x_t) (Bayes rule)."""
    import torch
    from forward_models import ClassifierGuidance
    from . import load_classifier, solve
    with _user_errors():
        check_output(args.output)
    device = _device(args.device)
    model = _load_model(args.checkpoint, device, args.bf16)
    with _user_errors(FileNotFoundError, ValueError):
        classifier = load_classifier(args.classifier, device=device)
    guidance = ClassifierGuidance(classifier, scale=args.scale)
    if not 0 <= args.class_ < (guidance.num_classes or args.class_ + 1):
        raise UserError(f"--class {args.class_} is out of range: the classifier has {guidance.num_classes} classes")
    labels = torch.full((args.n,), args.class_, dtype=torch.long)
    with _user_errors():
        sol = solve(labels, guidance, model, method="bayes", steps=args.steps, snr=args.snr, seed=args.seed,
                    progress=not args.quiet)
    write_images(sol.samples[0].clamp(0, 1), args.output)
    print(f"wrote {args.n} samples of class {args.class_} (scale {args.scale}, {sol.nfe} score evaluations, "
          f"{sol.seconds:.1f} s) to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    """The main job: a held-out brain slice, simulated sparse-view CT, FBP vs FISTA-TV vs the brain64 prior."""
    from .demo import run_demo
    model = _load_model(args.checkpoint, _device(args.device))
    with _user_errors():
        run_demo(model, args.output, views=args.views, steps=args.steps, samples=args.samples, snr=args.snr,
                 device=_device(args.device), name=args.checkpoint)
    return 0


def _sampling_options(p) -> None:
    """--seed, --device, --bf16 and --quiet of the commands that sample."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.add_argument("--bf16", action="store_true", help="run the score network under bfloat16 autocast: 1.4-2x "
                   "faster on CPUs with AVX512-BF16 or AMX (and on GPUs)")
    p.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sgm-inverse", description="Imaging inverse problems with score-based "
                                "generative models: sparse-view CT, undersampled MRI, inpainting, colorization.")
    p.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="the main job on embedded defaults")
    d.add_argument("--checkpoint", default="brain64", help="score model (name or path) of 1x64x64 brain images")
    d.add_argument("--views", type=int, default=23)
    d.add_argument("--steps", type=int, default=300, help="sampler steps")
    d.add_argument("--samples", type=int, default=4, help="posterior samples (their std is the uncertainty map)")
    # snr 0.5: the best of the validation grid for 23 views with the CG consistency step
    # (brain64, 100 steps; benchmarks/results/ct_sparse_view_tuned.json)
    d.add_argument("--snr", type=float, default=0.5, help="Langevin corrector signal-to-noise ratio")
    d.add_argument("--device")
    d.add_argument("-o", "--output", default="demo.png")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train a score model by denoising score matching (resumable)")
    t.add_argument("dataset", help=f"a reference recipe ({', '.join(REFERENCE_RECIPES)}), a data set name, or a folder")
    t.add_argument("--workdir", help="checkpoint folder (default runs/DATASET); an existing one is resumed")
    t.add_argument("--steps", type=int, default=100000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--image-size", type=int)
    t.add_argument("--base-channels", type=int, default=32)
    t.add_argument("--sigma-max", type=float)
    t.add_argument("--checkpoint-every", type=int, default=250)
    t.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this much wall time")
    t.add_argument("--weighting", choices=["sigma2", "likelihood", "edm"], default="sigma2",
                   help="DSM loss weighting over noise levels (see sgm_inverse.training.dsm_loss)")
    t.add_argument("--init-from", metavar="CHECKPOINT",
                   help="start from this checkpoint's weights (shipped name, checkpoint directory or a "
                        "training workdir's state; its architecture and SDE are kept): fine-tune a prior on "
                        "your own data or with another --weighting. Ignored when the workdir already holds a "
                        "training state")
    t.add_argument("--cpu-bf16", action="store_true",
                   help="bfloat16 autocast on CPU too (it is always on for CUDA): about 2x faster on CPUs with "
                        "AVX512-BF16 or AMX, slow elsewhere; may be switched when resuming (the checkpoint "
                        "records which steps ran in which precision)")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="unconditional samples from a checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("-n", type=int, default=16)
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--snr", type=float, default=0.16)
    s.add_argument("--size", type=int, help="image side (resolution-free priors; default: the training size)")
    _sampling_options(s)
    s.add_argument("-o", "--output", required=True, help=".png grid or .npy array")
    s.set_defaults(func=cmd_sample)
    v = sub.add_parser("solve", help="simulate a measurement of an image and reconstruct it")
    v.add_argument("task", choices=sorted(DEFAULT_CHECKPOINTS))
    v.add_argument("input", nargs="?", help="image: PNG, NPY, DICOM or NIfTI (its measurement is simulated)")
    v.add_argument("--measurement", help="a measured CT sinogram (n_views, n_det) or complex MRI k-space (H, W) "
                   ".npy, instead of INPUT; conventions (checked): line integrals of a [0, 1] image in pixel units, "
                   "1-pixel detectors, parallel views over [0, pi); centred orthonormal FFT (sgm_inverse.io)")
    v.add_argument("-o", "--output", required=True, help=".png, .npy, .nii(.gz) or .dcm (posterior mean; .dcm needs "
                   "a DICOM input and keeps its identifiers and HU scaling)")
    v.add_argument("--slice", type=int, help="NIfTI volume: slice index along the last axis (default: middle)")
    v.add_argument("--kind", choices=["mr", "ct"], default="mr", help="NIfTI intensities: MR (percentile) or CT (HU)")
    v.add_argument("--checkpoint", help="score model name or path (default per task: "
                   + ", ".join(f"{k} {n}" for k, n in DEFAULT_CHECKPOINTS.items()) + ")")
    v.add_argument("--views", type=int, default=23, help="CT views")
    v.add_argument("--geometry", choices=["parallel", "fan"], default="parallel")
    v.add_argument("--acceleration", type=float, default=4.0, help="MRI acceleration R (1/R of the lines)")
    v.add_argument("--mask", default=None, help="MRI: equispaced | random | gaussian1d; inpaint: box | random")
    v.add_argument("--keep", type=float, default=0.3, help="inpaint --mask random: fraction of pixels kept")
    v.add_argument("--noise", type=float, default=0.0,
                   help="measurement noise std (the forward model's noise_std; the projection step is damped by it "
                        "so it does not fit the noise: the cg step always, the transform step where it is exact)")
    v.add_argument("--method", default="auto", choices=["auto", "projection", "dps", "bayes", *BASELINES],
                   help="how the measurement conditions the prior, or a classical baseline without a prior: fbp "
                        "(ct), zero-filled (mri), fista-tv (ct, mri; weight --lam, default validation-tuned)")
    v.add_argument("--snr", type=float, help="PC sampler: Langevin corrector signal-to-noise ratio (default: 0.5 "
                   "for ct and mri, 0.16 otherwise)")
    v.add_argument("--lam", type=float, help="projection: weight of the measured data in [0, 1] (default 1); "
                   "fista-tv: the TV weight (default: validation-tuned per setting, sgm_inverse.baselines.tuned)")
    v.add_argument("--consistency", choices=["transform", "cg"],
                   help="projection: Song et al.'s step in the transform domain or the CG minimum-norm step "
                        "(default: the forward model's, cg for ct and mri, transform for inpaint and colorize)")
    v.add_argument("--zeta", type=float, help="dps: step size (default 1); diffpir: re-noising share (default 0.3)")
    v.add_argument("--sampler", choices=SAMPLER_CHOICES,
                   help="pc (predictor-corrector; NFE = 2 x steps + 1), reverse_diffusion, euler_maruyama, ancestral, "
                        "or a few-step sampler with its own data step (NFE = steps): dds, diffpir, ddnm, pigdm "
                        "(default per task, chosen by benchmarks/sampler_nfe.py; see docs/samplers.md)")
    v.add_argument("--eta", type=float, help="dds, ddnm, pigdm: share of fresh noise when re-noising")
    v.add_argument("--warm-start", type=float, metavar="T0", help="start the sampler at time T0 in (0, 1] from a "
                   "noised classical reconstruction (--warm-from) instead of from noise at T = 1 (CCDF)")
    v.add_argument("--warm-from", choices=[b for b in BASELINES],
                   help="the reconstruction a warm start noises (default fista-tv; fbp for ct, zero-filled for mri)")
    v.add_argument("--iterations", type=int, default=FISTA_ITERATIONS,
                   help=f"fista-tv: iterations (default {FISTA_ITERATIONS}, as tuned)")
    v.add_argument("--steps", type=int, help="sampler steps (default: ct and mri 50 DDNM steps warm-started from "
                   "FISTA-TV, 200 for a named pc or few-step sampler; 500 PC steps otherwise)")
    v.add_argument("--samples", type=int, help="samples drawn in one batch; the output is their mean, their std "
                   "the uncertainty map (default: 8 for mri, else 4; --std runs the pc sampler with 4 unless told)")
    v.add_argument("--std", action="store_true", help="also write the pixelwise posterior std (OUTPUT_std)")
    v.add_argument("--resize", type=int, nargs="?", const=-1, metavar="SIDE",
                   help="resample the input to SIDE x SIDE (no value: the checkpoint's training size); by default "
                        "an image is reconstructed at its own size where the checkpoint takes it")
    _sampling_options(v)
    v.set_defaults(func=cmd_solve)

    b = sub.add_parser("benchmark", help="CT / MRI reconstruction benchmarks (FBP, zero-filled, FISTA-TV, ours)")
    b.add_argument("task", choices=sorted(BENCHMARK_SCRIPTS))
    b.add_argument("--quick", action="store_true", help="few images and steps (< 10 min on a 2-core CPU)")
    b.add_argument("options", nargs=argparse.REMAINDER, help="passed on to the benchmark script (see -- --help)")
    b.set_defaults(func=cmd_benchmark)

    g = sub.add_parser("generate", help="classifier-guided class-conditional samples")
    g.add_argument("--checkpoint", default="digits32", help="unconditional score model (name or path)")
    g.add_argument("--classifier", default="digits32_classifier", help="noise-conditional classifier (name or path)")
    g.add_argument("--class", dest="class_", type=int, required=True)
    g.add_argument("-n", type=int, default=16)
    # Defaults measured by benchmarks/guidance.py (digits32 at step 5755, 100 steps, 100 samples a scale):
    # judge accuracy 70% / 84% / 94% / 97% at scales 1 / 2 / 4 / 8.
    g.add_argument("--scale", type=float, default=8.0, help="guidance scale (classifier temperature)")
    g.add_argument("--steps", type=int, default=100)
    g.add_argument("--snr", type=float, default=0.16)
    _sampling_options(g)
    g.add_argument("-o", "--output", required=True, help=".png grid or .npy array (n, C, H, W) in [0, 1]")
    g.set_defaults(func=cmd_generate)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    retain_freed_memory()   # the network's activations stay in the heap between evaluations (allocator.py)
    try:
        return args.func(args)
    except UserError as e:
        if args.verbose:
            raise
        print(f"sgm-inverse: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
