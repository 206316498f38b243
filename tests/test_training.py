"""Denoising score matching: the loss formula, learning a 2-D mixture, exact resume, seeds, DDP.

The 2-D tests use a small MLP network F(x (B, 2), c_noise (B,)) -> (B, 2): `train`, `dsm_loss` and
`ScoreModel` must work on (B, D) tensors, not only on (B, C, H, W) images.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from sgm_inverse import VESDE, VPSDE, ScoreModel, tweedie_denoise
from sgm_inverse.samplers import ode_sample, pc_sample
from sgm_inverse.training import TrainConfig, dsm_loss, train

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = Path(__file__).resolve().parents[1]


@dataclass
class MLPConfig:
    dim: int = 2
    hidden: int = 128
    emb: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class MLP(nn.Module):
    """F(x, c_noise) for vector data: random Fourier features of c_noise, concatenated with x."""

    def __init__(self, config: MLPConfig | None = None, seed: int = 0):
        super().__init__()
        self.config = cfg = config or MLPConfig()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", 4 * torch.randn(cfg.emb // 2, generator=gen))
        layers, width = [], cfg.dim + cfg.emb
        for _ in range(3):
            layers += [nn.Linear(width, cfg.hidden), nn.SiLU()]
            width = cfg.hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, cfg.dim))
        with torch.no_grad():   # deterministic init from `seed`, independent of the global RNG
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[-1]))

    def forward(self, x, c_noise):
        arg = 2 * math.pi * c_noise[:, None] * self.freqs.to(x.dtype)
        return self.net(torch.cat([x, arg.cos(), arg.sin()], dim=1))


def mlp_model(sde=None, hidden=128, seed=0, sigma_data=2.5):
    return ScoreModel(MLP(MLPConfig(hidden=hidden), seed=seed), sde or VPSDE(0.1, 20.0), sigma_data=sigma_data,
                      config={"image_shape": [2]})


MIX_W = torch.tensor([0.2, 0.5, 0.3])
MIX_MU = torch.tensor([[-5.0, 0.0], [2.0, -2.0], [0.0, 10.0 / 3.0]])
MIX_S = torch.tensor([0.3, 0.5, 0.4])


def mixture_data(n=20000, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(MIX_W, n, replacement=True, generator=g)
    return MIX_MU[k] + MIX_S[k, None] * torch.randn(n, 2, generator=g)


def all_params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_bit_identical(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------- loss formula
@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE(0.1, 20.0)], ids=["VE", "VP"])
def test_dsm_loss_formula_on_vectors(sde):
    """sigma^2 weighting: ||std s(x_t, t) + z||^2 averaged over coordinates; likelihood: g^2 ||s + z/std||^2."""
    model = mlp_model(sde, hidden=16).double()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    z = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(64, generator=gen, dtype=torch.float64) * (1 - sde.eps) + sde.eps
    alpha, std = sde.scale_std(t)
    xt = alpha[:, None] * x0 + std[:, None] * z
    s = model(xt, t)
    assert s.shape == (64, 2)
    loss = dsm_loss(model, x0, t, z)
    assert loss.shape == (64,)
    torch.testing.assert_close(loss, (std[:, None] * s + z).pow(2).mean(1), rtol=1e-9, atol=1e-12)
    g = sde.sde(x0, t)[1]
    torch.testing.assert_close(dsm_loss(model, x0, t, z, weighting="likelihood"),
                               g ** 2 * (s + z / std[:, None]).pow(2).mean(1), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        dsm_loss(model, x0, t, z, weighting="uniform")


@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE(0.1, 20.0)], ids=["VE", "VP"])
def test_edm_weighting_is_the_network_error(sde):
    """edm: ||F(c_in x~, c_noise) - F*||^2 with F* = (x0 - c_skip x~) / c_out, built here from the network."""
    sd = 0.7
    model = mlp_model(sde, hidden=16, sigma_data=sd).double()
    gen = torch.Generator().manual_seed(2)
    x0, z = torch.randn(2, 64, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(64, generator=gen, dtype=torch.float64) * (1 - sde.eps) + sde.eps
    alpha, std = sde.scale_std(t)
    sig = (std / alpha)[:, None]
    xs = x0 + sig * z                                       # x_t / alpha
    c_skip, c_out = sd ** 2 / (sig ** 2 + sd ** 2), sig * sd / (sig ** 2 + sd ** 2).sqrt()
    f = model.network(xs / (sig ** 2 + sd ** 2).sqrt(), sig[:, 0].log() / 4)
    target = (x0 - c_skip * xs) / c_out
    torch.testing.assert_close(dsm_loss(model, x0, t, z, weighting="edm"), (f - target).pow(2).mean(1),
                               rtol=1e-8, atol=1e-10)


def test_score_model_preconditioning_and_tweedie():
    """D = c_skip x~ + c_out F(c_in x~, ln(sigma~)/4) with x~ = x/alpha, sigma~ = std/alpha (EDM), and
    s = (alpha D - x) / std^2, so the Tweedie denoiser built from the score gives D back."""
    sde = VPSDE(0.1, 20.0)
    model = mlp_model(sde, hidden=16, sigma_data=0.7).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    t = torch.linspace(sde.eps, 1.0, 10, dtype=torch.float64)
    alpha, std = sde.scale_std(t)
    sig, sd = std / alpha, 0.7
    xs = x / alpha[:, None]
    c_skip, c_out = sd ** 2 / (sig ** 2 + sd ** 2), sig * sd / (sig ** 2 + sd ** 2).sqrt()
    c_in = 1 / (sig ** 2 + sd ** 2).sqrt()
    d = c_skip[:, None] * xs + c_out[:, None] * model.network(c_in[:, None] * xs, sig.log() / 4)
    torch.testing.assert_close(model.denoise(x, t), d, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(model(x, t), (alpha[:, None] * d - x) / std[:, None] ** 2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tweedie_denoise(model, x, t), d, rtol=1e-9, atol=1e-10)
    assert model.image_shape == (2,)


# --------------------------------------------------------------------------- learning
def test_training_learns_mixture_weights(tmp_path):
    """DSM on a 3-component mixture with weights 0.2/0.5/0.3 (well separated, so nearest-mean assignment
    is exact to ~1e-6). 2500 steps of batch 256 (~15 s on 1 CPU thread). 4000 samples give a binomial
    SE <= 0.8 points; we require each weight within 5 points (the brief's bound; typical error 1-2 points),
    and each component's spread within 40 % of its std (samples near the right modes, not a blur)."""
    torch.manual_seed(0)
    model = mlp_model(VPSDE(0.1, 20.0))
    cfg = TrainConfig(steps=2500, batch_size=256, lr=2e-3, warmup_steps=100, ema_decay=0.995,
                      checkpoint_every=2500, seed=1, amp=False)
    losses = []
    ema = train(model, mixture_data(), cfg, tmp_path / "run", progress=False,
                callback=lambda step, loss: losses.append(loss))
    assert len(losses) == 2500 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-200:]) / 200 < 0.7 * sum(losses[:50]) / 50       # it learned something
    assert not ema.training
    samplers = {
        "pc": lambda: pc_sample(ema, (4000, 2), steps=300, generator=torch.Generator().manual_seed(5), progress=False),
        "ode": lambda: ode_sample(ema, (4000, 2), generator=torch.Generator().manual_seed(5)),
    }
    for name, draw in samplers.items():
        x = draw()
        assert x.shape == (4000, 2) and torch.isfinite(x).all()
        k = torch.cdist(x, MIX_MU).argmin(1)
        for j in range(3):
            w_hat = (k == j).float().mean().item()
            spread = (x[k == j] - MIX_MU[j]).pow(2).mean().sqrt().item()
            assert abs(w_hat - MIX_W[j].item()) < 0.05, (name, j, w_hat)
            assert abs(spread / MIX_S[j].item() - 1) < 0.4, (name, j, spread)
    # The run left a loadable-format EMA checkpoint and the training state.
    assert (tmp_path / "run" / "train_state.safetensors").exists()
    cfg_json = json.loads((tmp_path / "run" / "ema" / "config.json").read_text())
    assert cfg_json["training"]["step"] == 2500 and cfg_json["image_shape"] == [2]


