"""Few-step posterior samplers (DDS, DiffPIR, DDNM, PiGDM), their schedules and the warm start.

Targets: Gaussian priors N(mu, Sigma) with the exact p_t score (`GaussianScore`), linear y = A x + n,
so the posterior N(m_post, C_post) is known in closed form:
    m_post = mu + Sigma A^T (A Sigma A^T + s_y^2 I)^-1 (y - A mu),  C_post = Sigma - Sigma A^T (...)^-1 A Sigma.

Every data step (closed form or converged CG) and the re-noising are affine in x_t, so the output is
Gaussian and its MEAN is the sampler run with every fresh noise z replaced by 0 from E[x_T]
(`zero_noise` fixture): the exactness claims on the mean are checked that way, noise-free, to ~1e-8.
Covariances (and means once more) are checked from N samples:
  * mean:  N ||W (m_hat - m)||^2 ~ chi^2_d with W = C^{-1/2}; bound = its 1 - 1e-5 quantile.
  * variance bias b = tr(W S W) / d - 1, SE sqrt(2 / (N d)); the DDPM-ancestral re-noising (eta = "ddpm")
    has a first-order bias ~ C / steps (measured C ~ -10 here, as the ancestral predictor's -13 in
    test_samplers.py); allowed |b| <= 16 / steps + 5 SE.
Approximate samplers (DDS with few CG steps, DiffPIR, noisy DDNM, PiGDM with a non-isotropic prior)
get falsifiable but looser checks: data consistency and a mean much closer to m_post than to mu.
"""
from __future__ import annotations

import importlib
import math

import pytest
import torch

from forward_models import Inpainting, LinearForwardModel, SparseViewCT, UndersampledMRI
from sgm_inverse import GaussianScore, SubVPSDE, VESDE, VPSDE, solve
from sgm_inverse.samplers import (SCHEDULES, TWEEDIE_SAMPLERS, data_steps, pc_sample, schedule_times,
                                  tweedie_sample, warm_start)
from sgm_inverse.samplers.predictors import ancestral
from sgm_inverse.samplers.schedules import sigma_of_t

pytestmark = pytest.mark.usefixtures("single_thread")
warm_start_module = importlib.import_module("sgm_inverse.samplers.warm_start")  # the package exports the function

F64 = torch.float64
SDES = {"VE": lambda: VESDE(0.005, 50.0), "VP": lambda: VPSDE(0.1, 20.0), "subVP": lambda: SubVPSDE(0.1, 20.0)}
CHI2_TAIL = {4: 28.47, 8: 37.33}   # scipy.stats.chi2.ppf(1 - 1e-5, d)


class MatrixOp(LinearForwardModel):
    """y = M vec(x): a dense operator with forward and adjoint only (no decomposition: the CG paths)."""

    def __init__(self, M: torch.Tensor, image_shape, noise_std: float = 0.0):
        super().__init__(image_shape=image_shape, noise_std=noise_std)
        self.M = M

    def _measurement_shape(self, image_shape):
        return (self.M.shape[0],)

    def forward(self, x):
        return x.flatten(1) @ self.M.T.to(x)

    def adjoint(self, y):
        return (y @ self.M.to(y)).reshape(y.shape[0], *self.image_shape)


def posterior(mu, cov, M, y, sigma_y):
    """Closed-form m_post (D,), C_post (D, D) for y (K,) = M x + N(0, sigma_y^2 I)."""
    S = M @ cov @ M.T + sigma_y ** 2 * torch.eye(M.shape[0], dtype=F64)
    K = cov @ M.T @ torch.linalg.inv(S)
    return mu + K @ (y - M @ mu), cov - K @ M @ cov


