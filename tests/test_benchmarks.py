"""End-to-end runs of the CT / MRI reconstruction benchmarks on a tiny untrained checkpoint.

Each benchmark's main() runs in-process on 16x16 images (2 test / 2 val images, 3 sampler steps,
tiny grids): first --tune (val only), then the evaluation, which must read the tuned settings.
Checks: all three outputs exist with provenance; every record has the required keys and finite
numbers; the noiseless baseline rows' PSNR / SSIM equal those recomputed here from the record alone
(numpy / scikit-image on independently rebuilt images and reconstructions); nothing but validation
images reaches the tuning code (spied); and the classical baselines are sane where the answer is
known (full-view FBP, fully sampled zero-filled MRI).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import ct_sparse_view  # noqa: E402
import mri_undersampled  # noqa: E402
import recon_methods  # noqa: E402
import recon_tuning  # noqa: E402
import reconstruction  # noqa: E402
from sgm_inverse import VESDE, ScoreModel, save_score_model  # noqa: E402
from sgm_inverse.data import get_dataset  # noqa: E402
from sgm_inverse.nets import UNet, UNetConfig  # noqa: E402

SIZE, STEPS = 16, 3
REQUIRED = ["task", "dataset", "noise_std", "method", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
            "seconds_per_image", "nfe", "n_images", "split", "residual_mean"]
NUMERIC = ["noise_std", "noise_std_abs", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "residual_mean",
           "seconds_per_image", "nfe", "n_images"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=SIZE, base_channels=8, channel_mult=(1, 2), attn_resolutions=()))
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_score_model(ScoreModel(net, VESDE(0.01, 10.0)), path)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def spy_tuning(monkeypatch):
    """Record every image batch that reaches the FISTA lambda search and the score-setting search."""
    seen = {"fista": [], "score": []}
    real_fista, real_val_run = recon_methods.tune_fista_lambda, recon_tuning._val_run

    def fista(op, xs_val, ys_val, *a, **k):
        seen["fista"].append(xs_val.clone())
        return real_fista(op, xs_val, ys_val, *a, **k)

    def val_run(method, ops, model, y_val, x_val, *a, **k):
        seen["score"].append(x_val.clone())
        return real_val_run(method, ops, model, y_val, x_val, *a, **k)

    monkeypatch.setattr(recon_methods, "tune_fista_lambda", fista)
    monkeypatch.setattr(recon_tuning, "_val_run", val_run)
    return seen


def tiny_args(checkpoint, out):
    return ["--quick", "--image-size", str(SIZE), "--n-images", "2", "--n-val", "2", "--steps", str(STEPS),
            "--tune-steps", "2", "--steps-study", "2", "3", "--grid", "tiny", "--fista-iters", "20",
            "--no-progress", "--checkpoint", str(checkpoint), "--out", str(out), "--seed", "0"]


def split_images(datasets, split):
    return torch.cat([torch.stack([ds[i] for i in range(len(ds))]).flatten(1)
                      for ds in (get_dataset(d, split, image_size=SIZE) for d in datasets)])


def assert_only_val(batches, datasets):
    """Every image that reached a tuning routine is a validation image and no test image."""
    val_imgs, test_imgs = split_images(datasets, "val"), split_images(datasets, "test")
    assert batches
    for x in batches:
        flat = x.flatten(1)
        # exact distances: cdist's default matrix-product path is off by up to ~1e-2 for identical rows
        exact = dict(compute_mode="donot_use_mm_for_euclid_dist")
        assert torch.cdist(flat, val_imgs, **exact).min(1).values.max() < 1e-5, "a tuning image is not in the val split"
        assert torch.cdist(flat, test_imgs, **exact).min(1).values.min() > 1e-3, "a test image reached the tuning code"


def check_outputs(out: Path, stem: str, datasets, records):
    data = json.loads((out / f"{stem}.json").read_text())
    assert {"command", "commit", "device", "date"} <= set(data["provenance"])
    assert f"benchmarks/{stem}.py" in data["provenance"]["command"]
    assert data["records"] == json.loads(json.dumps(records))
    for r in records:
        missing = [k for k in REQUIRED if k not in r]
        assert not missing, f"record lacks {missing}"
        for k in NUMERIC:
            assert isinstance(r[k], (int, float)) and math.isfinite(r[k]), (k, r[k])
        assert r["split"] == "test" and r["n_images"] == 2
        assert len(r["psnr_values"]) == 2
        assert r["psnr_mean"] == pytest.approx(float(np.mean(r["psnr_values"])), abs=1e-3)
        assert r["ssim_mean"] == pytest.approx(float(np.mean(r["ssim_values"])), abs=1e-4)
    check_baseline_metrics(records)
    md = (out / f"{stem}.md").read_text()
    assert "commit" in md and "| method | PSNR (dB) |" in md
    assert md.count("\n| ") == len(records) + 1
    from PIL import Image
    for d in datasets:
        with Image.open(out / f"{stem}_{d}.png") as im:
            assert im.size[0] > 200 and im.size[1] > 100
            assert "commit" in im.text and "date" in im.text and im.text["split"] == "test"


def independent_baseline(r: dict) -> tuple[np.ndarray, np.ndarray]:
    """(truth, reconstruction) of a noiseless baseline record, rebuilt here from the record alone: its test
    images by index, the operator from its fields; zero-filled MRI with numpy's FFT (|F^H M F x|, F the centred
    orthonormal FFT), FBP with the operator's filter (its own accuracy is tested in test_baselines.py)."""
    from forward_models import SparseViewCT, UndersampledMRI
    ds = get_dataset(r["dataset"], "test", image_size=SIZE)
    x = torch.stack([ds[i] for i in r["test_indices"]])
    if r["method"] == "fbp":
        op = SparseViewCT(SIZE, r["views"], geometry=r["geometry"], angular_range=r["angular_range"])
        with torch.no_grad():
            recon = op.fbp(op(x), filter=r["filter"]).numpy()
    else:
        op = UndersampledMRI(SIZE, acceleration=r["acceleration"], mask_type=r["mask"],
                             center_fraction=r["center_fraction"], seed=r["mask_seed"])
        mask, axes = op.mask.numpy(), (-2, -1)
        k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=axes), norm="ortho"), axes=axes)
        recon = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k * mask, axes=axes), norm="ortho"), axes=axes))
    return x.numpy().astype(np.float64), np.clip(recon.astype(np.float64), 0.0, 1.0)