# --------------------------------------------------------------------- determinism / resume
SMALL = dict(steps=20, batch_size=32, lr=1e-3, warmup_steps=5, ema_decay=0.9, checkpoint_every=10, amp=False)


class Interrupt(RuntimeError):
    pass


def _interrupt_at(step_to_fail):
    def cb(step, loss):
        if step == step_to_fail:
            raise Interrupt(f"simulated crash at step {step}")
    return cb


def test_resume_is_bit_identical(tmp_path):
    data = mixture_data(2000)
    full = mlp_model(hidden=32, seed=0)
    ema_full = train(full, data, TrainConfig(**SMALL), tmp_path / "full", progress=False)

    crashed = mlp_model(hidden=32, seed=0)
    with pytest.raises(Interrupt):
        train(crashed, data, TrainConfig(**SMALL), tmp_path / "crash", progress=False, callback=_interrupt_at(15))
    # A new process: a differently initialised model must be overwritten by the step-10 state.
    resumed = mlp_model(hidden=32, seed=123)
    steps_seen = []
    ema_resumed = train(resumed, data, TrainConfig(**SMALL), tmp_path / "crash", progress=False,
                        callback=lambda step, loss: steps_seen.append(step))
    assert steps_seen == list(range(11, 21))          # resumed after the last checkpoint, not from 0
    assert_bit_identical(all_params(full.network), all_params(resumed.network))
    assert_bit_identical(all_params(ema_full.network), all_params(ema_resumed.network))


