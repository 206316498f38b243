"""solve() with other people's code: a Conditioner of one's own, any input precision, device placement
without mutation, and results that do not depend on the other measurements of the batch."""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from forward_models import Inpainting, LinearForwardModel, SparseViewCT, UndersampledMRI
from sgm_inverse import VESDE, GaussianScore, ScoreModel, from_epsilon, solve
from sgm_inverse.nets import UNet, UNetConfig
from sgm_inverse.placement import _moved_copy, on_device, resolve_device
from sgm_inverse.samplers import Conditioner
from sgm_inverse.samplers.correctors import langevin
from sgm_inverse.utils import append_dims, time_vector

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


class IndependentGaussianScore:
    """Exact p_t score for independent pixels x_i ~ N(m, s^2); a score model without weights."""

    def __init__(self, sde, shape, mean=0.5, std=0.15):
        self.sde, self.mean, self.std, self.image_shape = sde, mean, std, tuple(shape)

    def __call__(self, x, t):
        a, s = self.sde.scale_std(time_vector(t, x.shape[0], x))
        a, s = append_dims(a, x.ndim), append_dims(s, x.ndim)
        return -(x - a * self.mean) / (a ** 2 * self.std ** 2 + s ** 2)


def tiny_unet_model(size: int) -> ScoreModel:
    torch.manual_seed(0)
    return ScoreModel(UNet(UNetConfig(image_size=size, base_channels=8, channel_mult=(1, 2), attn_resolutions=())),
                      VESDE(0.01, 10.0))


# ----------------------------------------------------------------------------- a Conditioner of one's own
class ExactLinearGaussianBayes(Conditioner):
    """Adds the exact grad_x log p_t(y | x_t) of y = H x0 + N(0, v I) under the prior N(mu, Sigma):
    x0 | x_t ~ N(m, C), C = (Sigma^-1 + a^2 / s^2 I)^-1, m = C (Sigma^-1 mu + a x_t / s^2), so
    grad = (a / s^2) C H^T (H C H^T + v I)^-1 (y - H m)."""

    def __init__(self, sde, mu, cov, H, y, noise_var):
        self.sde, self.mu, self.cov, self.H, self.y, self.noise_var = sde, mu, cov, H, y, noise_var
        self.calls = 0

    def score(self, score_fn):
        def conditioned(x, t):
            self.calls += 1
            xf = x.flatten(1).double()
            a, s = self.sde.scale_std(time_vector(t, xf.shape[0], xf))
            d = xf.shape[1]
            prec = torch.linalg.inv(self.cov)
            c = torch.linalg.inv(prec[None] + (a ** 2 / s ** 2)[:, None, None] * torch.eye(d, dtype=F64))
            m = (c @ (prec @ self.mu + (a / s ** 2)[:, None] * xf)[..., None])[..., 0]
            cov_y = self.H @ c @ self.H.T + self.noise_var * torch.eye(self.H.shape[0], dtype=F64)
            r = self.y - m @ self.H.T
            g = (a / s ** 2)[:, None] * (c @ self.H.T @ torch.linalg.solve(cov_y, r[..., None]))[..., 0]
            return score_fn(x, t) + g.reshape(x.shape).to(x.dtype)
        return conditioned


class MatrixOperator(LinearForwardModel):
    """A user operator with forward and adjoint only: y = M x (flattened); no measurement shape declared."""

    def __init__(self, M, image_shape, noise_std=0.0):
        super().__init__(image_shape=image_shape, noise_std=noise_std)
        self.register_buffer("M", M)

    def forward(self, x):
        return x.flatten(1) @ self.M.T.to(x.dtype)

    def adjoint(self, y):
        return (y @ self.M.to(y.dtype)).reshape(-1, *self.image_shape)


def test_a_conditioner_of_ones_own_draws_the_exact_posterior():
    """method=<Conditioner>: the exact Bayes term of a user, with a Gaussian prior, gives the closed-form
    posterior (measured: covariance error ~0.03, means within 2 SE)."""
    g = torch.Generator().manual_seed(0)
    d = 4
    a = torch.randn(d, d, generator=g, dtype=F64)
    cov = a @ a.T / d + 0.2 * torch.eye(d, dtype=F64)
    mu = torch.randn(d, generator=g, dtype=F64)
    H = torch.randn(2, d, generator=g, dtype=F64)
    noise_var = 0.1
    sde = VESDE(0.01, 20.0)
    y = H @ (mu + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=F64))
    y = y + math.sqrt(noise_var) * torch.randn(2, generator=g, dtype=F64)
    op = MatrixOperator(H, (1, 2, 2), noise_std=math.sqrt(noise_var))
    cond = ExactLinearGaussianBayes(sde, mu, cov, H, y, noise_var)
    n = 3000
    sol = solve(y, op, GaussianScore(sde, mu.reshape(1, 2, 2), cov), method=cond, steps=300, n_samples=n, seed=1,
                progress=False, dtype=F64)
    assert sol.settings["method"] == "ExactLinearGaussianBayes" and cond.calls == sol.nfe
    s = H @ cov @ H.T + noise_var * torch.eye(2, dtype=F64)
    gain = cov @ H.T @ torch.linalg.inv(s)
    post_mean, post_cov = mu + gain @ (y - H @ mu), cov - gain @ H @ cov
    x = sol.samples.reshape(n, d)
    assert ((x.mean(0) - post_mean).abs() <= 4 * (post_cov.diagonal() / n).sqrt() + 0.01).all()
    assert (torch.cov(x.T) - post_cov).norm() / post_cov.norm() < 0.1
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['zeta'\]"):
        solve(y, op, GaussianScore(sde, mu.reshape(1, 2, 2), cov), method=cond, zeta=1.0, steps=2, progress=False)
    with pytest.raises(ValueError, match="or a Conditioner"):
        solve(y, op, GaussianScore(sde, mu.reshape(1, 2, 2), cov), method=object(), steps=2, progress=False)