def problem(shape=(1, 4, 4), k=6, sigma_y=0.0, isotropic=None, seed=0):
    """A Gaussian prior (correlated, or isotropic with variance `isotropic`), a K x D matrix, y."""
    g = torch.Generator().manual_seed(seed)
    d = math.prod(shape)
    if isotropic is None:
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
        cov = q @ torch.diag(torch.logspace(-1.3, 0, d, dtype=F64)) @ q.T
    else:
        cov = isotropic * torch.eye(d, dtype=F64)
    mu = 0.3 * torch.randn(d, generator=g, dtype=F64)
    M = torch.randn(k, d, generator=g, dtype=F64) / 2
    x = mu + torch.linalg.cholesky(cov) @ torch.randn(d, generator=g, dtype=F64)
    y = M @ x + sigma_y * torch.randn(k, generator=g, dtype=F64)
    m_post, c_post = posterior(mu, cov, M, y, sigma_y)
    return dict(mu=mu, cov=cov, op=MatrixOp(M, shape, sigma_y), y=y[None], m_post=m_post, c_post=c_post, shape=shape)


@pytest.fixture
def zero_noise(monkeypatch):
    """Replace every fresh z of the samplers and the warm start by 0: the run is then the output mean."""
    def zeros(x, generator=None):
        return torch.zeros_like(x)

    monkeypatch.setattr(data_steps, "randn_like", zeros)
    monkeypatch.setattr(warm_start_module, "randn_like", zeros)


def mean_run(name, sde, p, steps, schedule="geometric", **options):
    """The output mean of sampler `name`: start at E[x_T | y] = alpha(T) m_post, no fresh noise (fixture)."""
    model = GaussianScore(sde, p["mu"].reshape(p["shape"]), p["cov"])
    times = schedule_times(sde, steps, schedule)
    alpha_T = sde.scale_std(times[:1])[0]
    x = (alpha_T * p["m_post"]).reshape(1, *p["shape"])
    out = TWEEDIE_SAMPLERS[name](model, p["op"], p["y"], x, times, **options)
    return float((out.flatten() - p["m_post"]).norm() / (p["m_post"] - p["mu"]).norm())


def draw(name, sde, p, n, steps, seed=1, **options):
    model = GaussianScore(sde, p["mu"].reshape(p["shape"]), p["cov"])
    y = p["y"].expand(n, -1).clone() if p["y"].ndim == 2 else p["y"].expand(n, *p["y"].shape[1:]).clone()
    info = {}
    x = tweedie_sample(name, model, p["op"], y, (n, *p["shape"]), steps=steps, dtype=F64,
                       generator=torch.Generator().manual_seed(seed), info=info, **options)
    return x.flatten(1), info


def check_gaussian(xf, m, cov, steps, idx=None):
    """Sample mean (chi^2 bound) and variance bias (first-order allowance) of xf (N, D) against N(m, cov)."""
    if idx is not None:
        xf, m, cov = xf[:, idx], m[idx], cov[idx][:, idx]
    n, d = xf.shape
    w = torch.linalg.inv(torch.linalg.cholesky(cov))
    chi2 = float(n * (w @ (xf.mean(0) - m)).pow(2).sum())
    assert chi2 < CHI2_TAIL[d], f"mean off: N ||W (m_hat - m)||^2 = {chi2:.1f} > {CHI2_TAIL[d]}"
    b = float(torch.trace(w @ torch.cov(xf.T) @ w.T) / d - 1)
    allow = 16 / steps + 5 * math.sqrt(2 / (n * d))
    assert abs(b) < allow, f"variance bias {b:.3f} beyond {allow:.3f}"


# ------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("t_start", [None, 0.4])
def test_schedule_endpoints_monotone_and_spacing(sde_name, schedule, t_start):
    sde = SDES[sde_name]()
    t = schedule_times(sde, 12, schedule, t_start=t_start)
    assert t.shape == (12,) and t.dtype == F64
    assert float(t[0]) == (sde.T if t_start is None else t_start) and float(t[-1]) == sde.eps
    assert bool((t[1:] < t[:-1]).all())
    sigma = sigma_of_t(sde, t)
    spacing = {"geometric": sigma.log(), "edm": sigma ** (1 / 7), "linear": t}[schedule]
    steps = spacing[1:] - spacing[:-1]
    torch.testing.assert_close(steps, steps.mean().expand(11), rtol=1e-6, atol=1e-9)