def check_baseline_metrics(records):
    """The recorded PSNR / SSIM of every noiseless baseline row equal those computed here, on images and
    reconstructions rebuilt independently: PSNR = 10 log10(1 / mse) with numpy, SSIM from scikit-image
    directly (data_range 1), each image on its own."""
    from skimage.metrics import structural_similarity
    rows = [r for r in records if r["method"] in ("fbp", "zero_filled") and r["noise_std"] == 0]
    assert rows
    for r in rows:
        truth, recon = independent_baseline(r)
        mse = ((recon - truth) ** 2).reshape(len(truth), -1).mean(1)
        ssim = [structural_similarity(t[0], x[0], data_range=1.0) for t, x in zip(truth, recon)]
        # compared as mse (PSNR = 10 log10(1 / mse)): float32 round-off alone (full sampling: mse ~ 1e-15, PSNR
        # ~ 145 dB) moves the PSNR by a dB but the mse by nothing that matters
        recorded = 10.0 ** (-np.asarray(r["psnr_values"]) / 10)
        assert recorded == pytest.approx(mse, rel=1e-3, abs=1e-10), (r["setting"], 10 * np.log10(1.0 / mse))
        assert r["ssim_values"] == pytest.approx(ssim, abs=2e-4), (r["setting"], ssim)