# ----------------------------------------------------------------------------- batch independence
def test_a_result_does_not_depend_on_the_other_measurements():
    """Measurement a next to b and next to c = 50 b (scores ~50x larger): sample 0 is the same. Both runs
    have batch 2, so the generator gives sample 0 the same noise (64 values per sample fill whole blocks of
    torch's CPU normal sampler). Averaging the Langevin norms over the whole batch (Song et al.) breaks it."""
    fm = Inpainting.random((1, 8, 8), keep=0.5, seed=0)
    prior = IndependentGaussianScore(VESDE(0.01, 5.0), (1, 8, 8))
    g = torch.Generator().manual_seed(1)
    ya, yb = fm(torch.rand(1, 1, 8, 8, generator=g)), fm(torch.rand(1, 1, 8, 8, generator=g))
    runs = {}
    for name, other in (("b", yb), ("c", 50 * yb)):
        for corrector in ("langevin", functools.partial(langevin)):    # grouped by solve / whole batch
            sol = solve(torch.cat([ya, other]), fm, prior, steps=20, seed=3, progress=False, corrector=corrector,
                        method="dps", zeta=0.3)
            runs[name, isinstance(corrector, str)] = sol.samples[0, 0]
    torch.testing.assert_close(runs["b", True], runs["c", True], rtol=0, atol=1e-6)
    assert (runs["b", False] - runs["c", False]).abs().max() > 1e-2     # the test can fail


# ----------------------------------------------------------------------------- precision
def test_float64_measurements_and_float64_work():
    """A float64 measurement is converted (same samples as float32 input); dtype=float64 runs the sampler in
    float64 around a float32 network, and the final data step then fits the data to float64 precision."""
    fm = Inpainting.random((1, 16, 16), keep=0.4, seed=1)
    model = tiny_unet_model(16)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    y64 = fm(x)
    kw = dict(steps=3, n_samples=1, seed=0, progress=False)
    a = solve(y64.numpy(), fm, model, **kw)
    b = solve(y64.float(), fm, model, **kw)
    assert a.samples.dtype == torch.float32 and torch.equal(a.samples, b.samples)
    c = solve(y64, fm, model, dtype=F64, **kw)
    assert c.samples.dtype == F64 and c.settings["dtype"] == "float64"
    obs = fm.mask.bool().expand(2, 1, 16, 16)
    assert (c.samples[0][obs] - y64[obs]).abs().max() < 1e-12            # float32 work: ~1e-7
    assert next(model.parameters()).dtype == torch.float32                # the caller's model untouched
    # (float64 noise differs from float32 noise under one seed, so the samples are not compared; the score is)
    t = torch.full((2,), 0.3)
    torch.testing.assert_close(model(x, t.double()).float(), model(x.float(), t), rtol=1e-4, atol=1e-4)


def test_complex128_kspace_is_converted():
    fm = UndersampledMRI(16, acceleration=2, center_fraction=0.25)
    model = tiny_unet_model(16)
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    k128 = fm(x).numpy()
    assert k128.dtype == np.complex128
    kw = dict(steps=3, seed=0, progress=False)
    a = solve(k128, fm, model, **kw)
    b = solve(k128.astype(np.complex64), fm, model, **kw)
    assert torch.equal(a.samples, b.samples) and a.samples.dtype == torch.float32
    c = solve(k128, fm, model, dtype=F64, **kw)
    assert c.samples.dtype == F64 and torch.isfinite(c.samples).all()
    # the CG data step fits the measured k-space to float64 precision (float32: ~1e-6)
    assert float(c.residual.max()) / float(np.abs(k128).sum() ** 0.5) < 1e-10


def test_complex128_kspace_with_the_shipped_brain64():
    """The issue's call: solve(numpy complex128 y, UndersampledMRI(64, 4), brain64) crashed in the network."""
    from sgm_inverse import load_score_model
    from sgm_inverse.checkpoints import WEIGHTS_DIR
    fm = UndersampledMRI(64, acceleration=4)
    x = torch.from_numpy(np.load(WEIGHTS_DIR / "demo_brain_slice.npy")).double()[None]
    k = fm(x).numpy()
    model = load_score_model("brain64")
    a = solve(k, fm, model, steps=3, seed=0, progress=False)
    b = solve(k.astype(np.complex64), fm, model, steps=3, seed=0, progress=False)
    assert a.samples.shape == (1, 1, 1, 64, 64) and torch.equal(a.samples, b.samples)
    assert float(a.residual[0, 0]) < 1e-3 * float(np.linalg.norm(k))       # the CG step fits y