def test_same_seed_same_weights_different_seed_differs(tmp_path):
    data = mixture_data(2000)
    runs = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        model = mlp_model(hidden=32, seed=0)
        cfg = TrainConfig(**{**SMALL, "steps": 12, "seed": seed})
        runs[name] = all_params(train(model, data, cfg, tmp_path / name, progress=False).network)
    assert_bit_identical(runs["a"], runs["b"])
    assert any(not torch.equal(runs["a"][k], runs["c"][k]) for k in runs["a"])


def test_finished_run_does_not_train_again(tmp_path):
    data = mixture_data(500)
    model = mlp_model(hidden=16)
    cfg = TrainConfig(**{**SMALL, "steps": 10})
    first = all_params(train(model, data, cfg, tmp_path, progress=False).network)
    calls = []
    again = train(mlp_model(hidden=16, seed=9), data, cfg, tmp_path, progress=False,
                  callback=lambda s, l: calls.append(s))
    assert calls == []
    assert_bit_identical(first, all_params(again.network))


# ---------------------------------------------------------------------------------- DDP
DDP_SCRIPT = textwrap.dedent("""
    import hashlib, os, sys
    import torch
    import torch.distributed as dist
    from sgm_inverse import VESDE, ScoreModel
    from sgm_inverse.nets import UNet, UNetConfig
    from sgm_inverse.training import TrainConfig, train

    torch.set_num_threads(1)
    out = sys.argv[1]
    # Different initial weights per rank on purpose: DDP must broadcast rank 0's and keep them in sync.
    torch.manual_seed(100 + int(os.environ["RANK"]))
    net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                          image_size=8))
    model = ScoreModel(net, VESDE(0.01, 10.0))
    data = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=5, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=5, amp=False)
    ema = train(model, data, cfg, os.path.join(out, "work"), progress=False)

    def digest(module):
        h = hashlib.sha256()
        for k, v in sorted(module.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    rank, world = dist.get_rank(), dist.get_world_size()
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(f"{world} {digest(model.network)} {digest(ema.network)}")
    dist.barrier()
    dist.destroy_process_group()
""")


