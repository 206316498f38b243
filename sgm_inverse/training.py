"""Denoising score matching (Song et al. 2021) with EMA, resumable and DDP-ready.

Loss for x_t = alpha x_0 + std z, t ~ U(eps, T):

    lambda(t) = std^2 (default):  || std s(x_t, t) + z ||^2  = || alpha (D(x_t) - x_0) / std ||^2
    likelihood weighting:         g(t)^2 || s(x_t, t) + z / std ||^2

averaged over pixels and batch. Every `checkpoint_every` steps the whole training state
(weights, EMA, optimiser, RNG) is written atomically to `<workdir>/train_state.safetensors` and
the EMA model to `<workdir>/ema/`; `train()` resumes from that state when it exists, so a crash
loses at most `checkpoint_every` steps and the resumed run is bit-identical to an uninterrupted one
(unless it switches `cpu_bf16`, which the log's "precision" record then shows).

What must be kept to continue a run elsewhere is smaller: `resume_model.safetensors` and
`resume_ema.safetensors` (weights, EMA, data-mean sum and RNG, each file under 10 MB for a 2 M-parameter
network) are written beside the full state at every checkpoint. A workdir that holds only those two files
resumes from them with fresh Adam moments, re-warmed over `warmup_steps` (the log's "rewarm" record lists
where). Commit those two files, never the full state, while a run is live.
Several GPUs: launch with `torchrun --nproc_per_node=N`; the model is wrapped in
DistributedDataParallel and each rank draws its own batches.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from tqdm.auto import tqdm

from .checkpoints import atomic_save_tensors, model_config, save_score_model
from .score import ScoreModel
from .utils import append_dims

STATE_FILE = "train_state.safetensors"
RESUME_FILES = ("resume_model.safetensors", "resume_ema.safetensors")


@dataclass
class TrainConfig:
    steps: int = 10000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    weighting: str = "sigma2"          # "sigma2" (lambda = std^2), "likelihood" (lambda = g^2) or "edm"
    checkpoint_every: int = 500
    seed: int = 0
    amp: bool = True                   # bfloat16 autocast, CUDA only
    # bfloat16 autocast on CPU as well: about 2x on CPUs with AVX512-BF16 or AMX (brain64, 2-core EPYC:
    # 12.7 -> 24.6 img/s), emulated and slow on CPUs without; may change when a run is resumed
    cpu_bf16: bool = False
    max_seconds: float | None = None   # stop (and checkpoint) after this much wall time


def dsm_loss(model: ScoreModel, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
             weighting: str = "sigma2") -> torch.Tensor:
    """Per-sample DSM loss (B,) at times t (B,) with noise z (B, C, H, W).

    sigma2:     ||std s + z||^2 = ||D - x0||^2 / sigma~^2            (Song et al.'s lambda = std^2)
    likelihood: g^2 ||s + z / std||^2                                (lambda = g^2)
    edm:        (sigma~^2 + sd^2) / (sigma~ sd)^2 ||D - x0||^2 = ||F - F*||^2   (Karras et al. 2022)
    (means over pixels; sigma~ = std / alpha, sd = sigma_data, F the network output, F* its target.)
    With the EDM preconditioning of `ScoreModel`, sigma2 weights the network's own error by
    c_out^2 / sigma~^2 = sd^2 / (sigma~^2 + sd^2): about 1 at low noise but 4e-4 at sigma~ = 25, so
    the large noise levels get little of the gradient; edm weights every noise level's F-error alike.
    (On digits32 at equal images this did not improve the samples: benchmarks/results/archive/digits32_weighting_study.)
    """
    alpha, std = model.sde.scale_std(t)
    x_t = append_dims(alpha, x0.ndim) * x0 + append_dims(std, x0.ndim) * z
    err = append_dims(alpha / std, x0.ndim) * (model.denoise(x_t, t) - x0)   # = std s + z
    per_sample = err.pow(2).flatten(1).mean(1)
    if weighting == "sigma2":
        return per_sample
    if weighting == "likelihood":
        g = model.sde.sde(x0, t)[1]
        return per_sample * g ** 2 / std ** 2
    if weighting == "edm":
        sd2 = model.sigma_data ** 2
        return per_sample * ((std / alpha) ** 2 + sd2) / sd2
    raise ValueError(f"weighting must be 'sigma2', 'likelihood' or 'edm', got {weighting!r}")


def autocast_bf16(config: TrainConfig, device: torch.device) -> bool:
    """Whether training steps run under bfloat16 autocast on `device` (`amp` on CUDA, `cpu_bf16` on CPU)."""
    if device.type == "cuda":
        return config.amp
    return device.type == "cpu" and config.cpu_bf16


def cpu_supports_bf16() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16 or AMX); without them
    bfloat16 autocast is emulated and slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):   # a private op: absent from some builds
        return False


def _precision(bf16: bool) -> str:
    return "bf16" if bf16 else "fp32"


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def draw_batch(dataset, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    idx = torch.randint(len(dataset), (batch_size,), generator=generator)
    items = [dataset[int(i)] for i in idx]
    return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])


class EMA:
    """Exponential moving average of parameters (and a copy of buffers), used for sampling."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        # Short warm-up of the decay so early EMA weights are not dominated by the random init.
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.module.buffers(), module.buffers()):
            e.copy_(b)