def test_schedule_edge_cases():
    ve = VESDE(0.01, 50.0)
    torch.testing.assert_close(schedule_times(ve, 9, "geometric"), schedule_times(ve, 9, "linear"))
    assert schedule_times(ve, 1, "edm", t_start=0.3).tolist() == [0.3]
    for bad in [dict(steps=0), dict(steps=5, schedule="cosine"), dict(steps=5, t_start=1.5),
                dict(steps=5, t_start=ve.eps)]:
        with pytest.raises(ValueError):
            schedule_times(ve, **bad)


# ------------------------------------------------------------------------------ single steps
@pytest.mark.parametrize("sde_name", list(SDES))
def test_renoise_ddpm_is_the_ancestral_step(sde_name, zero_noise):
    """eta = "ddpm" with eps from x0 gives the mean of the ancestral predictor's q(x_s | x_t, x0)."""
    sde = SDES[sde_name]()
    g = torch.Generator().manual_seed(0)
    x, x0 = torch.randn(3, 5, generator=g, dtype=F64), torch.randn(3, 5, generator=g, dtype=F64)
    t, dt = torch.full((3,), 0.6, dtype=F64), 0.05
    alpha, std = sde.scale_std(t)
    def score(x_, t_):  # Tweedie of this score gives x0
        return (alpha[:, None] * x0 - x_) / std[:, None] ** 2

    _, mean = ancestral(sde, score, x, t, dt)
    eps = (x - alpha[:, None] * x0) / std[:, None]
    torch.testing.assert_close(data_steps.renoise(sde, x0, eps, t, t - dt, "ddpm"), mean)


def test_pinv_correction_closed_form_matches_cg():
    op = Inpainting.random((1, 6, 6), keep=0.4, seed=3)
    r = op(torch.randn(2, 1, 6, 6, dtype=F64))
    exact = data_steps.pinv_correction(op, r, mu=0.3)
    via_cg = data_steps.min_norm_correction(op, r, n_iter=50, damping=0.3)
    prox = data_steps.proximal_correction(op, r, 0.3, n_iter=50)
    torch.testing.assert_close(exact, via_cg)
    torch.testing.assert_close(exact, prox)
    torch.testing.assert_close(exact, op.mask * r / 1.3)


def test_proximal_correction_stops_at_convergence():
    """Real-image MRI: A^T A has two eigenvalues, CG converges in 2 steps; run on with rtol = 0 it divided
    rounding noise by rounding noise and diverged in float32 (DDS then returned noise)."""
    op = UndersampledMRI(16, acceleration=4, center_fraction=0.125)
    g = torch.Generator().manual_seed(0)
    x, x0 = torch.rand(2, 1, 16, 16, generator=g), torch.rand(2, 1, 16, 16, generator=g)
    y = op(x)
    for n_iter in (2, 5, 30):
        dx = data_steps.proximal_correction(op, y - op(x0), 0.0, n_iter)
        assert float((op(x0 + dx) - y).abs().norm() / y.abs().norm()) < 1e-4


# ------------------------------------------------------------------------------ exact means (noise-free)
@pytest.mark.parametrize("sde_name", ["VE", "VP"])
@pytest.mark.parametrize("steps", [5, 30])
def test_pigdm_is_exact_for_isotropic_prior(sde_name, steps, zero_noise):
    """Isotropic N(mu, v I) with data_var = v: PiGDM's p(y | x_t) and hence its score are exact, so its
    output mean is the posterior mean at ANY step count (general A by CG, noisy y)."""
    p = problem(sigma_y=0.2, isotropic=0.5)
    for schedule in SCHEDULES:
        assert mean_run("pigdm", SDES[sde_name](), p, steps, schedule, eta=1.0, data_var=0.5) < 1e-6
    # eta in [0, 1) uses eps_hat from the guided x0: still exact in the mean
    assert mean_run("pigdm", SDES[sde_name](), p, steps, eta=0.5, data_var=0.5) < 1e-6


