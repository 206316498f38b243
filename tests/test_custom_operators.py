"""Operators brought by a user: measurement shape and dtype from forward, the dot-product adjoint test over
every operator (against brute-force dense matrices), and the docs/operators.md example, executed."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from forward_models import (ForwardModel, Grayscale, Inpainting, LinearForwardModel, SparseViewCT, UndersampledMRI,
                            check_adjoint)
from sgm_inverse import VESDE, GaussianScore, solve
from sgm_inverse.solve import pick_method
from sgm_inverse.utils import time_vector

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
DOCS = Path(__file__).resolve().parents[1] / "docs"


class AvgPool(LinearForwardModel):
    """The issue's example: 2x average pooling 32 -> 16 (here 8 -> 4), forward and adjoint only."""

    def __init__(self, size=8, noise_std=0.0):
        super().__init__(image_shape=(1, size, size), noise_std=noise_std)
        self.forward_calls = 0

    def forward(self, x):
        self.forward_calls += 1
        return F.avg_pool2d(x, 2)

    def adjoint(self, y):
        return F.interpolate(y, scale_factor=2, mode="nearest") / 4


class SixMeasurements(LinearForwardModel):
    """The issue's other example: 6 linear measurements of a 4x4 image, y (B, 6)."""

    def __init__(self, noise_std=0.0, wrong_adjoint=False):
        super().__init__(image_shape=(1, 4, 4), noise_std=noise_std)
        self.register_buffer("M", torch.randn(6, 16, generator=torch.Generator().manual_seed(5)) / 4)
        self.wrong_adjoint = wrong_adjoint

    def forward(self, x):
        return x.flatten(1) @ self.M.T.to(x.dtype)

    def adjoint(self, y):
        aty = (y @ self.M.to(y.dtype)).reshape(-1, *self.image_shape)
        return 1.5 * aty if self.wrong_adjoint else aty


class ComplexFourierRows(LinearForwardModel):
    """A complex measurement: the first 3 rows of the unitary 1-D FFT along W, real images."""

    def __init__(self):
        super().__init__(image_shape=(1, 4, 6))

    def forward(self, x):
        return torch.fft.fft(x, dim=-1, norm="ortho")[..., :3]

    def adjoint(self, y):
        full = torch.cat([y, torch.zeros_like(y[..., :3])], dim=-1)
        return torch.fft.ifft(full, dim=-1, norm="ortho").real.contiguous()


OPERATORS = {
    "inpainting_box": lambda: Inpainting.box((3, 6, 5), size=3),
    "inpainting_random": lambda: Inpainting.random((1, 8, 8), keep=0.3, seed=1),
    "grayscale": lambda: Grayscale((6, 5)),
    "ct_parallel": lambda: SparseViewCT(8, 5),
    "ct_fan": lambda: SparseViewCT(8, 5, geometry="fan", angular_range=2 * math.pi),
    "mri_real": lambda: UndersampledMRI(8, acceleration=2, center_fraction=0.25),
    "mri_complex": lambda: UndersampledMRI((8, 6), channels=2, mask_type="random", center_fraction=0.2),
    "user_avgpool": lambda: AvgPool(),
    "user_six": lambda: SixMeasurements(),
    "user_complex": lambda: ComplexFourierRows(),
}


def dense_matrices(op):
    """Brute force: the real matrix of A (columns A e_j) and of A^T (columns A^T f_i, f_i running over the real
    and, for complex y, the imaginary unit vectors of the measurement space), both float64."""
    n = int(np.prod(op.image_shape))
    eye = torch.eye(n, dtype=F64).reshape(n, *op.image_shape)
    ax = op(eye).reshape(n, -1)
    a = torch.cat([ax.real, ax.imag], 1).T if ax.is_complex() else ax.T       # (m or 2m, n)
    m = ax.shape[1]
    basis = torch.eye(m, dtype=F64).reshape(m, *op.measurement_shape())
    cols = [op.adjoint(basis).reshape(m, n)]
    if ax.is_complex():
        cols.append(op.adjoint(basis.to(torch.complex128) * 1j).reshape(m, n))
    return a, torch.cat(cols, 0).T                                             # (n, m or 2m)