def _state_tensors(net, ema, opt, gens, data_sum: torch.Tensor | None = None) -> dict:
    out = {f"model.{k}": v for k, v in net.state_dict().items()}
    if data_sum is not None:
        out["data.sum"] = data_sum
    out.update({f"ema.{k}": v for k, v in ema.module.state_dict().items()})
    for pid, st in opt.state_dict()["state"].items():
        out.update({f"optim.{pid}.{k}": torch.as_tensor(v) for k, v in st.items()})
    out.update({f"rng.{name}": g.get_state() for name, g in gens.items()})
    return out


def _state_metadata(path: Path) -> dict:
    """The string metadata of a training-state file (step, log, configs), read without its tensors."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def _with_prefix(tensors: dict, prefix: str) -> dict:
    """The tensors saved under `prefix` (e.g. "ema."), with the prefix removed: one module's state dict."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_state(path: Path, net, ema, opt, gens) -> tuple[int, dict, torch.Tensor | None]:
    """(step, log, the running sum of the training images seen since it was first recorded, or None)."""
    meta = _state_metadata(path)
    tensors = load_file(str(path))
    net.load_state_dict(_with_prefix(tensors, "model."))
    ema.module.load_state_dict(_with_prefix(tensors, "ema."))
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt_sd = opt.state_dict()
    opt_sd["state"] = state
    opt_sd["param_groups"] = json.loads(meta["param_groups"])
    opt.load_state_dict(opt_sd)
    for name, g in gens.items():
        g.set_state(tensors[f"rng.{name}"])
    return int(meta["step"]), json.loads(meta.get("log", "{}")), tensors.get("data.sum")


def _save_resume_files(workdir: Path, net, ema, gens, data_sum, meta: dict) -> None:
    """The minimum that resumes a run (no optimizer moments): two files, each about one copy of the weights."""
    model_file, ema_file = (workdir / f for f in RESUME_FILES)
    atomic_save_tensors(dict(net.state_dict()), model_file, metadata=meta)
    extra = {f"ema.{k}": v for k, v in ema.module.state_dict().items()}
    extra.update({f"rng.{name}": g.get_state() for name, g in gens.items()})
    if data_sum is not None:
        extra["data.sum"] = data_sum
    atomic_save_tensors(extra, ema_file, metadata=meta)


def _load_resume_files(workdir: Path, net, ema, gens) -> tuple[int, dict, torch.Tensor | None]:
    """Like `_load_state` from the two resume files; the optimizer keeps its fresh (zero) moments."""
    model_file, ema_file = (workdir / f for f in RESUME_FILES)
    meta = _state_metadata(ema_file)
    net.load_state_dict(load_file(str(model_file)))
    tensors = load_file(str(ema_file))
    ema.module.load_state_dict(_with_prefix(tensors, "ema."))
    for name, g in gens.items():
        g.set_state(tensors[f"rng.{name}"])
    return int(meta["step"]), json.loads(meta.get("log", "{}")), tensors.get("data.sum")


