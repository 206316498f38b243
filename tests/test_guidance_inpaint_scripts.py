"""benchmarks/guidance.py and benchmarks/inpaint_colorize.py: bookkeeping and end-to-end runs.

The bookkeeping of the guidance benchmark is checked on data whose labels are known (real test
digits and the shipped judge), including a case where it must report failure (labels rolled by
one class). The scripts run in subprocesses on tiny untrained checkpoints (their samples are
noise); every accuracy they record is recomputed in the test from the same samples and labels, the
classical rows (grey level, biharmonic fill) from the test images alone, and the data-consistency
guarantees of the projection method are checked exactly.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import guidance  # noqa: E402
from forward_models import Grayscale, Inpainting  # noqa: E402
from sgm_inverse import VESDE, ScoreModel, load_classifier, save_score_model, solve  # noqa: E402
from sgm_inverse.data import get_dataset  # noqa: E402
from sgm_inverse.nets import UNet, UNetConfig  # noqa: E402


def tiny_model(channels: int, sigma_max: float) -> ScoreModel:
    torch.manual_seed(0)
    net = UNet(UNetConfig(in_channels=channels, image_size=32, base_channels=8, channel_mult=(1, 2),
                          attn_resolutions=()))
    return ScoreModel(net, VESDE(0.01, sigma_max))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    save_score_model(tiny_model(1, 25.0), root / "d", data={"dataset": "digits", "split": "train", "range": [0, 1]})
    save_score_model(tiny_model(3, 50.0), root / "p", data={"dataset": "patches", "split": "train", "range": [0, 1]})
    return {"digits": root / "d", "patches": root / "p"}


def run_script(name: str, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(BENCH / name), *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


# ----- guidance bookkeeping -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def judge_and_digits():
    judge = load_classifier("digits32_judge")
    x, y = guidance.real_digits(20)
    return judge, x, y


def test_real_digits_are_class_major_and_balanced(judge_and_digits):
    _, x, y = judge_and_digits
    assert x.shape == (200, 1, 32, 32)
    assert torch.equal(y, torch.arange(10).repeat_interleave(20))


def test_judge_accuracy_on_true_labels(single_thread, judge_and_digits):
    judge, x, y = judge_and_digits
    r = guidance.judge_accuracy(judge, x, y)
    assert r["n"] == 200 and r["accuracy"] >= 0.95
    assert r["per_class_n"] == [20] * 10
    assert sum(r["per_class_correct"]) == r["correct"]
    weighted = sum(a * n for a, n in zip(r["per_class_accuracy"], r["per_class_n"])) / r["n"]
    assert weighted == pytest.approx(r["accuracy"], abs=1e-12)
    assert r["ci95_low"] <= r["accuracy"] <= r["ci95_high"]
    assert r["worst_class_accuracy"] == min(r["per_class_accuracy"])


def test_judge_accuracy_collapses_on_wrong_labels(single_thread, judge_and_digits):
    judge, x, y = judge_and_digits
    r = guidance.judge_accuracy(judge, x, (y + 1) % 10)
    assert r["accuracy"] < 0.2
    assert r["ci95_high"] < 0.3


def test_judge_accuracy_all_test_digits_and_batching(single_thread, judge_and_digits):
    """The whole test split, in uneven batches: the same answer as one batch; near the recorded 0.99."""
    judge = judge_and_digits[0]
    ds = get_dataset("digits", "test", with_labels=True)
    a = guidance.judge_accuracy(judge, ds.images, ds.labels, batch_size=500)
    b = guidance.judge_accuracy(judge, ds.images, ds.labels, batch_size=77)
    assert a == b
    assert a["accuracy"] >= 0.97


def test_wilson_interval():
    lo, hi = guidance.wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = guidance.wilson_interval(10, 10)
    assert hi == 1.0 and 0.69 < lo < 0.73


# ----- end-to-end runs ------------------------------------------------------------------------------
def test_guidance_script_quick(checkpoints, tmp_path, single_thread):
    out = tmp_path / "out"
    run_script("guidance.py", "--quick", "--checkpoint", checkpoints["digits"], "--per-class", "2", "--steps", "3",
               "--scales", "0", "2", "--out", out, "--no-progress", "--device", "cpu", cwd=tmp_path)
    data = json.loads((out / "guidance.json").read_text())
    assert (out / "guidance.md").read_text().startswith("# guidance")
    for s in ("0", "2"):
        assert (out / f"guidance_scale{s}.png").stat().st_size > 0
    recs = data["records"]
    assert [r["scale"] for r in recs] == [None, 0.0, 2.0]
    assert recs[1]["nfe"] == 3 * 2 + 1
    assert "commit" in data["provenance"]
    # every accuracy again, computed here without the script's bookkeeping: the first 2 test digits of each
    # class, and the samples that solve() draws for labels 0,0,1,1,...,9,9 with the script's seed (0)
    from forward_models import ClassifierGuidance
    from sgm_inverse import load_score_model
    ds = get_dataset("digits", "test", with_labels=True)
    first = torch.cat([torch.nonzero(ds.labels == c).flatten()[:2] for c in range(10)])
    labels = torch.arange(10).repeat_interleave(2)
    judge, classifier = load_classifier("digits32_judge"), load_classifier("digits32_classifier")
    model = load_score_model(checkpoints["digits"])
    images = {None: ds.images[first]}
    for scale in (0.0, 2.0):
        sol = solve(labels, ClassifierGuidance(classifier, scale=scale), model, method="bayes", steps=3, seed=0,
                    progress=False)
        images[scale] = sol.samples[0].clamp(0, 1)
    for r in recs:
        with torch.no_grad():
            hit = judge(images[r["scale"]]).argmax(-1) == labels
        assert r["correct"] == int(hit.sum()) and r["accuracy"] == pytest.approx(float(hit.float().mean()))
        assert r["per_class_correct"] == hit.reshape(10, 2).sum(1).tolist()
        if r["scale"] is not None:
            with torch.no_grad():
                steer = ClassifierGuidance(classifier)(images[r["scale"]]).argmax(-1) == labels
            assert r["guide_accuracy"] == pytest.approx(float(steer.float().mean()))
    assert recs[0]["accuracy"] >= 0.9        # the judge on real digits


def test_inpaint_colorize_script_quick(checkpoints, tmp_path):
    out = tmp_path / "out"
    tasks = ["digits_box", "digits_random", "patches_box", "patches_random", "patches_colorize"]
    run_script("inpaint_colorize.py", "--quick", "--digits-checkpoint", checkpoints["digits"],
               "--patches-checkpoint", checkpoints["patches"], "-n", "2", "--steps", "3", "--out", out,
               "--no-progress", "--device", "cpu", "--tasks", *tasks, cwd=tmp_path)
    data = json.loads((out / "inpaint_colorize.json").read_text())
    assert (out / "inpaint_colorize.md").exists()
    for t in tasks:
        assert (out / f"{t}.png").stat().st_size > 0
    recs = data["records"]
    assert sorted({r["task"] for r in recs}) == sorted(tasks) and len(recs) == 2 * len(tasks)
    for r in recs:
        assert r["n_images"] == 2
        assert all(torch.isfinite(torch.tensor(r[k])) for k in ("psnr_mean", "psnr_std", "ssim_mean", "ssim_std"))
    # the classical rows again, computed here from the test images alone (the first and last of each split):
    # the grey level in three channels, and scikit-image's biharmonic fill of the central box of half the side
    import numpy as np
    from skimage.metrics import structural_similarity
    from skimage.restoration import inpaint_biharmonic

    def truth(dataset):
        ds = get_dataset(dataset, "test")
        return [np.asarray(ds[i][0] if isinstance(ds[i], (tuple, list)) else ds[i], np.float64) for i in (0, len(ds) - 1)]

    def psnr(x, ref):
        return 10 * np.log10(1.0 / np.mean((x - ref) ** 2))

    box = np.zeros((32, 32), bool)
    box[8:24, 8:24] = True
    expected = {"patches_colorize": [(np.repeat(x.mean(0, keepdims=True), 3, 0), x) for x in truth("patches")],
                "digits_box": [(np.clip(inpaint_biharmonic(x[0] * ~box, box), 0, 1)[None], x) for x in truth("digits")]}
    for task, pairs in expected.items():
        (r,) = [r for r in recs if r["task"] == task and not r["method"].startswith("ours")]
        assert r["psnr_mean"] == pytest.approx(np.mean([psnr(a, b) for a, b in pairs]), abs=1e-3), task
        ssim = [structural_similarity(b, a, data_range=1.0, channel_axis=0) for a, b in pairs]
        assert r["ssim_mean"] == pytest.approx(np.mean(ssim), abs=1e-4), task
    colour = next(r for r in recs if r["task"] == "patches_colorize" and r["method"].startswith("ours"))
    assert colour["gray_max_abs_err_unclamped"] < 1e-5
    assert colour["gray_max_abs_err_clamped"] >= colour["gray_max_abs_err_unclamped"]
    for r in recs:
        if r["method"].startswith("ours") and r["task"] != "patches_colorize":
            assert r["observed_max_abs_err_unclamped"] < 1e-5
        if r["method"].startswith("ours"):
            assert "checkpoint_step" in r  # which training step made the numbers


# ----- data consistency of the projection method, in-process ----------------------------------------
@pytest.mark.parametrize("channels,kind", [(1, "box"), (1, "random"), (3, "box"), (3, "random")])
def test_projection_inpainting_keeps_observed_pixels(single_thread, channels, kind):
    model = tiny_model(channels, 25.0).eval().requires_grad_(False)
    shape = (channels, 32, 32)
    fm = Inpainting.box(shape) if kind == "box" else Inpainting.random(shape, keep=0.25, seed=0)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    y = fm.simulate(x)
    sol = solve(y, fm, model, sampler="pc", steps=3, n_samples=1, seed=0, progress=False)
    sample = sol.samples[0]
    observed = fm.mask.bool().expand_as(sample)
    assert (sample - y).abs()[observed].max() < 1e-6
    assert (sample[~observed] - x[~observed]).abs().mean() > 0.05  # the rest is the prior's, not a copy
    assert float(sol.residual.max()) < 1e-5


def test_projection_colorization_keeps_grey_level(single_thread):
    model = tiny_model(3, 50.0).eval().requires_grad_(False)
    fm = Grayscale(32)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = fm.simulate(x)
    sample = solve(y, fm, model, sampler="pc", steps=3, seed=0, progress=False).samples[0]
    assert (fm(sample) - y).abs().max() < 1e-5