@pytest.mark.parametrize("name", OPERATORS)
def test_adjoint_is_the_transpose_and_check_adjoint_says_so(name):
    op = OPERATORS[name]()
    a, at = dense_matrices(op)
    torch.testing.assert_close(at, a.T, rtol=1e-12, atol=1e-12 * float(a.abs().max()))
    report = check_adjoint(op, n_trials=4, seed=2)
    assert len(report.errors) == 4 and report.relative_error < 1e-12 and report.passed()
    # the reported <A x, y> is the dense one: recompute trial 0 with the same draws
    g = torch.Generator().manual_seed(2)
    x = torch.randn((1, *op.image_shape), generator=g, dtype=F64)
    y = torch.randn((1, *op.measurement_shape()), generator=g, dtype=F64)
    if op.measurement_dtype.is_complex:
        y = torch.complex(y, torch.randn(y.shape, generator=g, dtype=F64))
        yr = torch.cat([y.real.flatten(), y.imag.flatten()])
    else:
        yr = y.flatten()
    assert report.forward_side[0] == pytest.approx(float(yr @ (a @ x.flatten())), rel=1e-12)
    assert "max relative error" in str(report)


def test_check_adjoint_catches_a_wrong_adjoint():
    """A^T replaced by 1.5 A^T: |<Ax, y> - 1.5 <Ax, y>| / (1.5 |<Ax, y>|) = 1/3 in every trial."""
    report = check_adjoint(SixMeasurements(wrong_adjoint=True), n_trials=5)
    assert report.errors == pytest.approx([1 / 3] * 5, rel=1e-12) and not report.passed()
    with pytest.raises(ValueError, match="no adjoint"):
        check_adjoint(torch.nn.Identity())

    class WrongShape(SixMeasurements):
        def adjoint(self, y):
            return super().adjoint(y)[..., :3]
    with pytest.raises(ValueError, match=r"A\^T y has shape \(1, 1, 4, 3\); expected \(1, 1, 4, 4\)"):
        check_adjoint(WrongShape())


def test_measurement_shape_and_dtype_follow_forward():
    pool = AvgPool(size=32)
    assert pool.measurement_shape() == (1, 16, 16) and pool.measurement_dtype == torch.float32
    assert pool.measurement_shape() == (1, 16, 16) and pool.forward_calls == 1        # cached
    assert pool.measurement_shape((1, 8, 8)) == (1, 4, 4)                             # other sizes: one pass each
    y = pool(torch.rand(2, 1, 32, 32))
    assert pool.check_measurement(y).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"measurement has shape \(1, 1, 32, 32\); expected \(B, 1, 16, 16\)"):
        pool.check_measurement(torch.rand(1, 1, 32, 32))
    assert SixMeasurements().measurement_shape() == (6,)
    cplx = ComplexFourierRows()
    assert cplx.measurement_shape() == (1, 4, 3) and cplx.measurement_dtype == torch.complex64
    assert cplx.noise_variance == 0.0
    cplx.noise_std = 0.2
    assert cplx.noise_variance == pytest.approx(0.02)                                 # complex: sigma^2 / 2
    with pytest.raises(ValueError, match="must be complex"):
        cplx.check_measurement(torch.rand(1, 1, 4, 3))
    # declared shapes still win (Grayscale, CT, MRI declare theirs)
    assert Grayscale(8).measurement_shape() == (1, 8, 8)
    assert SparseViewCT(8, 5).measurement_shape() == (1, 5, 12)

    class Broken(LinearForwardModel):
        def __init__(self):
            super().__init__(image_shape=(1, 4, 4))

        def forward(self, x):
            raise RuntimeError("boom\nsecond line")
    with pytest.raises(ValueError, match=r"cannot infer the measurement shape: forward\(\) on zeros of shape "
                                         r"\(1, 1, 4, 4\) raised RuntimeError: boom$"):
        Broken().measurement_shape()


