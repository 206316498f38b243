"""Baselines and metrics checked against independent references.

References: scikit-image (TV denoising, PSNR, SSIM), numpy.linalg (||A||^2), numpy FFT,
and a numpy Chambolle-Pock solver written here (exact TV, no smoothing) run far past
convergence. Operators are small ones defined here so the tests do not depend on
forward_models/.
"""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.restoration import denoise_tv_chambolle

from sgm_inverse import metrics
from sgm_inverse.baselines import (fbp, fista_tv, power_method, prox_tv, tune_fista_lambda, tv,
                                   zero_filled, zero_filled_ifft)
from sgm_inverse.baselines.fista_tv import data_grad


# ---------------------------------------------------------------- small operators
class DenseOp:
    """A x = M vec(x) for a dense matrix M (m, C*H*W); y (B, m)."""

    def __init__(self, matrix, image_shape):
        self.matrix, self.image_shape = torch.as_tensor(matrix), tuple(image_shape)

    def forward(self, x):
        return x.flatten(1) @ self.matrix.T

    __call__ = forward

    def adjoint(self, y):
        return (y @ self.matrix).reshape(y.shape[0], *self.image_shape)


class MaskOp:
    """Inpainting: A x = mask * x (self-adjoint)."""

    def __init__(self, mask):
        self.mask = mask

    def forward(self, x):
        return self.mask * x

    __call__ = forward

    def adjoint(self, y):
        return self.mask * y


def cfft(z):
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(z, dim=(-2, -1)), norm="ortho"),
                              dim=(-2, -1))


def cifft(k):
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"),
                              dim=(-2, -1))


class MaskedFFTOp:
    """MRI: a complex image stored as 2 channels (re, im) -> mask * centred unitary FFT, complex (B, 1, H, W)."""

    def __init__(self, mask):
        self.mask = mask

    def forward(self, x):
        return self.mask * cfft(torch.complex(x[:, :1], x[:, 1:]))

    __call__ = forward

    def adjoint(self, y):
        z = cifft(self.mask * y)  # adjoint w.r.t. Re<.,.>: (re, im) of F^H M y
        return torch.cat([z.real, z.imag], dim=1)


# ---------------------------------------------------------------- numpy references
def np_grad(u):
    """Forward differences (Neumann), u (..., H, W) -> (2, ..., H, W)."""
    gh = np.zeros_like(u)
    gh[..., :-1, :] = np.diff(u, axis=-2)
    gv = np.zeros_like(u)
    gv[..., :, :-1] = np.diff(u, axis=-1)
    return np.stack([gh, gv])


def np_grad_adjoint(p):
    ph, pv = p[0][..., :-1, :], p[1][..., :, :-1]
    out = np.zeros(p.shape[1:], dtype=p.dtype)
    out[..., 1:, :] += ph
    out[..., :-1, :] -= ph
    out[..., :, 1:] += pv
    out[..., :, :-1] -= pv
    return out


def np_tv(u):
    """Vectorial isotropic TV of one (C, H, W) image (channels coupled)."""
    return np.sqrt((np.abs(np_grad(u)) ** 2).sum(axis=(0, 1))).sum()


def chambolle_pock(matrix, y, lam, shape, box=None, n_iter=20000):
    """min_x 1/2||M x - y||^2 + lam TV(x) [+ box] by PDHG with K = [M; D] (numpy, exact TV).

    matrix None means M = I (pure denoising of y).
    """
    fwd = (lambda v: v.ravel()) if matrix is None else (lambda v: matrix @ v.ravel())
    adj = (lambda q: q.reshape(shape)) if matrix is None else (lambda q: (matrix.T @ q).reshape(shape))
    norm_m = 1.0 if matrix is None else np.linalg.norm(matrix, 2)
    tau = sigma = 0.99 / math.sqrt(norm_m ** 2 + 8.0)
    x, xbar = np.zeros(shape), np.zeros(shape)
    q, p = np.zeros_like(np.asarray(y).ravel()), np.zeros((2,) + shape)
    for _ in range(n_iter):
        q = (q + sigma * fwd(xbar) - sigma * np.ravel(y)) / (1 + sigma)
        p = p + sigma * np_grad(xbar)
        p /= np.maximum(1.0, np.sqrt((p ** 2).sum(axis=(0, 1), keepdims=True)) / lam)
        x_new = x - tau * (adj(q) + np_grad_adjoint(p))
        x_new = x_new if box is None else np.clip(x_new, *box)
        xbar, x = 2 * x_new - x, x_new
    return x


def rof(u, x, w):
    """1/2||u - x||^2 + w TV(u): the objective skimage's denoise_tv_chambolle minimises."""
    return 0.5 * ((u - x) ** 2).sum() + w * np_tv(u)