def check_score_records(records, tuned):
    """Score-based records: NFE of the PC loop, the tuned settings where tuned, the defaults elsewhere."""
    score = [r for r in records if r["method"] in ("projection", "dps")]
    assert score
    for r in score:
        assert r["nfe"] == 2 * STEPS + 1 and r["n_samples"] == 2 and r["steps"] == STEPS
        chosen = tuned["chosen"].get(f"{r['dataset']}|{r['setting']}|{r['method']}")
        assert r["tuned"] == (chosen is not None)
        params = chosen["params"] if chosen else tuned["defaults"][r["method"]]
        assert all(r[p] == v for p, v in params.items()), (r["setting"], params)
    assert any(r["tuned"] for r in score) and not all(r["tuned"] for r in score)
    assert all(c["split"] == "val" for c in tuned["chosen"].values())


def test_ct_benchmark_quick(checkpoint, tmp_path, spy_tuning):
    base = tiny_args(checkpoint, tmp_path) + ["--datasets", "ellipses", "brain"]
    tuned = ct_sparse_view.main(base + ["--tune", "--views", "4", "--fan-views", "--noise", "0"])
    assert (tmp_path / "ct_sparse_view_tuned.json").exists() and (tmp_path / "ct_sparse_view_tuned.md").exists()
    assert {r["split"] for r in tuned["records"]} == {"val"}
    assert sorted({r["steps"] for r in tuned["steps_study"]}) == [2, 3]
    assert_only_val(spy_tuning["score"], ["ellipses", "brain"])

    spy_tuning["fista"].clear()
    records = ct_sparse_view.main(base + ["--views", "4", "180", "--fan-views", "8", "--noise", "0", "0.01"])
    assert len(records) == 2 * 6 * 4
    check_outputs(tmp_path, "ct_sparse_view", ["ellipses", "brain"], records)
    check_score_records(records, tuned)
    assert len(spy_tuning["fista"]) == 2 * 6
    assert_only_val(spy_tuning["fista"], ["ellipses", "brain"])
    for r in records:
        if r["method"] in ("fbp", "fista_tv"):
            assert r["tuning_split"] == "val"
        if r["method"] == "fista_tv":
            assert r["lam"] > 0 and r["lam_over_L"] in (1e-4, 1e-3)
        assert (r["noise_std_abs"] > 0) == (r["noise_std"] > 0)
        if r["method"] == "projection":  # what ran: CT has no exact transform projection to damp
            assert r["damped"] == (r["noise_std"] > 0 and r["noise_aware"] and r["consistency"] == "cg")

    def fbp(dataset, views, noise=0.0):
        (r,) = [r for r in records if r["method"] == "fbp" and r["dataset"] == dataset and r["views"] == views
                and r["geometry"] == "parallel" and r["noise_std"] == noise]
        return r

    # 16x16 full-view FBP: ~27.4 dB on brain, ~25.0 dB on the sharp-edged ellipses
    for d, floor in (("ellipses", 23.0), ("brain", 25.0)):
        full, sparse = fbp(d, 180), fbp(d, 4)
        assert full["psnr_mean"] > floor, full["psnr_mean"]        # full-view FBP is accurate
        assert full["psnr_mean"] > sparse["psnr_mean"] + 5         # and 4 views are not
        assert full["residual_mean"] < sparse["residual_mean"]
    # the noise is really there: ||n|| / ||y|| ~ 0.01 mean|y| / rms(y) <= 0.01, with mean|y| taken
    # on the val images (the 2 test images here may be fainter or brighter)
    for r in records:
        if r["noise_std"] == 0:
            assert r["truth_residual_mean"] < 1e-5
        else:
            assert 0.002 < r["truth_residual_mean"] < 0.03, r["truth_residual_mean"]