class ExactGaussianLikelihood(ForwardModel):
    """A time-dependent model (the exact log p_t(y | x_t) of y = H x0 + noise under a Gaussian prior) that
    declares no measurement shape or dtype (the issue: refused with "expected (B, 1, 2, 2)")."""

    time_dependent = True

    def __init__(self, H, noise_var, sde, mu, cov):
        super().__init__(image_shape=(1, 2, 2))
        self.H, self.noise_var, self.sde, self.mu, self.cov = H, noise_var, sde, mu, cov

    def forward(self, x):
        return x.flatten(1).double() @ self.H.T

    def log_likelihood(self, x, y, t=None):
        xf = x.flatten(1).double()
        a, s = self.sde.scale_std(time_vector(t, xf.shape[0], xf))
        prec = torch.linalg.inv(self.cov)
        c = torch.linalg.inv(prec[None] + (a ** 2 / s ** 2)[:, None, None] * torch.eye(4, dtype=F64))
        m = (c @ (prec @ self.mu + (a / s ** 2)[:, None] * xf)[..., None])[..., 0]
        cov_y = self.H @ c @ self.H.T + self.noise_var * torch.eye(self.H.shape[0], dtype=F64)
        r = y.double() - m @ self.H.T
        return -0.5 * (r[:, None, :] @ torch.linalg.solve(cov_y, r[..., None]))[:, 0, 0]


def test_time_dependent_model_without_declarations_gives_the_exact_posterior():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, generator=g, dtype=F64)
    cov = a @ a.T / 4 + 0.2 * torch.eye(4, dtype=F64)
    mu = torch.randn(4, generator=g, dtype=F64)
    H = torch.randn(3, 4, generator=g, dtype=F64)
    sde = VESDE(0.01, 20.0)
    y = H @ (mu + torch.linalg.cholesky(cov) @ torch.randn(4, generator=g, dtype=F64))
    y = y + 0.3 * torch.randn(3, generator=g, dtype=F64)
    fm = ExactGaussianLikelihood(H, 0.09, sde, mu, cov)
    assert fm.measurement_shape() == (3,) and fm.measurement_dtype == F64
    n = 3000
    sol = solve(y, fm, GaussianScore(sde, mu.reshape(1, 2, 2), cov), steps=300, n_samples=n, seed=1, progress=False)
    assert sol.settings["method"] == "bayes"
    s = H @ cov @ H.T + 0.09 * torch.eye(3, dtype=F64)
    gain = cov @ H.T @ torch.linalg.inv(s)
    post_mean, post_cov = mu + gain @ (y - H @ mu), cov - gain @ H @ cov
    x = sol.samples.reshape(n, 4).double()
    assert ((x.mean(0) - post_mean).abs() <= 4 * (post_cov.diagonal() / n).sqrt() + 0.01).all()
    assert (torch.cov(x.T) - post_cov).norm() / post_cov.norm() < 0.1


@pytest.mark.parametrize("make", [lambda: AvgPool(size=8), lambda: SixMeasurements()], ids=["avgpool", "six"])
def test_user_operators_solve_and_fit_the_data(make):
    """Non-image-shaped measurements go through solve(): the CG data step fits them (relative residual
    measured ~1e-7)."""
    op = make()
    shape = op.image_shape
    prior = GaussianScore(VESDE(0.01, 5.0), torch.full(shape, 0.5), 0.02 * torch.eye(int(np.prod(shape))))
    y = op(0.5 + 0.15 * torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)))
    sol = solve(y, op, prior, method="projection", steps=30, seed=0, progress=False)
    assert sol.settings["consistency"] == "cg"
    assert (sol.residual / y.flatten(1).norm(dim=1)).max() < 1e-4
    assert pick_method(op) == "dps"       # the default without a decomposition (approximate fit, see test_solve)


def test_docs_operator_example_runs():
    """Every python block of docs/operators.md, in order, in one namespace; then its numbers."""
    text = (DOCS / "operators.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2 and 10 <= len(blocks[0].strip().splitlines()) <= 25
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS / "operators.md"), "exec"), namespace)
    assert namespace["op"].measurement_shape() == (1, 16, 16)
    assert namespace["report"].relative_error < 1e-12
    sol, x, upsampled = namespace["sol"], namespace["x"], namespace["upsampled"]
    rmse = float((sol.mean - x).pow(2).mean().sqrt())
    assert rmse < 0.8 * float((upsampled - x).pow(2).mean().sqrt())    # measured 0.061 vs 0.102
    assert float(sol.residual.max()) < 1e-4 * float(namespace["y"].norm())