def phantom(h, w):
    img = np.zeros((h, w))
    img[h // 4: 3 * h // 4, w // 5: 3 * w // 5] = 0.8
    img[h // 8: 3 * h // 8, w // 2: 7 * w // 8] = 0.4
    return img


# ---------------------------------------------------------------- TV value and prox
def test_tv_matches_numpy_definition_real_colour_and_complex():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 9, 11))
    got = tv(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, [np_tv(xi) for xi in x], rtol=1e-12)
    # 2-channel (re, im): TV of the complex image, sum sqrt(|D_h z|^2 + |D_v z|^2)
    z = x[:, 0] + 1j * x[:, 1]
    gz = np_grad(z)
    want = np.sqrt((np.abs(gz) ** 2).sum(axis=0)).sum(axis=(-2, -1))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_prox_tv_grayscale_matches_skimage():
    rng = np.random.default_rng(1)
    x = phantom(32, 32) + 0.15 * rng.standard_normal((32, 32))
    for w in (0.1, 0.3):
        # run skimage to (near) convergence so it is a reference, not a 200-step estimate
        ref = denoise_tv_chambolle(x, weight=w, eps=1e-10, max_num_iter=20000)
        u = prox_tv(torch.tensor(x)[None, None], w, n_iter=500)[0].numpy()
        assert rof(u, x[None], w) <= rof(ref[None], x[None], w) * (1 + 1e-5)
        assert np.abs(u[0] - ref).max() < 1e-2


def test_prox_tv_colour_is_channel_coupled():
    # skimage's channel_axis denoises channels independently, so the coupled colour TV is
    # checked on x = a g with |a| = 1: then prox(x) = a * prox_gray(g) exactly.
    rng = np.random.default_rng(2)
    g = phantom(32, 32) + 0.15 * rng.standard_normal((32, 32))
    a = np.array([0.2, 0.5, 0.7])
    a /= np.linalg.norm(a)
    x, w = a[:, None, None] * g, 0.15
    ref = a[:, None, None] * denoise_tv_chambolle(g, weight=w, eps=1e-10, max_num_iter=20000)
    u = prox_tv(torch.tensor(x)[None], w, n_iter=500)[0].numpy()
    assert rof(u, x, w) <= rof(ref, x, w) * (1 + 1e-5)
    assert np.abs(u - ref).max() < 1e-2
    # an uncoupled (per-channel) prox is a different, worse point for this objective
    per_channel = denoise_tv_chambolle(x, weight=w, eps=1e-10, max_num_iter=20000, channel_axis=0)
    assert np.abs(u - per_channel).max() > 5e-2
    assert rof(u, x, w) < rof(per_channel, x, w) - 1e-2


def test_prox_tv_general_colour_with_box_matches_chambolle_pock():
    rng = np.random.default_rng(3)
    clean = np.stack([phantom(16, 16), 0.5 * phantom(16, 16).T, np.roll(phantom(16, 16), 4, 0)])
    x = clean + 0.2 * rng.standard_normal(clean.shape)
    w, box = 0.2, (0.0, 1.0)
    ref = chambolle_pock(None, x, w, x.shape, box=box, n_iter=20000)
    u = prox_tv(torch.tensor(x)[None], w, n_iter=400, box=box)[0].numpy()
    assert u.min() >= 0.0 and u.max() <= 1.0
    assert rof(u, x, w) <= rof(ref, x, w) * (1 + 1e-5)
    assert np.abs(u - ref).max() < 1e-2


def test_prox_tv_per_sample_weight_zero_weight_and_warm_start():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.standard_normal((3, 1, 12, 12)))
    weights = torch.tensor([0.0, 0.1, 0.5], dtype=x.dtype)
    u = prox_tv(x, weights, n_iter=100)
    torch.testing.assert_close(u[0], x[0])  # weight 0 is the identity
    for i in (1, 2):
        torch.testing.assert_close(u[i:i + 1], prox_tv(x[i:i + 1], float(weights[i]), n_iter=100))
    # the returned dual reproduces the primal point, and warm-starting from it stays there
    u2, dual = prox_tv(x, weights, n_iter=100, return_dual=True)
    torch.testing.assert_close(prox_tv(x, weights, n_iter=0, dual=dual), u2)
    assert bool((tv(u2) < tv(x) + 1e-12).all())


# ---------------------------------------------------------------- FISTA-TV
def dense_problem(seed=0, h=16, m=150):
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((m, h * h)) / np.sqrt(m)
    x_true = phantom(h, h)[None]
    y = matrix @ x_true.ravel() + 0.02 * rng.standard_normal(m)
    return matrix, x_true, y


