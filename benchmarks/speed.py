"""Speed of the engine: U-Net forward time vs the PC sampler's time per score evaluation.

    python benchmarks/speed.py [--device cpu|cuda] [--batch 8] [--steps 10] [--repeats 10] [--out DIR]

Measures, for the default U-Net (UNetConfig(): 1 x 64 x 64, ~2.2 M parameters) and a batch of B images:
  * forward_ms: the network alone, F(x, c_noise), median of `repeats` runs under torch.no_grad after warm-up;
  * score_ms: the ScoreModel call (network + noise preconditioning), same protocol;
  * for pc_sample with corrector "none" and "langevin": wall time, NFE, time per step, time per NFE,
    the ratio (time per NFE) / forward_ms -- the sampler's own overhead (goal: <= 1.05) -- and NFE/s;
  * the same overhead measured inside one run (wall / time spent in the network, via forward hooks),
    which other load on a shared machine cannot skew.
Writes <out>/speed.json and <out>/speed.md with the command line, git commit, device, torch version and date.
Uses only the public API.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from sgm_inverse import VESDE, ScoreModel, pc_sample
from sgm_inverse.nets import UNet, UNetConfig

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    if out.returncode != 0:
        return "uncommitted"
    commit = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int, warmup: int) -> list[float]:
    """Wall times in seconds of `repeats` calls of fn() after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def profiled_run(model, net, shape, steps, device, kw) -> tuple[float, float]:
    """One pc_sample run with forward hooks on the network: (seconds inside the network, wall seconds).

    Their ratio is the sampler's overhead measured within a single run, so load from other processes on a
    shared machine affects numerator and denominator alike. On CUDA the hooks synchronise, so the time of
    each forward is attributed correctly (and this run is a little slower than the un-hooked ones)."""
    acc = {"t": 0.0, "start": 0.0}

    def pre(module, inputs):
        sync(device)
        acc["start"] = time.perf_counter()

    def post(module, inputs, output):
        sync(device)
        acc["t"] += time.perf_counter() - acc["start"]

    handles = [net.register_forward_pre_hook(pre), net.register_forward_hook(post)]
    try:
        sync(device)
        t0 = time.perf_counter()
        pc_sample(model, shape, steps=steps, generator=torch.Generator(device=device).manual_seed(1), **kw)
        sync(device)
        wall = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
    return acc["t"], wall


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="PC sampler steps per timed run")
    p.add_argument("--repeats", type=int, default=10, help="timed network forwards (median reported)")
    p.add_argument("--sampler-repeats", type=int, default=3, help="timed pc_sample runs per corrector (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()

    torch.manual_seed(0)
    net = UNet(UNetConfig()).to(device).eval().requires_grad_(False)
    cfg = net.config
    shape = (args.batch, cfg.in_channels, cfg.image_size, cfg.image_size)
    model = ScoreModel(net, VESDE()).to(device).eval().requires_grad_(False)
    n_params = sum(p.numel() for p in net.parameters())

    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, generator=gen, device=device)
    c_noise = torch.full((args.batch,), 0.3, device=device)
    t = torch.full((args.batch,), 0.5, device=device)

    print(f"U-Net {n_params / 1e6:.2f} M parameters, input {tuple(shape)}, device {device_name(device)}, "
          f"{torch.get_num_threads()} threads", flush=True)
    with torch.no_grad():
        fwd = timed(lambda: net(x, c_noise), device, args.repeats, args.warmup)
        score = timed(lambda: model(x, t), device, args.repeats, 1)
    forward_s, score_s = statistics.median(fwd), statistics.median(score)
    print(f"forward {forward_s * 1e3:.1f} ms (median of {args.repeats}), score model {score_s * 1e3:.1f} ms",
          flush=True)

    samplers = {}
    for corrector in ("none", "langevin"):
        kw = dict(predictor="reverse_diffusion", corrector=corrector, snr=0.16, progress=False, device=device)
        pc_sample(model, shape, steps=1, generator=torch.Generator(device=device).manual_seed(1), **kw)  # warm-up
        walls, nfe = [], None
        for _ in range(args.sampler_repeats):
            info = {}
            sync(device)
            t0 = time.perf_counter()
            pc_sample(model, shape, steps=args.steps, generator=torch.Generator(device=device).manual_seed(1),
                      info=info, **kw)
            sync(device)
            walls.append(time.perf_counter() - t0)
            nfe = info["nfe"]
        wall, best = statistics.median(walls), min(walls)
        in_net, prof_wall = profiled_run(model, net, shape, args.steps, device, kw)
        nfe_per_step = 1 + (corrector != "none")
        samplers[corrector] = {
            "steps": args.steps, "nfe": nfe, "nfe_per_step": nfe_per_step, "runs": len(walls),
            "wall_s_median": wall, "wall_s_all": walls,
            "ms_per_step": wall / args.steps * 1e3, "ms_per_step_per_nfe": wall / args.steps / nfe_per_step * 1e3,
            "ms_per_nfe": wall / nfe * 1e3, "ratio_to_forward": wall / nfe / forward_s,
            "ratio_to_forward_best": best / nfe / min(fwd), "nfe_per_s": nfe / wall,
            "in_run_network_s": in_net, "in_run_wall_s": prof_wall, "in_run_overhead_ratio": prof_wall / in_net,
        }
        s = samplers[corrector]
        print(f"pc_sample corrector={corrector}: {nfe} NFE in {wall:.2f} s (median of {len(walls)}), "
              f"{s['ms_per_nfe']:.1f} ms/NFE, ratio to forward {s['ratio_to_forward']:.3f} "
              f"(best-of: {s['ratio_to_forward_best']:.3f}), "
              f"in-run wall / network time {s['in_run_overhead_ratio']:.4f}, "
              f"{s['nfe_per_s']:.2f} NFE/s", flush=True)

    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]) if argv is None
        else "speed.main(" + repr(argv) + ")",
        "git_commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device), "device_name": device_name(device),
        "torch_version": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "network": {"type": "UNet", "config": cfg.to_dict(), "parameters": n_params},
        "batch": args.batch, "input_shape": list(shape),
        "forward_ms_median": forward_s * 1e3, "forward_ms_min": min(fwd) * 1e3,
        "forward_ms_all": [v * 1e3 for v in fwd],
        "score_model_ms_median": score_s * 1e3,
        "pc_sample": samplers,
        "goal": "ratio_to_forward <= 1.05",
        "wall_s": time.time() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "speed.md").write_text(markdown(result))
    print(f"wrote {out / 'speed.json'} and {out / 'speed.md'}")
    return result