def ema_from_state(workdir) -> ScoreModel:
    """The EMA model (eval mode) kept in `<workdir>/train_state.safetensors`, with its training record.

    For a run of which only the state file was kept (the `ema/` export is not committed), e.g. to
    fine-tune from it with `sgm-inverse train --init-from WORKDIR`.
    """
    from .checkpoints import build_score_model
    path = Path(workdir) / STATE_FILE
    meta = _state_metadata(path)
    step, config = int(meta["step"]), json.loads(meta["train_config"])
    seconds = json.loads(meta.get("log", "{}")).get("seconds")
    model = build_score_model({**json.loads(meta["model_config"]), "training": {
        "step": step, "images_seen": step * config["batch_size"] * int(meta.get("world_size", 1)),
        "seconds": seconds, "config": config}})
    tensors = load_file(str(path))
    model.network.load_state_dict(_with_prefix(tensors, "ema."))
    count = json.loads(meta.get("log", "{}")).get("data_count")
    if "data.sum" in tensors and count:
        model.prior_mean = (tensors["data.sum"] / count).to(torch.float32)
    return model.eval().requires_grad_(False)


# Settings that may change between a run and its resumption (how long, how often to save, and the
# CPU precision, which only changes the speed and the rounding; the log records it).
_RESUMABLE_CHANGES = {"steps", "max_seconds", "checkpoint_every", "cpu_bf16"}


def _check_resume_config(path: Path, config: TrainConfig) -> TrainConfig:
    """Refuse to resume with other optimisation settings: the result would silently be a different run.
    Returns the saved settings."""
    saved = json.loads(_state_metadata(path)["train_config"])
    now = asdict(config)
    diff = {k: (saved.get(k), now[k]) for k in now if k not in _RESUMABLE_CHANGES and saved.get(k) != now[k]}
    if diff:
        changes = ", ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path} was trained with other settings ({changes}); resume with the saved "
                         f"settings or use a new workdir")
    return TrainConfig(**{k: v for k, v in saved.items() if k in now})