@pytest.mark.parametrize("sde_name", ["VE", "VP"])
def test_ddnm_reaches_the_posterior_mean_as_steps_grow(sde_name, zero_noise):
    """Correlated prior, noiseless y, CG pseudo-inverse: DDNM's fixed point at time t is the posterior mean
    under the prior N(mu, Sigma + sigma_t^2 I), which tends to m_post as t -> 0; the tracking error falls
    ~ 1 / steps (measured: 0.25 / 0.11 / 0.036 / 0.010 at 10 / 50 / 200 / 800 steps)."""
    p = problem()
    errs = [mean_run("ddnm", SDES[sde_name](), p, n, eta=1.0) for n in (50, 200, 800)]
    assert errs[1] < 0.45 * errs[0] and errs[2] < 0.45 * errs[1], errs
    assert errs[2] < 0.015, errs


def test_ddnm_is_exact_when_prior_and_mask_commute(zero_noise):
    """Independent pixels (diagonal Sigma) and inpainting: m_post is DDNM's fixed point at every t."""
    g = torch.Generator().manual_seed(5)
    shape, d = (1, 2, 4), 8
    cov = torch.diag(torch.linspace(0.2, 1.0, d, dtype=F64))
    mu = torch.randn(d, generator=g, dtype=F64)
    op = Inpainting(torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]]))
    y = op((mu + torch.randn(d, generator=g, dtype=F64)).reshape(1, *shape))
    m_post = torch.where(op.mask.flatten().bool(), y.flatten(), mu)
    p = dict(mu=mu, cov=cov, op=op, y=y, m_post=m_post, shape=shape)
    for sde_name in ("VE", "VP"):
        assert mean_run("ddnm", SDES[sde_name](), p, 7, eta=1.0) < 1e-9
        assert mean_run("ddnm", SDES[sde_name](), p, 7, eta="ddpm") < 1e-9


def test_dds_and_diffpir_reduce_to_ddnm():
    """Noiseless y: DDS with converged CG (M >= rank A) and DiffPIR (rho_t = 0) take DDNM's data step; with
    fresh noise only (eta = 1, zeta = 1) the three samplers are the same function of the noise."""
    p = problem()
    ref, _ = draw("ddnm", VPSDE(0.1, 20.0), p, 8, 20, eta=1.0)
    out_dds, _ = draw("dds", VPSDE(0.1, 20.0), p, 8, 20, eta=1.0, cg_iterations=16)
    out_pir, _ = draw("diffpir", VPSDE(0.1, 20.0), p, 8, 20, zeta=1.0)
    torch.testing.assert_close(out_dds, ref, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(out_pir, ref, rtol=1e-7, atol=1e-7)


# ------------------------------------------------------------------------------ sampled (statistical)
@pytest.mark.parametrize("sde_name", ["VE", "VP"])
def test_pigdm_samples_the_posterior_of_an_isotropic_prior(sde_name):
    p = problem(shape=(1, 2, 4), k=3, sigma_y=0.2, isotropic=0.5)
    xf, info = draw("pigdm", SDES[sde_name](), p, 4000, 100, eta="ddpm", data_var=0.5)
    assert info == {"nfe": 100, "backward_passes": 100}
    check_gaussian(xf, p["m_post"], p["c_post"], 100)


def test_ddnm_samples_the_posterior_when_prior_and_mask_commute():
    g = torch.Generator().manual_seed(7)
    shape, d = (1, 2, 4), 8
    cov = torch.diag(torch.linspace(0.2, 1.0, d, dtype=F64))
    mu = torch.randn(d, generator=g, dtype=F64)
    op = Inpainting(torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]]))
    y = op((mu + torch.randn(d, generator=g, dtype=F64)).reshape(1, *shape))
    p = dict(mu=mu, cov=cov, op=op, y=y, shape=shape)
    xf, info = draw("ddnm", VPSDE(0.1, 20.0), p, 4000, 100, eta="ddpm")
    assert info["nfe"] == 100
    observed = op.mask.flatten().bool()
    torch.testing.assert_close(xf[:, observed], y.flatten()[observed].expand(4000, -1))
    # the unobserved pixels are independent of y here: their posterior is the prior's marginal
    check_gaussian(xf, mu, cov, 100, idx=(~observed).nonzero().flatten())