def test_mri_benchmark_quick(checkpoint, tmp_path, spy_tuning):
    base = tiny_args(checkpoint, tmp_path)
    tuned = mri_undersampled.main(base + ["--tune", "--accelerations", "4", "--gaussian-accelerations"])
    assert {r["split"] for r in tuned["records"]} == {"val"}
    records = mri_undersampled.main(base + ["--accelerations", "1", "4", "8", "--gaussian-accelerations", "4",
                                            "--noise", "0", "0.01"])
    assert len(records) == 4 * 2 * 4
    check_outputs(tmp_path, "mri_undersampled", ["brain"], records)
    check_score_records(records, tuned)
    assert_only_val(spy_tuning["fista"] + spy_tuning["score"], ["brain"])
    zf = {(r["acceleration"], r["mask"], r["noise_std"]): r for r in records if r["method"] == "zero_filled"}
    assert zf[(1.0, "equispaced", 0.0)]["psnr_mean"] > 60       # full sampling: zero-filled is exact
    assert zf[(1.0, "equispaced", 0.0)]["residual_mean"] < 1e-5
    assert zf[(4.0, "equispaced", 0.0)]["psnr_mean"] > zf[(8.0, "equispaced", 0.0)]["psnr_mean"]
    assert zf[(1.0, "equispaced", 0.01)]["psnr_mean"] < 60       # the noise is really there
    for r in records:
        assert r["task"] == "mri" and r["mask"] in ("equispaced", "gaussian1d")
        if r["method"] == "fista_tv":
            assert r["tuning_split"] == "val"


def test_tuning_reuses_measured_points_and_searches_the_cg_step(checkpoint, tmp_path, spy_tuning, monkeypatch):
    """--grid-set replaces grid entries; the CG consistency step is searched over its snr list; a second
    --tune under the same conditions runs nothing again, and a changed condition (n_val) runs all."""
    base = tiny_args(checkpoint, tmp_path) + ["--datasets", "brain", "--views", "4", "--fan-views", "--noise", "0",
                                              "--methods", "projection", "--skip-steps-study"]
    grid = ["--tune", "--grid-set", "snr=0.16", "--grid-set", "lam=1", "--grid-set", "inverse_method=",
            "--grid-set", "consistency=transform,cg"]
    with pytest.raises(SystemExit, match="KEY=V1,V2"):
        ct_sparse_view.main(base + grid + ["--grid-set", "nonsense=1"])
    # what solve() is really asked to run (the grid must not rely on the forward model's default)
    steps_run, real_solve = [], recon_methods.solve
    def solve(*a, **k):
        steps_run.append(k.get("consistency"))
        return real_solve(*a, **k)
    monkeypatch.setattr(recon_methods, "solve", solve)
    # the grid runs SparseViewCT's default step (cg) first, then the transform-domain step over
    # snr (the tiny grid has no consistency_snr); every row names its step
    tuned = ct_sparse_view.main(base + grid)
    params = [r["params"] for r in tuned["records"]]
    assert params == [{"snr": 0.16, "lam": 1.0, "inverse_method": "fbp", "consistency": "cg"},
                      {"snr": 0.16, "lam": 1.0, "inverse_method": "fbp", "consistency": "transform"}]
    assert steps_run == ["cg", "transform"]
    assert len(spy_tuning["score"]) == 2 and tuned["steps_study"] == []
    chosen = tuned["chosen"]["brain|parallel-4v-noise0|projection"]
    assert chosen["grid_set"] == grid[2::2] and chosen["params"] in params
    assert all(r["n_samples"] == 2 and r["checkpoint_step"] is None for r in tuned["records"])

    again = ct_sparse_view.main(base + grid)
    assert len(spy_tuning["score"]) == 2                                 # all cached
    assert [r["psnr"] for r in again["records"]] == [r["psnr"] for r in tuned["records"]]
    # a second, different search keeps the first one's rows as candidates (piecewise tuning)
    more = ct_sparse_view.main(base + ["--tune", "--grid-set", "snr=0.25", "--grid-set", "lam=1",
                                       "--grid-set", "inverse_method=", "--grid-set", "consistency=cg"])
    assert len(spy_tuning["score"]) == 3
    rows = [r for r in more["records"] if r["key"] == "brain|parallel-4v-noise0|projection"]
    assert [r["params"]["snr"] for r in rows] == [0.16, 0.16, 0.25]
    top = more["chosen"]["brain|parallel-4v-noise0|projection"]
    assert top["val_psnr"] == max(r["psnr"] for r in rows) and top["rows_compared"] == 3
    ct_sparse_view.main(base + grid + ["--n-val", "1"])
    assert len(spy_tuning["score"]) == 5                                 # other conditions: measured again

    # the evaluation passes the chosen consistency step to solve()
    records = ct_sparse_view.main(base[:-1] + ["--tuned", str(tmp_path / "ct_sparse_view_tuned.json")])
    (ours,) = [r for r in records if r["method"] == "projection"]
    assert ours["tuned"] and ours["consistency"] == chosen["params"]["consistency"]
    assert steps_run[-1] == chosen["params"]["consistency"]