def train(model: ScoreModel, dataset, config: TrainConfig, workdir, *, augment=None, progress: bool = True,
          record: dict | None = None, callback=None) -> ScoreModel:
    """Train `model` in place by DSM on `dataset` (items (C, H, W) tensors or (tensor, label)).

    `augment(batch, generator) -> batch` is applied to every batch; `record` (JSON) is stored in the
    checkpoint config (data set, command, ...); `callback(step, loss)` runs after each step.
    Returns the EMA model (eval mode). Resumes from `workdir` when a training state exists.
    """
    workdir = Path(workdir)
    rank, world, device = init_distributed()
    model.to(device).train()
    net = model.network
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    train_model = ScoreModel(net, model.sde, model.sigma_data)
    ema = EMA(model.network, config.ema_decay)
    opt = torch.optim.AdamW(model.network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gens = {"data": torch.Generator().manual_seed(config.seed * 1000 + rank),
            "noise": torch.Generator(device=device).manual_seed(config.seed * 1000 + 500 + rank)}
    step, log = 0, {"losses": [], "seconds": 0.0}
    # Running sum of every training image as the network saw it (after augmentation), for the prior mean
    # of the checkpoint (ScoreModel.prior_mean); log["data_count"] images. A state saved before this record
    # starts counting at its resumption.
    data_sum = None
    state_path = workdir / STATE_FILE
    saved = None
    rewarm_from = 0      # the step the learning-rate warm-up counts from (fresh Adam moments start one)
    if state_path.exists() or all((workdir / f).exists() for f in RESUME_FILES):
        full = state_path.exists()
        source = state_path if full else workdir / RESUME_FILES[1]
        saved = _check_resume_config(source, config)
        load = _load_state if full else (lambda _p, n, e, _o, g: _load_resume_files(workdir, n, e, g))
        step, log, saved_sum = load(state_path, model.network, ema, opt, gens)
        if saved_sum is not None:
            data_sum = saved_sum.to(torch.float64)
        if not full:
            log.setdefault("rewarm", []).append(step)
        rewarm_from = log.get("rewarm", [0])[-1]
        if rank == 0 and progress:
            print(f"resuming from {source} at step {step}" + ("" if full else " (fresh optimizer moments)"))
    workdir.mkdir(parents=True, exist_ok=True)
    eps, T = model.sde.eps, model.sde.T
    use_amp = autocast_bf16(config, device)
    # which precision trained which steps, [[first step, "bf16" | "fp32"], ...]: cpu_bf16 may change on
    # resume. A state saved before this record ran all its steps under its saved settings.
    if "precision" not in log:
        log["precision"] = [[0, _precision(use_amp if saved is None else autocast_bf16(saved, device))]]
    if log["precision"][-1][1] != _precision(use_amp):
        log["precision"].append([step, _precision(use_amp)])
    start, seconds0 = time.time(), log.get("seconds", 0.0)
    running = None

    def checkpoint():
        if rank != 0:
            return
        log["seconds"] = seconds0 + time.time() - start
        meta = {"step": str(step), "log": json.dumps(log), "train_config": json.dumps(asdict(config)),
                "param_groups": json.dumps(opt.state_dict()["param_groups"]), "world_size": str(world),
                "model_config": json.dumps(model_config(model)),
                # the run's record (data, command, init_from): a resume from the two resume files alone
                # (another machine, no ema/ export) still knows what the run is and what it started from
                "record": json.dumps(record or {})}
        atomic_save_tensors(_state_tensors(model.network, ema, opt, gens, data_sum), state_path, metadata=meta)
        _save_resume_files(workdir, model.network, ema, gens, data_sum, meta)
        ema_model = ema_score_model()
        # data_count counts the images actually drawn (a resolution-free corpus varies the batch size)
        images = log.get("data_count") if getattr(dataset, "resolution_free", False) else None
        save_score_model(ema_model, workdir / "ema", training={
            "step": step, "images_seen": images or step * config.batch_size * world, "seconds": log["seconds"],
            "final_loss": running, "config": asdict(config), "world_size": world, "device": str(device),
            "precision": log["precision"], "prior_mean_images": log.get("data_count")},
            **(record or {}))

    def ema_score_model() -> ScoreModel:
        mean = None if data_sum is None else (data_sum / log["data_count"]).to(torch.float32)
        return ScoreModel(ema.module, model.sde, model.sigma_data, config=model.config, prior_mean=mean)

    bar = tqdm(total=config.steps, initial=step, disable=not progress or rank != 0, desc="training")
    while step < config.steps:
        if hasattr(dataset, "draw_batch"):     # a data set that draws its own batches (crops of several sizes)
            x0 = dataset.draw_batch(config.batch_size, gens["data"])
        else:
            x0 = draw_batch(dataset, config.batch_size, gens["data"])
        if augment is not None:
            x0 = augment(x0, gens["data"])
        # a resolution-free prior's mean is one number per channel, (C, 1, 1), which broadcasts to any size
        seen = x0.mean((-2, -1), keepdim=True) if getattr(dataset, "resolution_free", False) else x0
        if data_sum is None:
            data_sum, log["data_count"] = torch.zeros(seen.shape[1:], dtype=torch.float64), 0
        data_sum += seen.sum(0, dtype=torch.float64)
        log["data_count"] = log.get("data_count", 0) + x0.shape[0]
        x0 = x0.to(device)
        t = torch.rand(x0.shape[0], generator=gens["noise"], device=device) * (T - eps) + eps
        z = torch.randn(x0.shape, generator=gens["noise"], device=device)
        for group in opt.param_groups:
            group["lr"] = config.lr * min(1.0, (step - rewarm_from + 1) / max(1, config.warmup_steps))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = dsm_loss(train_model, x0, t, z, config.weighting).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.network.parameters(), config.grad_clip)
        opt.step()
        step += 1
        ema.update(model.network, step)
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 50 == 0:
            log["losses"].append([step, running])
        bar.update(1)
        bar.set_postfix(loss=f"{running:.4f}")
        if callback is not None:
            callback(step, value)
        out_of_time = config.max_seconds is not None and time.time() - start > config.max_seconds
        if world > 1 and config.max_seconds is not None:
            # Ranks' clocks differ: stop only together, or one rank would wait forever in a gradient sync.
            flag = torch.tensor([float(out_of_time)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            out_of_time = bool(flag.item())
        if step % config.checkpoint_every == 0 or step == config.steps or out_of_time:
            checkpoint()
            if world > 1:
                dist.barrier()
        if out_of_time:
            break
    bar.close()
    return ema_score_model().eval()