@pytest.mark.parametrize("bad,message", [
    (np.array([[None] * 8] * 8, dtype=object), "NumPy dtype object"),
    ("not an array", "torch.Tensor or numpy array"),
    (np.zeros((1, 1, 8, 8), dtype=np.complex128), "must be real"),
])
def test_bad_measurements_are_one_line_value_errors(bad, message):
    fm = Inpainting.box((1, 8, 8), size=4)
    with pytest.raises(ValueError, match=message) as err:
        solve(bad, fm, IndependentGaussianScore(VESDE(0.01, 5.0), (1, 8, 8)), steps=2, progress=False)
    assert "\n" not in str(err.value)


def test_bad_device_and_dtype_are_value_errors():
    fm = Inpainting.box((1, 8, 8), size=4)
    prior = IndependentGaussianScore(VESDE(0.01, 5.0), (1, 8, 8))
    y = fm(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="torch.float32 or torch.float64"):
        solve(y, fm, prior, dtype=torch.float16, steps=2, progress=False)
    with pytest.raises(ValueError, match="not a torch device"):
        solve(y, fm, prior, device="gpu7", steps=2, progress=False)


# ----------------------------------------------------------------------------- device and mutation
def test_device_resolution_order():
    """asked > the score model's weights > its `device` attribute (an adapter around a module) > the
    measurement's > cpu. The "meta" device stands in for a GPU on a CPU-only machine."""
    meta = torch.device("meta")
    prior = IndependentGaussianScore(VESDE(0.01, 5.0), (1, 8, 8))
    assert resolve_device(prior, np.zeros(3)) == torch.device("cpu")
    assert resolve_device(prior, torch.zeros(3, device=meta)) == meta            # weightless: the measurement's
    assert resolve_device(prior, torch.zeros(3), device="meta") == meta
    net = torch.nn.Conv2d(1, 1, 1).to(meta)
    wrapped = from_epsilon(lambda x, n: net(x), torch.linspace(0.99, 0.01, 10))  # a function: no weights
    assert wrapped.device is None and resolve_device(wrapped, torch.zeros(3)) == torch.device("cpu")
    assert resolve_device(from_epsilon(lambda x, n: x, torch.linspace(0.99, 0.01, 10)), np.zeros(1)).type == "cpu"
    module_wrapped = from_epsilon(net, torch.linspace(0.99, 0.01, 10))          # a module: its weights' device
    assert resolve_device(module_wrapped, torch.zeros(3)) == meta
    assert resolve_device(tiny_unet_model(16), torch.zeros(3, device=meta)) == torch.device("cpu")


def test_the_callers_forward_model_is_never_moved():
    """A score model on another device than the forward model: solve works on a copy. (Old code moved the
    caller's forward model in place: here its mask would end up on the "meta" device.)"""
    fm = Inpainting.box((1, 8, 8), size=4)
    mask = fm.mask.clone()
    assert on_device(fm, torch.device("cpu")) is fm
    moved = on_device(fm, torch.device("meta"))
    assert moved is not fm and moved.mask.device.type == "meta" and fm.mask.device.type == "cpu"
    ct = SparseViewCT(8, 3)   # sparse CSR buffers: copied table by table (deepcopy cannot copy them)
    moved = on_device(ct, torch.device("meta"))
    assert moved.projector.W.device.type == "meta" and ct.projector.W.device.type == "cpu"
    x = torch.rand(2, 1, 8, 8)
    same = _moved_copy(ct, torch.device("cpu"))
    assert same is not ct and torch.equal(same(x), ct(x)) and torch.equal(same.adjoint(ct(x)), ct.adjoint(ct(x)))
    meta_model = tiny_unet_model(8).to("meta")
    with pytest.raises(Exception):   # nothing can be computed on "meta"; what matters is the caller's model
        solve(fm(torch.rand(1, 1, 8, 8)), fm, meta_model, steps=1, progress=False)
    assert fm.mask.device.type == "cpu" and torch.equal(fm.mask, mask)


@CUDA
def test_cuda_device_keyword_with_a_weightless_prior_and_cpu_models():
    fm = Inpainting.box((1, 8, 8), size=4)
    prior = IndependentGaussianScore(VESDE(0.01, 5.0), (1, 8, 8))
    model = tiny_unet_model(8)
    y = fm(torch.rand(1, 1, 8, 8))
    sol = solve(y, fm, prior, device="cuda", steps=3, progress=False)
    assert sol.samples.device.type == "cuda" and fm.mask.device.type == "cpu"
    sol = solve(y, fm, model, device="cuda", steps=3, progress=False)
    assert sol.samples.device.type == "cuda" and next(model.parameters()).device.type == "cpu"
    sol = solve(y.cuda(), fm, prior, steps=3, progress=False)            # weightless prior: follows y
    assert sol.samples.device.type == "cuda"
