"""The sampler choice of `sgm-inverse solve`: --sampler, --eta, --warm-start / --warm-from, and the per-task
defaults behind them (`tasks.sampler_defaults`)."""
from __future__ import annotations

import numpy as np
import pytest

from sgm_inverse.tasks import (FEW_STEP_STEPS, PC_DEFAULTS, SAMPLER_CHOICES, SAMPLER_DEFAULTS, forward_model,
                               solve_settings, task_of)
from test_cli import run, save_tiny_model


def test_task_of_inverts_forward_model():
    """Benchmarks pick a forward model's defaults through task_of; it must give back the task that built it,
    for both CT geometries, and refuse physics that no task's defaults were chosen for."""
    for task, kw in (("ct", {}), ("ct", {"geometry": "fan"}), ("mri", {}), ("inpaint", {}), ("colorize", {})):
        shape = (3, 16, 16) if task == "colorize" else (1, 16, 16)
        assert task_of(forward_model(task, shape, views=4, **kw)) == task
    with pytest.raises(TypeError, match="no task"):
        task_of(object())


def test_solve_settings_fill_in_what_is_not_given():
    for task, (sampler, steps, samples, warm) in SAMPLER_DEFAULTS.items():
        got = solve_settings(task)
        assert (got.sampler, got.steps, got.samples, got.warm) == (sampler, steps, samples, warm)
        assert sampler in SAMPLER_CHOICES
    ct = solve_settings("ct")
    assert ct.sampler == "ddnm" and ct.warm == (0.2, "fista-tv") and ct.snr is None
    named = solve_settings("ct", sampler="dds")                 # a named sampler starts from noise
    assert (named.sampler, named.warm, named.steps) == ("dds", None, FEW_STEP_STEPS)
    assert solve_settings("ct", sampler="ddnm", t_start=0.3).warm == (0.3, "fista-tv")
    pc = solve_settings("mri", sampler="pc", t_start=0.5, warm_from="zero-filled")
    assert (pc.warm, pc.steps, pc.snr) == ((0.5, "zero-filled"), PC_DEFAULTS["mri"][0], PC_DEFAULTS["mri"][1])
    assert solve_settings("ct", t_start=0.4, warm_from="fbp").warm == (0.4, "fbp")
    assert solve_settings("ct", warm_from="fbp").warm == (0.2, "fbp")   # the default t0 from another baseline
    std = solve_settings("ct", std=True)   # an uncertainty map: PC samples, which follow the posterior
    assert (std.sampler, std.samples, std.warm, std.steps) == ("pc", 4, None, PC_DEFAULTS["ct"][0])
    more = solve_settings("ct", samples=8)   # more samples for a better mean: still the default sampler
    assert (more.sampler, more.samples, more.warm) == ("ddnm", 8, (0.2, "fista-tv"))
    assert solve_settings("ct", samples=1).samples == 1
    assert solve_settings("ct", steps=7, snr=0.3, sampler="pc").snr == 0.3
    for asked in (dict(snr=0.3), dict(pc_options=True)):   # options only the PC sampler has: it runs
        got = solve_settings("mri", **asked)
        assert (got.sampler, got.warm, got.steps) == ("pc", None, PC_DEFAULTS["mri"][0])


@pytest.mark.parametrize("kwargs,message", [
    (dict(task="inpaint", t_start=0.3), "warm start needs a classical reconstruction"),
    (dict(task="mri", t_start=0.3, warm_from="fbp"), "fbp is not one for mri"),
    (dict(task="ct", t_start=0.0), "expected 0 < T0 <= 1"),
    (dict(task="ct", t_start=1.5), "expected 0 < T0 <= 1"),
    (dict(task="ct", sampler="euler"), "unknown sampler"),
    (dict(task="ct", sampler="ddnm", snr=0.5), "has none"),   # a few-step sampler has no Langevin step
    (dict(task="ct", std=True, samples=1), "needs 2 or more samples"),
    (dict(task="nope"), "unknown task"),
])
def test_solve_settings_refuse(kwargs, message):
    task = kwargs.pop("task")
    with pytest.raises(ValueError, match=message):
        solve_settings(task, **kwargs)


@pytest.fixture(scope="module")
def tiny16(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("ckpt16") / "tiny16", 16, 10.0)


def psnr(x, ref):
    return 10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - ref) ** 2))


def test_warm_start_begins_from_the_baseline(tiny16, tmp_path):
    """With an untrained network, 2 DDNM steps from noise are far from the image; started at t0 = 0.02 from
    FISTA-TV (near exact on this piecewise-constant image) they stay within the start's noise, std(0.02) ~
    0.012 (~38 dB), of it: DDNM only puts the measured component back."""
    image = np.zeros((16, 16), np.float32)
    image[4:12, 5:11] = 0.8
    image[6:9, 7:9] = 0.3
    np.save(tmp_path / "slice.npy", image)
    common = ("solve", "ct", str(tmp_path / "slice.npy"), "--checkpoint", str(tiny16), "--views", "6", "--quiet")
    r = run(*common, "-o", str(tmp_path / "tv.npy"), "--method", "fista-tv")
    assert r.returncode == 0, r.stderr
    warm = run(*common, "-o", str(tmp_path / "warm.npy"), "--sampler", "ddnm", "--steps", "2", "--eta", "1",
               "--warm-start", "0.02")
    assert warm.returncode == 0, warm.stderr
    assert "2 steps of ddnm, warm-started at t = 0.02 from fista-tv" in warm.stdout
    assert "(2 score evaluations" in warm.stdout
    cold = run(*common, "-o", str(tmp_path / "cold.npy"), "--sampler", "ddnm", "--steps", "2")
    assert cold.returncode == 0, cold.stderr
    tv, w, c = (psnr(np.load(tmp_path / f"{n}.npy")[0, 0], image) for n in ("tv", "warm", "cold"))
    assert tv > 45 and w > 35 and w > c + 10, (tv, w, c)


def test_sampler_flag_errors_are_one_line(tiny16, tmp_path):
    np.save(tmp_path / "slice.npy", np.zeros((16, 16), np.float32))
    common = ("solve", "ct", str(tmp_path / "slice.npy"), "-o", str(tmp_path / "x.npy"), "--checkpoint", str(tiny16))
    for extra, message in [(("--sampler", "dds", "--method", "projection"), "brings its own data step"),
                           (("--warm-start", "0.3", "--warm-from", "zero-filled"), "zero-filled is not one for ct")]:
        r = run(*common, *extra)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_default_is_the_mean_of_several_ddnm_samples(tiny16, tmp_path):
    """Without sampler options `solve ct` runs the task's default: SAMPLER_DEFAULTS' samples of DDNM, warm-started,
    all in one batch (the network is called once per step, not once per sample and step)."""
    image = np.zeros((16, 16), np.float32)
    image[4:12, 5:11] = 0.8
    np.save(tmp_path / "slice.npy", image)
    samples = SAMPLER_DEFAULTS["ct"][2]
    assert samples > 1
    r = run("solve", "ct", str(tmp_path / "slice.npy"), "-o", str(tmp_path / "x.npy"), "--checkpoint", str(tiny16),
            "--views", "6", "--steps", "2")
    assert r.returncode == 0, r.stderr
    assert f"{samples} sample(s), 2 steps of ddnm, warm-started at t = 0.2 from fista-tv" in r.stdout
    assert f"(2 score evaluations of a batch of {samples} samples" in r.stdout   # 2 network calls in all
