"""The `sgm-inverse` command. Each subcommand is a thin layer over the public Python API."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def _device(name: str | None):
    import torch
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for but CUDA is not available on this machine")
    return torch.device(name)


# ---------------------------------------------------------------------------------------- train
REFERENCE_RECIPES = {
    # name: (dataset, image_size, channels, sigma_max, unet overrides)
    "ellipses64": ("ellipses", 64, 1, 40.0, {}),
    "brain64": ("brain", 64, 1, 40.0, {}),
    "digits32": ("digits", 32, 1, 25.0, {"channel_mult": (1, 2, 2), "attn_resolutions": (8,)}),
    "patches32": ("patches", 32, 3, 25.0, {"channel_mult": (1, 2, 2), "attn_resolutions": (8,)}),
}


def cmd_train(args) -> int:
    import torch
    from . import VESDE, ScoreModel
    from .data import get_dataset
    from .nets import UNet, UNetConfig
    from .training import TrainConfig, cpu_supports_bf16, train

    if args.dataset in REFERENCE_RECIPES:
        dataset_name, size, channels, sigma_max, overrides = REFERENCE_RECIPES[args.dataset]
    else:
        dataset_name, size, channels, sigma_max, overrides = args.dataset, args.image_size or 64, None, 40.0, {}
    size = args.image_size or size
    sigma_max = args.sigma_max or sigma_max
    data_kwargs = {"image_size": size} if dataset_name in ("ellipses", "brain") else {}
    if Path(dataset_name).is_dir():
        from .data.folder import ImageFolder
        dataset = ImageFolder(dataset_name, image_size=size)
    else:
        try:
            dataset = get_dataset(dataset_name, "train", **data_kwargs)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(str(e)) from e
    sample = dataset[0]
    sample = sample[0] if isinstance(sample, (tuple, list)) else sample
    channels = sample.shape[0]
    augment = getattr(dataset, "augment", None) if not args.no_augment else None
    torch.manual_seed(args.seed)
    record = {"data": {"dataset": dataset_name, "split": "train", "range": [0.0, 1.0],
                       # what the model is fitted to: sample-quality checks compare against the same augmentation
                       "augment": getattr(augment, "__name__", type(augment).__name__) if augment else None},
              "command": "sgm-inverse " + " ".join(sys.argv[1:])}
    workdir = Path(args.workdir or f"runs/{args.dataset}")
    previous = _fine_tune_record(workdir)
    if args.init_from:
        model, record["init_from"] = _init_from(args.init_from, tuple(sample.shape))
    elif previous is not None:
        # Resuming a fine-tuning run: its architecture is the parent's, not the recipe's.
        from .checkpoints import build_score_model
        model, record["init_from"] = build_score_model(_architecture(previous)), previous["init_from"]
    else:
        cfg = UNetConfig(in_channels=channels, image_size=sample.shape[-1], base_channels=args.base_channels,
                         **{k: v for k, v in overrides.items()})
        model = ScoreModel(UNet(cfg), VESDE(0.01, sigma_max), sigma_data=0.5)
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


def _fine_tune_record(workdir: Path) -> dict | None:
    """The EMA config of a fine-tuning run already in `workdir` (one started with --init-from), else None."""
    import json
    path = workdir / "ema" / "config.json"
    if not path.exists():
        return None
    config = json.loads(path.read_text())
    return config if "init_from" in config else None


def _architecture(config: dict) -> dict:
    return {k: config[k] for k in ("format", "sde", "network", "sigma_data", "image_shape") if k in config}


def _init_from(checkpoint: str, image_shape: tuple) -> tuple:
    """A trainable copy of a checkpoint's score model (architecture, SDE and weights) and a record of
    where it came from, so a fine-tuned checkpoint states its whole training cost (images seen and
    seconds of the parent and of the parent's own ancestors)."""
    from . import load_score_model
    from .checkpoints import training_cost
    from .training import STATE_FILE, ema_from_state
    try:
        if (Path(checkpoint) / STATE_FILE).exists() and not (Path(checkpoint) / "config.json").exists():
            model = ema_from_state(checkpoint).requires_grad_(True)   # a committed training state
        else:
            model = load_score_model(checkpoint).requires_grad_(True)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from e
    record = {"checkpoint": str(checkpoint), "step": model.config.get("training", {}).get("step"),
              **training_cost(model.config)}
    # Keep only what rebuilds the model: the parent's data, command and shipping records are not the child's.
    model.config = _architecture(model.config)
    if tuple(model.image_shape) != image_shape:
        raise UserError(f"--init-from {checkpoint} is a model of {tuple(model.image_shape)} images, "
                        f"the data are {image_shape}")
    return model, record


def _load_model(checkpoint, device, bf16: bool = False):
    """A score model by name or path, as a UserError when it cannot be loaded; bf16: its network runs
    under bfloat16 autocast (ScoreModel.autocast)."""
    import torch
    from . import load_score_model
    try:
        model = load_score_model(checkpoint, device=device)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    model.autocast = torch.bfloat16 if bf16 else None
    return model


# ---------------------------------------------------------------------------------------- sample
def cmd_sample(args) -> int:
    import torch
    from . import pc_sample
    _check_image_output(args.output)
    model = _load_model(args.checkpoint, _device(args.device), args.bf16)
    g = torch.Generator(device=_device(args.device)).manual_seed(args.seed)
    x = pc_sample(model, (args.n, *model.image_shape), steps=args.steps, snr=args.snr, generator=g,
                  progress=not args.quiet).clamp(0, 1)
    _write_images(x, args.output)
    print(f"wrote {args.output}")
    return 0


def _check_image_output(output: str) -> None:
    """Fail before any work when the output name has no supported extension."""
    if not output.endswith((".png", ".npy")):
        raise UserError(f"output {output!r}: expected a .png or .npy file name")


def _write_images(x, output: str) -> None:
    import numpy as np
    from .plotting import save_grid
    _check_image_output(output)
    if output.endswith(".npy"):
        np.save(output, x.cpu().numpy())
    else:
        save_grid(x, output)


# ---------------------------------------------------------------------------------------- solve
DEFAULT_CHECKPOINTS = {"ct": "brain64", "mri": "brain64", "inpaint": "digits32", "colorize": "patches32"}


def _forward_model(args, image_shape):
    """The physics of a `solve` task for images of (C, H, W) = image_shape."""
    from forward_models import Grayscale, Inpainting, SparseViewCT, UndersampledMRI
    size = image_shape[-1]
    if args.task == "ct":
        return SparseViewCT(size, args.views, geometry=args.geometry, noise_std=args.noise)
    if args.task == "mri":
        return UndersampledMRI(size, acceleration=args.acceleration, mask_type=args.mask, noise_std=args.noise)
    if args.task == "inpaint":
        if args.mask == "random":
            return Inpainting.random(image_shape, keep=args.keep, seed=args.seed, noise_std=args.noise)
        return Inpainting.box(image_shape, size=size // 2, noise_std=args.noise)
    return Grayscale(size, noise_std=args.noise)


def _write_dicom(source: Path, unit, output: str) -> None:
    """Back to the source's size and units (HU for CT), then a derived DICOM next to it."""
    import torch.nn.functional as F
    from .data.dicom import read_dicom, unit_to_dicom, write_derived_dicom
    original, info = read_dicom(source)
    if tuple(unit.shape[-2:]) != tuple(original.shape):
        unit = F.interpolate(unit.float().cpu(), size=original.shape, mode="bilinear", align_corners=False)
    values = unit_to_dicom(unit[0, 0].cpu().numpy(), original, info["modality"])
    write_derived_dicom(source, values, output, description="sgm-inverse reconstruction (posterior mean)")


def _is_nifti(path) -> bool:
    return str(path).endswith((".nii", ".nii.gz"))


def _read_input_image(path: Path, args):
    """(1, C, H, W) image in [0, 1] and, for NIfTI, the affine of the chosen slice."""
    import numpy as np
    import torch
    from .data.dicom import dicom_to_unit
    from .data.folder import read_unit_image
    if not _is_nifti(path):
        return torch.from_numpy(read_unit_image(path))[None], None
    import nibabel as nib
    img = nib.load(str(path))
    vol = np.asarray(img.get_fdata(dtype=np.float32))
    if vol.ndim == 3:
        k = vol.shape[2] // 2 if args.slice is None else args.slice
        if not 0 <= k < vol.shape[2]:
            raise UserError(f"--slice {k} is outside {path} (0 ... {vol.shape[2] - 1})")
        vol, affine = vol[:, :, k], img.affine.copy()
        affine[:3, 3] = img.affine[:3, :3] @ np.array([0.0, 0.0, k]) + img.affine[:3, 3]
    elif vol.ndim == 2:
        affine = img.affine
    else:
        raise UserError(f"{path} has shape {vol.shape}; expected a 2-D image or a 3-D volume")
    unit = dicom_to_unit(vol, "CT" if args.kind == "ct" else "MR")
    return torch.from_numpy(unit)[None, None], affine


def _measured_problem(path: Path, args, image_shape):
    """Forward model and measurement from a sinogram (CT) or k-space (MRI) .npy file."""
    import numpy as np
    import torch
    from forward_models import SparseViewCT, UndersampledMRI
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as err:
        raise UserError(f"{path}: cannot read a .npy measurement ({type(err).__name__})") from err
    a = a[0] if a.ndim == 3 and a.shape[0] == 1 else a
    size = image_shape[-1]
    if args.task == "ct":
        if a.ndim != 2 or np.iscomplexobj(a):
            raise UserError(f"{path}: a CT sinogram must be a real (n_views, n_detectors) array, got {a.shape}")
        fm = SparseViewCT(size, a.shape[0], geometry=args.geometry, noise_std=args.noise)
        if a.shape[1] != fm.n_detectors:
            raise UserError(f"{path}: {a.shape[1]} detectors; a {size}x{size} {args.geometry}-beam checkpoint "
                            f"expects ({a.shape[0]}, {fm.n_detectors})")
        return fm, torch.from_numpy(a.astype(np.float32))[None, None]
    if args.task == "mri":
        if a.shape != (size, size) or not np.iscomplexobj(a):
            raise UserError(f"{path}: MRI k-space must be a complex ({size}, {size}) array "
                            f"(zeros on the lines not acquired), got {a.dtype} {a.shape}")
        lines = (np.abs(a) > 0).any(axis=0).astype(np.float32)   # acquired phase-encoding columns
        fm = UndersampledMRI(size, mask=lines, noise_std=args.noise)
        print(f"k-space: {int(lines.sum())} of {size} phase-encoding lines acquired "
              f"(R = {fm.acceleration_achieved:.2f})")
        return fm, torch.from_numpy(a.astype(np.complex64))[None, None] * fm.mask
    raise UserError("--measurement is supported for ct (sinogram) and mri (k-space)")


def _write_result(x, output: str, source: Path | None, affine) -> None:
    """Posterior mean (1, C, H, W) in [0, 1] by extension: .dcm (source's units), .nii(.gz), .png, .npy."""
    if output.endswith(".dcm"):
        _write_dicom(source, x, output)
    elif _is_nifti(output):
        import nibabel as nib
        import numpy as np
        data = x[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)     # (H, W, C), in [0, 1] units
        nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), output)
    else:
        _write_images(x, output)