def run_torchrun(script_text: str, name: str, cwd: Path, timeout: float):
    """Write `script_text` to cwd/name and run it under torchrun with 2 CPU processes (gloo).

    Returns (returncode, output tail), returncode None on timeout.

    Output goes to a file, not a pipe, so stray workers cannot block the read. On timeout the launcher gets
    SIGTERM (it terminates its workers), then SIGKILL; any worker still alive -- torchrun starts each in
    its own session -- is killed by PID, found by `marker` (the unique script path) in its command line."""
    script = Path(cwd) / name
    script.write_text(script_text)
    marker = str(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(cwd)]
    log = Path(cwd) / "torchrun.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if marker.encode() in (entry / "cmdline").read_bytes():
                            os.kill(int(entry.name), signal.SIGKILL)
                    except (OSError, ProcessLookupError):
                        pass
    return code, log.read_text()[-5000:]


def test_ddp_two_processes_cpu(tmp_path):
    returncode, output = run_torchrun(DDP_SCRIPT, "ddp_train.py", tmp_path, timeout=300)
    assert returncode == 0, output
    work = tmp_path / "work"
    assert (work / "train_state.safetensors").exists()
    assert (work / "ema" / "model.safetensors").exists()
    cfg = json.loads((work / "ema" / "config.json").read_text())
    assert cfg["training"]["step"] == 5 and cfg["training"]["world_size"] == 2
    r0 = (tmp_path / "rank0.txt").read_text().split()
    r1 = (tmp_path / "rank1.txt").read_text().split()
    assert r0[0] == r1[0] == "2"
    assert r0[1] == r1[1], "ranks' parameters diverged: gradients were not all-reduced or init not broadcast"
    assert r0[2] == r1[2], "ranks' EMA weights diverged"


DDP_TIME_LIMIT_SCRIPT = textwrap.dedent("""
    import os, sys, time
    import torch
    import torch.distributed as dist
    import sgm_inverse.training as training
    from sgm_inverse import VESDE, ScoreModel
    from sgm_inverse.nets import UNet, UNetConfig

    torch.set_num_threads(1)
    out = sys.argv[1]
    rank = int(os.environ["RANK"])

    class SkewedClock:
        # Rank 1's wall clock reads 1 s "late" at the moment train() stamps its start time, as when one
        # rank reaches that line later than another (slower state loading, a GC pause, a busy host).
        def __init__(self):
            self.calls = 0

        def time(self):
            self.calls += 1
            return time.time() - (1.0 if self.calls == 1 else 0.0)

    if rank == 1:
        training.time = SkewedClock()
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                          image_size=8))
    model = ScoreModel(net, VESDE(0.01, 10.0))
    data = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg = training.TrainConfig(steps=10**6, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=10**6,
                               amp=False, max_seconds=2.0)
    steps = []
    training.train(model, data, cfg, os.path.join(out, "work"), progress=False,
                   callback=lambda step, loss: steps.append(step))
    with open(os.path.join(out, f"rank{rank}.txt"), "w") as f:
        f.write(str(len(steps)))
    dist.destroy_process_group()
""")


def test_ddp_time_limit_is_agreed_by_all_ranks(tmp_path):
    """With `max_seconds`, every rank must stop after the same step. Each rank now decides from its own
    clock, so ranks whose start stamps differ stop at different steps: the earlier one leaves the loop
    (checkpoint + barrier) while the other waits in its next gradient all-reduce, and the job hangs.
    The subprocess gets 45 s (a healthy run takes ~2 s of training plus start-up)."""
    returncode, output = run_torchrun(DDP_TIME_LIMIT_SCRIPT, "ddp_time_limit.py", tmp_path, timeout=45)
    if returncode is None:
        pytest.fail("DDP training with max_seconds hung: the ranks disagreed on when time was up\n" + output)
    assert returncode == 0, output
    n0 = int((tmp_path / "rank0.txt").read_text())
    n1 = int((tmp_path / "rank1.txt").read_text())
    assert n0 == n1 > 0