def test_concurrent_tuning_runs_keep_each_others_settings(checkpoint, tmp_path, monkeypatch):
    """Two --tune runs for different settings on one tuned file, the second having read the file before
    the first wrote it: the second must merge under the lock and keep the first one's chosen setting."""
    base = tiny_args(checkpoint, tmp_path) + ["--datasets", "brain", "--fan-views", "--noise", "0", "--tune",
                                              "--methods", "projection", "--skip-steps-study",
                                              "--grid-set", "snr=0.16", "--grid-set", "lam=1",
                                              "--grid-set", "inverse_method=", "--grid-set", "consistency=cg"]
    first = ct_sparse_view.main(base + ["--views", "4"])
    k4, k6 = "brain|parallel-4v-noise0|projection", "brain|parallel-6v-noise0|projection"
    assert list(first["chosen"]) == [k4]
    reads, real_read = [], recon_tuning.read_tuned
    def stale_then_real(path):  # the second run's first read sees the file as before the first run
        reads.append(path)
        return {} if len(reads) == 1 else real_read(path)
    monkeypatch.setattr(recon_tuning, "read_tuned", stale_then_real)
    second = ct_sparse_view.main(base + ["--views", "6"])
    assert len(reads) == 2
    on_disk = json.loads((tmp_path / "ct_sparse_view_tuned.json").read_text())
    for doc in (second, on_disk):
        assert set(doc["chosen"]) == {k4, k6}
        assert doc["chosen"][k4] == first["chosen"][k4]
        assert {r["key"] for r in doc["records"]} == {k4, k6}
    assert "parallel-4v-noise0" in (tmp_path / "ct_sparse_view_tuned.md").read_text()


def test_samples_study_scores_the_mean_of_the_first_k_samples(checkpoint, tmp_path, monkeypatch):
    """--samples-study K...: one val run with max(K) samples; each row is the PSNR / SSIM of the mean of
    the first K of them (checked against the samples solve() returned), with cost scaled by K."""
    base = tiny_args(checkpoint, tmp_path) + ["--datasets", "brain", "--views", "4", "--fan-views", "--noise", "0",
                                              "--methods", "projection", "--skip-steps-study", "--tune",
                                              "--grid-set", "snr=0.16", "--grid-set", "lam=1",
                                              "--grid-set", "inverse_method=", "--grid-set", "consistency=cg"]
    runs, real_solve = [], recon_methods.solve
    def solve(*a, **k):
        sol = real_solve(*a, **k)
        runs.append((k["n_samples"], sol.samples.clone()))
        return sol
    monkeypatch.setattr(recon_methods, "solve", solve)
    tuned = ct_sparse_view.main(base + ["--samples-study", "1", "3", "2"])
    n, samples = runs[-1]
    assert n == 3 and samples.shape[0] == 3
    rows = tuned["samples_study"]
    assert [r["n_samples"] for r in rows] == [1, 2, 3] and all(r["split"] == "val" for r in rows)
    x_val, _, _ = reconstruction.load_images("brain", "val", 2, SIZE)
    from sgm_inverse import metrics
    for r in rows:
        mean = samples[: r["n_samples"]].mean(0).clamp(0, 1)
        assert r["psnr"] == pytest.approx(float(metrics.psnr(mean, x_val).mean()), abs=1e-6)
        assert r["nfe"] == r["n_samples"] * (2 * 2 + 1)                  # tune steps 2, one corrector step
    assert rows[0]["seconds_per_image"] == pytest.approx(rows[2]["seconds_per_image"] / 3)
    assert "Posterior samples study" in (tmp_path / "ct_sparse_view_tuned.md").read_text()