def markdown(r: dict) -> str:
    lines = [
        "# Speed: U-Net forward vs PC sampler",
        "",
        f"- command: `{r['command']}`",
        f"- git commit: {r['git_commit']}",
        f"- date: {r['date']}",
        f"- device: {r['device']} ({r['device_name']}), {r['threads']} threads",
        f"- torch {r['torch_version']}, Python {r['python']}",
        f"- network: default UNetConfig, {r['network']['parameters']:,} parameters; input {tuple(r['input_shape'])}",
        "",
        f"Network forward alone: **{r['forward_ms_median']:.1f} ms** (median); ScoreModel call (with preconditioning): "
        f"{r['score_model_ms_median']:.1f} ms.",
        "",
        "| sampler (reverse diffusion +) | steps | NFE | wall (s) | ms / step | ms / NFE | ratio to forward "
        "| ratio (best runs) | in-run wall / network | NFE / s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in r["pc_sample"].items():
        lines.append(f"| corrector `{name}` | {s['steps']} | {s['nfe']} | {s['wall_s_median']:.2f} | "
                     f"{s['ms_per_step']:.1f} | {s['ms_per_nfe']:.1f} | {s['ratio_to_forward']:.3f} | "
                     f"{s['ratio_to_forward_best']:.3f} | {s['in_run_overhead_ratio']:.4f} | {s['nfe_per_s']:.2f} |")
    lines += ["", f"Goal: {r['goal']} (the sampler's own overhead per score evaluation). Times are medians "
              f"(wall of {r['pc_sample']['none']['runs']} sampler runs, {len(r['forward_ms_all'])} forwards); "
              "'best runs' divides the fastest sampler run by the fastest forward (less sensitive to other load "
              "on a shared machine); 'in-run wall / network' is one extra sampler run's wall time divided by the "
              "time spent inside the network's forward during that same run (forward hooks): the most "
              "load-robust overhead figure. ms / NFE includes the final Tweedie denoise evaluation.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