def _std_path(output: str) -> str:
    """recon.png -> recon_std.png; .dcm uncertainty goes to .npy (a [0, 1]-unit map, not HU)."""
    for ext in (".nii.gz", ".nii", ".png", ".npy", ".dcm"):
        if output.endswith(ext):
            return output[: -len(ext)] + "_std" + (".npy" if ext == ".dcm" else ext)
    return output + "_std.npy"


def cmd_solve(args) -> int:
    """Reconstruct from a measurement file, or from the simulated measurement of an image."""
    import torch
    import torch.nn.functional as F
    from . import solve
    from .data.dicom import is_dicom
    if args.mask is None:
        args.mask = {"mri": "equispaced", "inpaint": "box"}.get(args.task)
    if (args.input is None) == (args.measurement is None):
        raise UserError("give either an INPUT image or --measurement FILE")
    source = Path(args.input or args.measurement)
    if not (args.output.endswith((".png", ".npy", ".dcm")) or _is_nifti(args.output)):
        raise UserError(f"output {args.output!r}: expected a .png, .npy, .dcm, .nii or .nii.gz file name")
    if not source.exists():
        raise UserError(f"input {source} does not exist")
    if args.output.endswith(".dcm") and (args.input is None or not is_dicom(source)):
        raise UserError("a .dcm output needs a DICOM input image (its identifiers and HU scaling are kept)")
    device = _device(args.device)
    model = _load_model(args.checkpoint or DEFAULT_CHECKPOINTS[args.task], device, args.bf16)
    affine = None
    if args.measurement is not None:
        fm, y = _measured_problem(source, args, tuple(model.image_shape))
    else:
        try:
            image, affine = _read_input_image(source, args)
        except ValueError as e:
            raise UserError(str(e)) from e
        c, size = model.image_shape[0], model.image_shape[-1]
        if image.shape[1] != c:
            raise UserError(f"{source} has {image.shape[1]} channel(s); the checkpoint expects {c}")
        if tuple(image.shape[-2:]) != (size, size):
            if not args.resize:
                raise UserError(f"{source} is {image.shape[-2]}x{image.shape[-1]} but the checkpoint expects "
                                f"{size}x{size}; pass --resize to resample it")
            mode = "area" if image.shape[-1] > size else "bilinear"
            image = F.interpolate(image, size=(size, size), mode=mode)
        fm = _forward_model(args, tuple(model.image_shape))
        y = fm.simulate(image, generator=torch.Generator().manual_seed(args.seed))
    print(f"{args.task}: {source.name} -> measurement {tuple(y.shape[1:])}; reconstructing with "
          f"{args.samples} sample(s), {args.steps} steps")
    try:
        options = {k: getattr(args, k) for k in ("lam", "consistency", "zeta") if getattr(args, k) is not None}
        sol = solve(y.to(device), fm, model, method=args.method, steps=args.steps, n_samples=args.samples,
                    snr=args.snr, seed=args.seed, progress=not args.quiet, **options)
    except ValueError as e:
        raise UserError(str(e)) from e
    _write_result(sol.mean.clamp(0, 1), args.output, source, affine)
    written = [args.output]
    if args.std:
        std_path, std = _std_path(args.output), sol.std
        _write_result(std / std.max().clamp_min(1e-12) if std_path.endswith(".png") else std, std_path,
                      source, affine)
        written.append(std_path)
    residual = (sol.residual / y.abs().flatten(1).norm(dim=1).cpu().clamp_min(1e-12)).mean()
    print(f"wrote {', '.join(written)} ({sol.nfe} score evaluations, {sol.seconds:.1f} s, relative residual "
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
    _check_image_output(args.output)
    device = _device(args.device)
    model = _load_model(args.checkpoint, device, args.bf16)
    try:
        classifier = load_classifier(args.classifier, device=device)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    guidance = ClassifierGuidance(classifier, scale=args.scale)
    if not 0 <= args.class_ < (guidance.num_classes or args.class_ + 1):
        raise UserError(f"--class {args.class_} is out of range: the classifier has {guidance.num_classes} classes")
    labels = torch.full((args.n,), args.class_, dtype=torch.long)
    try:
        sol = solve(labels, guidance, model, method="bayes", steps=args.steps, snr=args.snr, seed=args.seed,
                    progress=not args.quiet)
    except ValueError as e:
        raise UserError(str(e)) from e
    _write_images(sol.samples[0].clamp(0, 1), args.output)
    print(f"wrote {args.n} samples of class {args.class_} (scale {args.scale}, {sol.nfe} score evaluations, "
          f"{sol.seconds:.1f} s) to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    """The main job: a held-out brain slice, simulated sparse-view CT, FBP vs FISTA-TV vs the brain64 prior."""
    import json
    import numpy as np
    import torch
    from forward_models import SparseViewCT
    from . import solve
    from .baselines import fbp, fista_tv
    from .checkpoints import WEIGHTS_DIR
    from .metrics import psnr, ssim
    from .plotting import save_panels

    model = _load_model(args.checkpoint, _device(args.device))
    if tuple(model.image_shape) != (1, 64, 64):
        raise UserError(f"the demo needs a 1x64x64 score model; {args.checkpoint} is for "
                        f"{'x'.join(map(str, model.image_shape))} images")
    meta = json.loads((WEIGHTS_DIR / "demo_brain_slice.json").read_text())
    x = torch.from_numpy(np.load(WEIGHTS_DIR / "demo_brain_slice.npy"))[None]
    views, where = args.views, "{} slice {}".format(*meta["slice_id"])
    print(f"demo: held-out brain image ({where} of the MNI152 template's test slab, 64x64), "
          f"simulated {views}-view parallel-beam CT")
    ct = SparseViewCT(64, views)
    y = ct(x)
    rows, images = [], {"ground truth": x}
    t0 = time.time()
    images["FBP"] = fbp(ct, y).clamp(0, 1)
    rows.append(("FBP", time.time() - t0))
    t0 = time.time()
    images["FISTA-TV"] = fista_tv(ct, y, meta["fista_lambda"], n_iter=meta["fista_iterations"], progress=True)
    rows.append((f"FISTA-TV (lambda {meta['fista_lambda']:g}, tuned on val)", time.time() - t0))
    print(f"demo: sampling the posterior with the score prior ({args.samples} samples, {args.steps} steps, "
          f"CG consistency step, snr {args.snr:g})")
    sol = solve(y.to(_device(args.device)), ct, model, steps=args.steps, n_samples=args.samples, snr=args.snr,
                seed=0)
    images[f"ours (mean of {args.samples})"] = sol.mean.clamp(0, 1).cpu()
    rows.append(("ours: score prior + projection", sol.seconds))
    print(f"\n{'method':44s} {'PSNR dB':>8s} {'SSIM':>6s} {'time s':>7s}")
    for (name, seconds), img in zip(rows, list(images.values())[1:]):
        print(f"{name:44s} {psnr(img, x)[0]:8.2f} {ssim(img, x)[0]:6.3f} {seconds:7.1f}")
    images["posterior std"] = sol.std.cpu()
    save_panels(images, args.output, title=f"{views}-view CT of a held-out brain image ({where})")
    print(f"\nwrote {args.output}")
    return 0


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
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device")
    s.add_argument("--bf16", action="store_true", help="run the score network under bfloat16 autocast: 1.4-2x "
                   "faster on CPUs with AVX512-BF16 or AMX (and on GPUs)")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("-o", "--output", required=True, help=".png grid or .npy array")
    s.set_defaults(func=cmd_sample)
    v = sub.add_parser("solve", help="simulate a measurement of an image and reconstruct it")
    v.add_argument("task", choices=sorted(DEFAULT_CHECKPOINTS))
    v.add_argument("input", nargs="?", help="image: PNG, NPY, DICOM or NIfTI (its measurement is simulated)")
    v.add_argument("--measurement", help="a measured CT sinogram (n_views, n_det) or complex MRI k-space (H, W) "
                   ".npy, instead of INPUT")
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
    v.add_argument("--method", default="auto", choices=["auto", "projection", "dps", "bayes"])
    v.add_argument("--snr", type=float, default=0.16, help="Langevin corrector signal-to-noise ratio")
    v.add_argument("--lam", type=float, help="projection: weight of the measured data in [0, 1] (default 1)")
    v.add_argument("--consistency", choices=["transform", "cg"],
                   help="projection: Song et al.'s step in the transform domain or the CG minimum-norm step "
                        "(default: the forward model's, cg for ct and mri, transform for inpaint and colorize)")
    v.add_argument("--zeta", type=float, help="dps: step size (default 1)")
    v.add_argument("--steps", type=int, default=500)
    v.add_argument("--samples", type=int, default=4, help="posterior samples (their std is the uncertainty map)")
    v.add_argument("--std", action="store_true", help="also write the pixelwise posterior std (OUTPUT_std)")
    v.add_argument("--resize", action="store_true", help="resample the input to the checkpoint's size")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--device")
    v.add_argument("--bf16", action="store_true", help="run the score network under bfloat16 autocast: 1.4-2x "
                   "faster on CPUs with AVX512-BF16 or AMX (and on GPUs)")
    v.add_argument("--quiet", action="store_true")
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
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device")
    g.add_argument("--bf16", action="store_true", help="run the score network under bfloat16 autocast: 1.4-2x "
                   "faster on CPUs with AVX512-BF16 or AMX (and on GPUs)")
    g.add_argument("--quiet", action="store_true")
    g.add_argument("-o", "--output", required=True, help=".png grid or .npy array (n, C, H, W) in [0, 1]")
    g.set_defaults(func=cmd_generate)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        if args.verbose:
            raise
        print(f"sgm-inverse: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