def test_power_method_matches_numpy_eigenvalue():
    matrix, _, _ = dense_problem()
    want = np.linalg.eigvalsh(matrix.T @ matrix).max()
    got = power_method(DenseOp(matrix, (1, 16, 16)), (1, 16, 16), n_iter=50, dtype=torch.float64)
    assert abs(got - want) / want < 1e-2


def test_fista_tv_reaches_chambolle_pock_minimiser_and_decreases():
    matrix, x_true, y = dense_problem()
    lam, shape = 0.1, (1, 16, 16)

    def objective(x):
        return 0.5 * ((matrix @ x.ravel() - y) ** 2).sum() + lam * np_tv(x)

    ref = chambolle_pock(matrix, y, lam, shape, box=(0.0, 1.0), n_iter=20000)
    op = DenseOp(matrix.astype(np.float32), shape)
    x, hist = fista_tv(op, torch.tensor(y, dtype=torch.float32)[None], lam, n_iter=300,
                       return_history=True)
    x = x[0].double().numpy()
    assert (objective(x) - objective(ref)) / objective(ref) < 1e-3
    assert np.abs(x - ref).max() < 1e-2
    h = hist[:, 0].double().numpy()
    np.testing.assert_allclose(h[-1], objective(x), rtol=1e-4)  # history is F(x_k)
    assert h[-1] <= h[0]
    assert np.max((h[21:] - h[20:-1]) / np.abs(h[20:-1])) < 1e-3


def test_fista_tv_per_sample_lambda_masking_operator():
    rng = np.random.default_rng(5)
    x_true = torch.tensor(np.stack([phantom(16, 16)] * 2)[:, None], dtype=torch.float32)
    mask = torch.tensor(rng.random((16, 16)) < 0.6, dtype=torch.float32)
    op = MaskOp(mask)
    y = op(x_true + 0.05 * torch.tensor(rng.standard_normal(x_true.shape), dtype=torch.float32))
    lams = torch.tensor([0.02, 0.2])
    both = fista_tv(op, y, lams, n_iter=60)
    for i in range(2):
        one = fista_tv(op, y[i:i + 1], float(lams[i]), n_iter=60)
        torch.testing.assert_close(both[i:i + 1], one, atol=1e-5, rtol=1e-5)


def complex_phantom(h):
    yy, xx = np.mgrid[:h, :h] / h
    z = np.zeros((h, h), dtype=complex)
    z[(yy - 0.5) ** 2 + (xx - 0.45) ** 2 < 0.12] = 0.7 * np.exp(0.6j)
    z[(yy - 0.35) ** 2 + (xx - 0.6) ** 2 < 0.02] = 1.0 * np.exp(-1.2j)
    z[(yy > 0.65) & (yy < 0.8) & (xx > 0.25) & (xx < 0.7)] = 0.4 * np.exp(2.0j)
    return z