@pytest.mark.parametrize("name, options, sigma_y", [
    ("dds", {}, 0.0), ("dds", {"gamma": 1.0}, 0.1), ("dds", {}, 0.1),
    ("diffpir", {}, 0.1), ("diffpir", {"lam": 1.0}, 0.1),
    ("ddnm", {}, 0.1), ("pigdm", {}, 0.0), ("pigdm", {}, 0.1),
])
def test_approximate_samplers_move_to_the_posterior(name, options, sigma_y):
    """Not exact for this correlated prior (DDS: 5 CG steps; DiffPIR: Cov[x_0 | x_t] ~ sigma_t^2 / lam;
    DDNM noisy / PiGDM: isotropic Cov[x_0 | x_t]): the sample mean must still be far closer to m_post than
    the prior mean is (measured <= 0.36 of the distance at 50 steps; bound 0.5), and fit noiseless data."""
    p = problem(sigma_y=sigma_y)
    xf, info = draw(name, VPSDE(0.1, 20.0), p, 1000, 50, **options)
    assert info["nfe"] == 50
    err = float((xf.mean(0) - p["m_post"]).norm() / (p["m_post"] - p["mu"]).norm())
    assert err < 0.5, err
    residual = (p["op"](xf.reshape(-1, *p["shape"])) - p["y"]).norm(dim=1)
    if sigma_y == 0:
        assert float(residual.max()) < 1e-3 * float(p["y"].norm())
    else:  # not fitting the noise exactly, nor ignoring the data: within 3x of the true residual's scale
        assert float(residual.mean()) < 3 * sigma_y * math.sqrt(p["y"].shape[1])


# ------------------------------------------------------------------------------ solve(), NFE, warm start
class Recording:
    """A ScoreModel-protocol wrapper that records the times it is evaluated at."""

    def __init__(self, model):
        self.model, self.sde, self.image_shape, self.times = model, model.sde, model.image_shape, []

    def __call__(self, x, t):
        self.times.append(float(t[0]))
        return self.model(x, t)


def _image_prior(sde, shape):
    d = math.prod(shape)
    return GaussianScore(sde, torch.full(shape, 0.5), 0.05 * torch.eye(d))


@pytest.mark.parametrize("sampler", list(TWEEDIE_SAMPLERS))
def test_solve_dispatch_nfe_and_data_consistency(sampler):
    shape = (1, 4, 4)
    op = Inpainting.random(shape, keep=0.5, seed=1)
    model = Recording(_image_prior(VPSDE(), shape))
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    sol = solve(op(x), op, model, sampler=sampler, steps=12, n_samples=3, seed=0, progress=False)
    assert sol.samples.shape == (3, 2, *shape) and sol.nfe == 12 == len(model.times)
    assert sol.settings["method"] == sampler and sol.settings["schedule"] == "geometric"
    assert sol.settings["backward_passes"] == (12 if sampler == "pigdm" else 0)
    assert model.times[0] == 1.0 and model.times[-1] == pytest.approx(VPSDE().eps)
    assert float(sol.residual.max()) < 1e-3   # exact pseudo-inverse of the mask (PiGDM: ~1e-5)


@pytest.mark.parametrize("op_name", ["mri", "ct"])
def test_solve_with_cg_data_steps(op_name):
    """Operators without A A^T = c I (real-image MRI, complex y; CT) take the CG pseudo-inverse."""
    if op_name == "mri":
        op, size = UndersampledMRI(8, acceleration=2, center_fraction=0.25), 8
    else:
        op, size = SparseViewCT(16, n_views=4), 16
    model = _image_prior(VESDE(0.01, 20.0), (1, size, size))
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    y = op(x)
    for sampler in TWEEDIE_SAMPLERS:
        sol = solve(y, op, model, sampler=sampler, steps=6, seed=0, progress=False, schedule="edm")
        assert sol.nfe == 6
        assert float(sol.residual.max()) < 0.02 * float(y.abs().norm()), (sampler, sol.residual)