def test_resume_with_other_settings_is_refused(tmp_path):
    from sgm_inverse import VESDE, ScoreModel
    from sgm_inverse.nets import UNet, UNetConfig
    from sgm_inverse.training import TrainConfig, train

    def model():
        torch.manual_seed(0)
        return ScoreModel(UNet(UNetConfig(image_size=8, base_channels=8, channel_mult=(1, 2),
                                          attn_resolutions=())), VESDE(0.01, 5.0))
    data = [torch.rand(1, 8, 8) for _ in range(4)]
    train(model(), data, TrainConfig(steps=2, batch_size=2, checkpoint_every=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr: saved 0.0002, now 0.001"):
        train(model(), data, TrainConfig(steps=4, batch_size=2, lr=1e-3), tmp_path, progress=False)
    # a longer run with the same optimisation settings resumes
    train(model(), data, TrainConfig(steps=4, batch_size=2, checkpoint_every=2), tmp_path, progress=False)


def test_ema_from_state_is_the_exported_ema(tmp_path):
    """The EMA kept in the training state (what is committed for unfinished runs) is the one exported to
    ema/, with the same step and images seen, so --init-from a workdir fine-tunes the right weights."""
    from sgm_inverse import VESDE, ScoreModel, load_score_model
    from sgm_inverse.nets import UNet, UNetConfig
    from sgm_inverse.training import ema_from_state
    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig(image_size=8, base_channels=8, channel_mult=(1, 2), attn_resolutions=())),
                       VESDE(0.01, 5.0))
    data = [torch.rand(1, 8, 8) for _ in range(4)]
    train(model, data, TrainConfig(steps=3, batch_size=2, lr=1e-2, checkpoint_every=3, amp=False), tmp_path,
          progress=False)
    exported, kept = load_score_model(tmp_path / "ema"), ema_from_state(tmp_path)
    assert_bit_identical(all_params(exported.network), all_params(kept.network))
    assert not all(torch.equal(a, b) for a, b in zip(kept.network.parameters(), model.network.parameters()))
    assert kept.config["training"]["step"] == 3 and kept.config["training"]["images_seen"] == 6
    assert kept.sde.sigma_max == 5.0 and tuple(kept.image_shape) == (1, 8, 8)


def test_cpu_bf16_may_be_switched_on_resume_and_is_recorded(tmp_path):
    """cpu_bf16 is a speed setting: a run may turn it on when resumed, and the record says which steps
    ran in which precision (also for a state saved before that record existed)."""
    from safetensors.torch import load_file, save_file

    from sgm_inverse import VESDE, ScoreModel, load_score_model
    from sgm_inverse.nets import UNet, UNetConfig
    from sgm_inverse.training import STATE_FILE, _state_metadata

    def model():
        torch.manual_seed(0)
        return ScoreModel(UNet(UNetConfig(image_size=8, base_channels=8, channel_mult=(1, 2),
                                          attn_resolutions=())), VESDE(0.01, 5.0))
    data = [torch.rand(1, 8, 8) for _ in range(4)]
    cfg = dict(batch_size=2, checkpoint_every=1, lr=1e-2, warmup_steps=1)   # the last conv starts at zero
    train(model(), data, TrainConfig(steps=3, **cfg), tmp_path / "a", progress=False)
    # a state from before the precision record: drop it from the saved log
    path = tmp_path / "a" / STATE_FILE
    meta = _state_metadata(path)
    log = json.loads(meta["log"])
    assert log.pop("precision") == [[0, "fp32"]]
    save_file(load_file(path), path, metadata={**meta, "log": json.dumps(log)})
    losses = {"a": {}, "b": {}}
    train(model(), data, TrainConfig(steps=5, cpu_bf16=True, **cfg), tmp_path / "a", progress=False,
          callback=lambda step, loss: losses["a"].update({step: loss}))
    record = load_score_model(tmp_path / "a" / "ema").config["training"]
    assert record["precision"] == [[0, "fp32"], [3, "bf16"]] and record["config"]["cpu_bf16"] is True
    # bf16 really ran: the same steps 4 and 5 in fp32 (same batches and noise) give other losses, though close
    train(model(), data, TrainConfig(steps=5, **cfg), tmp_path / "b", progress=False,
          callback=lambda step, loss: losses["b"].update({step: loss}))
    for step in (4, 5):
        gap = abs(losses["a"][step] / losses["b"][step] - 1)
        assert 0 < gap < 0.05, (step, losses)
    assert load_score_model(tmp_path / "b" / "ema").config["training"]["precision"] == [[0, "fp32"]]