def test_fista_tv_complex_mri_beats_zero_filled():
    h = 32
    rng = np.random.default_rng(6)
    z = complex_phantom(h)
    x_true = torch.tensor(np.stack([z.real, z.imag])[None], dtype=torch.float32)
    mask = rng.random((h, h)) < 0.3
    mask[h // 2 - 3: h // 2 + 3, h // 2 - 3: h // 2 + 3] = True  # fully sampled centre
    op = MaskedFFTOp(torch.tensor(mask))
    noise = 0.01 * (rng.standard_normal((h, h)) + 1j * rng.standard_normal((h, h)))
    y = op(x_true) + op.mask * torch.tensor(noise, dtype=torch.complex64)
    x = fista_tv(op, y, 0.02, n_iter=200, box=None)
    magnitude = torch.tensor(np.abs(z))[None, None]
    psnr_tv = metrics.psnr(torch.linalg.vector_norm(x, dim=1, keepdim=True), magnitude)[0]
    psnr_zf = metrics.psnr(zero_filled_ifft(y), magnitude)[0]
    assert psnr_tv > psnr_zf + 5.0, (psnr_tv, psnr_zf)


def test_data_term_gradient_matches_autograd_for_complex_operator():
    h = 12
    rng = np.random.default_rng(7)
    op = MaskedFFTOp(torch.tensor(rng.random((h, h)) < 0.5))
    x = torch.tensor(rng.standard_normal((2, 2, h, h)), requires_grad=True)
    y = torch.tensor(rng.standard_normal((2, 1, h, h)) + 1j * rng.standard_normal((2, 1, h, h)))
    loss = 0.5 * (op(x) - y).abs().pow(2).sum()
    (auto,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(data_grad(op, x.detach(), y), auto)


def test_tune_fista_lambda_picks_interior_value_on_validation_set():
    rng = np.random.default_rng(8)
    x_val = torch.tensor(np.stack([phantom(16, 16), phantom(16, 16).T])[:, None], dtype=torch.float32)
    op = MaskOp(torch.tensor(rng.random((16, 16)) < 0.7, dtype=torch.float32))
    y_val = op(x_val + 0.1 * torch.tensor(rng.standard_normal(x_val.shape), dtype=torch.float32))
    best, table = tune_fista_lambda(op, x_val, y_val, [0.0, 0.05, 5.0], n_iter=40)
    assert best == 0.05
    assert [row["lam"] for row in table] == [0.0, 0.05, 5.0]
    assert table[1]["mean"] > max(table[0]["mean"], table[2]["mean"])


# ---------------------------------------------------------------- FBP / zero-filled
@pytest.mark.parametrize("h,w", [(16, 16), (15, 13)])
def test_zero_filled_ifft_full_mask_is_exact_inverse(h, w):
    # odd sizes catch fftshift / ifftshift mix-ups
    rng = np.random.default_rng(9)
    x = rng.random((2, 1, h, w))
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(zero_filled_ifft(torch.tensor(k)).numpy(), x, atol=1e-12)
    op = MaskedFFTOp(torch.ones(h, w, dtype=torch.bool))
    x2 = torch.tensor(np.concatenate([x[:, :1], np.zeros_like(x[:, :1])], axis=1))
    np.testing.assert_allclose(zero_filled_ifft(op(x2)).numpy(), x[:, :1], atol=1e-12)


def test_fbp_and_zero_filled_delegate_to_operator_or_raise():
    class FakeCT:
        def fbp(self, y, filter="ramp"):
            return ("fbp", y, filter)

    class FakeMRI:
        def zero_filled(self, y):
            return ("zf", y)

    assert fbp(FakeCT(), 3, filter="hann") == ("fbp", 3, "hann")
    assert zero_filled(FakeMRI(), 4) == ("zf", 4)
    with pytest.raises(TypeError, match="fbp"):
        fbp(MaskOp(None), 3)
    with pytest.raises(TypeError, match="zero_filled"):
        zero_filled(MaskOp(None), 3)


# ---------------------------------------------------------------- metrics
def test_psnr_ssim_match_skimage_with_explicit_data_range():
    rng = np.random.default_rng(10)
    ref = rng.random((3, 1, 24, 24))
    x = np.clip(ref + 0.1 * rng.standard_normal(ref.shape), 0, 1)
    want_psnr = [peak_signal_noise_ratio(r[0], xi[0], data_range=1.0) for xi, r in zip(x, ref)]
    want_ssim = [structural_similarity(r[0], xi[0], data_range=1.0) for xi, r in zip(x, ref)]
    np.testing.assert_allclose(metrics.psnr(torch.tensor(x, dtype=torch.float32), ref), want_psnr, rtol=1e-5)
    np.testing.assert_allclose(metrics.ssim(torch.tensor(x), ref), want_ssim, rtol=1e-10)
    # colour: SSIM averaged over channels on axis 0
    ref3, x3 = rng.random((3, 24, 24)), rng.random((3, 24, 24))
    np.testing.assert_allclose(metrics.ssim(x3[None], ref3[None]),
                               [structural_similarity(ref3, x3, data_range=1.0, channel_axis=0)])


def test_default_data_range_is_wrong_where_it_applies():
    # why data_range is explicit: skimage guesses 2 for a float reference with a negative
    # pixel (-> +20 log10 2 dB) and refuses to guess for float SSIM.
    rng = np.random.default_rng(11)
    ref = rng.random((24, 24))
    ref[0, 0] = -0.01
    x = ref + 0.05 * rng.standard_normal(ref.shape)
    ours = metrics.psnr(x, ref)[0]
    assert ours == pytest.approx(peak_signal_noise_ratio(ref, x, data_range=1.0))
    assert peak_signal_noise_ratio(ref, x) == pytest.approx(ours + 20 * math.log10(2))
    with pytest.raises(ValueError):
        structural_similarity(ref, x)


def test_data_residual_and_summarize():
    rng = np.random.default_rng(12)
    op = MaskedFFTOp(torch.tensor(rng.random((8, 8)) < 0.5))
    x = torch.tensor(rng.standard_normal((2, 2, 8, 8)))
    y = op(x)
    noise = torch.tensor(rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape)) * op.mask
    want = [np.linalg.norm(noise[i].numpy()) / np.linalg.norm((y + noise)[i].numpy()) for i in range(2)]
    np.testing.assert_allclose(metrics.data_residual(op, x, y + noise).numpy(), want, rtol=1e-10)
    assert metrics.summarize(torch.tensor([1.0, 3.0])) == (2.0, 1.0)