def test_solve_rejects_bad_sampler_options():
    shape = (1, 4, 4)
    op = Inpainting.random(shape, keep=0.5, seed=1)
    model = _image_prior(VPSDE(), shape)
    y = op(torch.rand(1, *shape))
    for bad in [dict(sampler="dds", lam=2.0), dict(sampler="dds", method="dps"), dict(sampler="nope"),
                dict(sampler="ddnm", t_start=0.3), dict(sampler="ddnm", x_init=torch.rand(1, *shape)),
                dict(sampler="ddnm", x_init=torch.rand(2, *shape), t_start=0.3),
                dict(sampler="pc", x_init=torch.rand(1, *shape), t_start=1.5),
                dict(sampler="ddnm", schedule="cosine")]:
        with pytest.raises(ValueError):
            solve(y, op, model, steps=3, progress=False, **bad)


@pytest.mark.parametrize("sampler, nfe", [("dds", 8), ("pigdm", 8), ("pc", 2 * 8 + 1)])
def test_warm_start_runs_from_t_start(sampler, nfe):
    """CCDF: with t_start = t0 every network evaluation is at t <= t0, the first at t0; steps = NFE
    (pc: steps (1 + corrector_steps) + 1 final denoise)."""
    shape = (1, 4, 4)
    op = Inpainting.random(shape, keep=0.5, seed=1)
    model = Recording(_image_prior(VPSDE(), shape))
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    sol = solve(op(x), op, model, sampler=sampler, steps=8, seed=0, progress=False, x_init=x, t_start=0.3)
    assert sol.nfe == nfe == len(model.times)
    assert model.times[0] == pytest.approx(0.3) and max(model.times) == pytest.approx(0.3)
    assert sol.settings["warm_start"] and sol.settings["t_start"] == 0.3


def test_warm_start_state_and_exactness(zero_noise):
    """x_t0 = alpha(t0) x_init + std(t0) z; warm-starting PiGDM (exact on an isotropic prior) at the
    posterior mean keeps the output mean exact, for any t0."""
    sde = VPSDE(0.1, 20.0)
    p = problem(sigma_y=0.2, isotropic=0.5)
    model = GaussianScore(sde, p["mu"].reshape(p["shape"]), p["cov"])
    x_init = p["m_post"].reshape(1, *p["shape"])
    for t0 in (0.2, 0.6):
        alpha = float(sde.scale_std(torch.tensor([t0], dtype=F64))[0])
        torch.testing.assert_close(warm_start(sde, x_init, t0), alpha * x_init)
        out = tweedie_sample("pigdm", model, p["op"], p["y"], x_init.shape, steps=10, t_start=t0, x_init=x_init,
                             dtype=F64, data_var=0.5)
        torch.testing.assert_close(out, x_init, rtol=1e-7, atol=1e-7)


def test_warm_start_noise_level():
    sde = VESDE(0.01, 50.0)
    x_init = torch.full((20000, 1), 2.0, dtype=F64)
    x = warm_start(sde, x_init, 0.5, generator=torch.Generator().manual_seed(0))
    std = float(sde.scale_std(torch.tensor([0.5], dtype=F64))[1])
    assert abs(float(x.mean()) - 2.0) < 5 * std / math.sqrt(20000)
    assert abs(float(x.std()) / std - 1) < 0.03


def test_pc_sample_t_start_grid():
    sde = VPSDE()
    model = Recording(_image_prior(sde, (1, 2, 2)))
    pc_sample(model, (2, 1, 2, 2), steps=4, corrector="none", x_init=torch.zeros(2, 1, 2, 2), t_start=0.25,
              progress=False)
    assert model.times[:4] == pytest.approx(torch.linspace(0.25, sde.eps, 5)[:4].tolist())


def test_dps_reports_its_backward_passes():
    shape = (1, 4, 4)
    op = Inpainting.random(shape, keep=0.5, seed=1)
    y = op(torch.rand(1, *shape))
    sol = solve(y, op, _image_prior(VPSDE(), shape), method="dps", sampler="reverse_diffusion", steps=4,
                progress=False)
    assert sol.nfe == 5 and sol.settings["backward_passes"] == 5 and not sol.settings["warm_start"]
