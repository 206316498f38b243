"""from_epsilon / from_denoiser against a correlated Gaussian whose networks are known in closed form.

The data: x0 ~ N(mu, Sigma) in [0, 1] coordinates (4 pixels, means ~0.5, std ~0.1), seen by the wrapped
networks in [-1, 1]: x_net = 2 x0 - 1 ~ N(m, C), m = 2 mu - 1, C = 4 Sigma. Their exact networks follow
from GaussianScore's formula s_t(x) = -(a^2 C + s^2 I)^-1 (x - a m) (p_t = N(a m, a^2 C + s^2 I)):
  epsilon (DDPM, x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) eps):  eps*(x, n) = -sqrt(1 - abar_n) s_n(x);
  denoiser (EDM, x = x0 + sigma n):  D*(x, sigma) = m + C (C + sigma^2 I)^-1 (x - m)  (Tweedie).
The adapters must turn them into the exact score of N(mu, Sigma) in [0, 1] coordinates under their SDE.
"""
from __future__ import annotations

import math

import pytest
import torch

from forward_models import ForwardModel
from sgm_inverse import GaussianScore, from_denoiser, from_epsilon, ode_sample, pc_sample, solve
from sgm_inverse.adapters import DiscreteVPSDE
from sgm_inverse.utils import time_vector

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
D = 4
LO, HI = -1.0, 1.0
K = HI - LO
BETAS = torch.linspace(1e-4, 0.02, 1000, dtype=F64)          # DDPM's linear schedule
ABAR = torch.cumprod(1 - BETAS, 0)


def _gaussian():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(D, D, generator=g, dtype=F64)
    cov = 0.02 * (a @ a.T / D + 0.3 * torch.eye(D, dtype=F64))
    mu = 0.5 + 0.1 * torch.randn(D, generator=g, dtype=F64)
    return mu, cov


MU, COV = _gaussian()
M_NET, C_NET = LO + K * MU, K * K * COV
EYE = torch.eye(D, dtype=F64)


def eps_net(x, n):
    """The exact epsilon-prediction network of N(M_NET, C_NET) at integer timesteps n (B,)."""
    assert n.dtype == torch.int64 and n.shape == (x.shape[0],)
    a2 = ABAR[n]
    xf = x.reshape(x.shape[0], D).double()
    cov_t = a2[:, None, None] * C_NET + (1 - a2)[:, None, None] * EYE
    score = -torch.linalg.solve(cov_t, (xf - a2.sqrt()[:, None] * M_NET)[..., None])[..., 0]
    return (-(1 - a2).sqrt()[:, None] * score).reshape(x.shape).to(x.dtype)


def denoiser_net(x, sigma):
    """The exact EDM denoiser of N(M_NET, C_NET): E[x0 | x0 + sigma n], sigma (B,)."""
    assert sigma.shape == (x.shape[0],)
    xf = x.reshape(x.shape[0], D).double()
    cov_t = C_NET + sigma.double()[:, None, None] ** 2 * EYE
    d = M_NET + (C_NET @ torch.linalg.solve(cov_t, (xf - M_NET)[..., None]))[..., 0]
    return d.reshape(x.shape).to(x.dtype)


def wrapped(kind, data_range=(LO, HI)):
    if kind == "epsilon":
        return from_epsilon(eps_net, ABAR, data_range=data_range)
    return from_denoiser(denoiser_net, sigma_min=0.002, sigma_max=80.0, data_range=data_range)


def test_discrete_vp_sde_passes_through_the_ddpm_schedule():
    sde = DiscreteVPSDE(ABAR, scale=K)
    n = torch.tensor([0, 1, 9, 99, 500, 999])
    alpha, std = sde.scale_std((n + 1).double() / 1000)
    torch.testing.assert_close(alpha, ABAR[n].sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(std, (1 - ABAR[n]).sqrt() / K, rtol=1e-12, atol=0)   # sigma_net = 2 sigma
    assert torch.equal(sde.timestep((n + 1).double() / 1000), n)
    # beta(t) dt over one timestep is DDPM's beta_n to first order: -log(1 - beta_n)
    torch.testing.assert_close(sde.beta((n[1:] + 1).double() / 1000) / 1000, -torch.log1p(-BETAS[n[1:]]))
    assert sde.eps == pytest.approx(1e-3) and sde.T == 1.0
    # one step of the discretised chain over one timestep is DDPM's: x_n = sqrt(1 - beta_n) x_{n-1} + sqrt(beta_n) z
    x = torch.ones(len(n) - 1, 1, dtype=F64)
    f, G = sde.discretize(x, (n[1:] + 1).double() / 1000, 1e-3)
    torch.testing.assert_close(G * K, BETAS[n[1:]].sqrt(), rtol=1e-9, atol=0)
    torch.testing.assert_close(f[:, 0], (1 - BETAS[n[1:]]).sqrt() - 1, rtol=1e-9, atol=0)
    assert torch.isfinite(sde.discretize(x, torch.ones(len(n) - 1, dtype=F64), 0.5)[1]).all()   # coarse steps
    # the forward SDE's variance ODE d(std^2)/dt = -beta std^2 + g^2 (g^2 = beta / K^2) holds
    t, h = torch.tensor([0.3005], dtype=F64), 1e-7       # inside a timestep: beta jumps at t_n
    v = lambda s: sde.scale_std(s)[1] ** 2   # noqa: E731
    dv = (v(t + h) - v(t - h)) / (2 * h)
    beta, g = sde.beta(t), sde.sde(torch.zeros(1, 1), t)[1]
    torch.testing.assert_close(dv, -beta * v(t) + g ** 2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("kind", ["epsilon", "denoiser"])
def test_adapter_score_is_the_exact_score_in_unit_coordinates(kind):
    model = wrapped(kind)
    exact = GaussianScore(model.sde, MU.reshape(1, 2, 2), COV)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 2, 2, generator=g, dtype=F64)
    if kind == "epsilon":     # exact at the DDPM timesteps t_n = (n + 1) / N ...
        t = torch.tensor([1, 2, 10, 100, 700, 1000], dtype=F64) / 1000
    else:
        t = torch.tensor([0.0, 0.05, 0.3, 0.6, 0.9, 1.0], dtype=F64)
    s, ref = model(x, t), exact(x, t)
    assert s.shape == x.shape and s.dtype == F64
    torch.testing.assert_close(s, ref, rtol=1e-9, atol=1e-9 * float(ref.abs().max()))
    if kind == "epsilon":
        # ... and between them off by the noise-level mismatch of the nearest timestep n: for a Gaussian each
        # eigendirection's score is scaled by a factor between sigma_n / sigma and sigma / sigma_n, so
        # |s - s*| / |s*| <= exp(|log(sigma_n / sigma)|) - 1 (measured 14 % at t = 0.0013, between the
        # first two timesteps, where sigma grows by 41 % per step; 0.1-0.3 % beyond t = 0.2)
        t = torch.tensor([0.0013, 0.0137, 0.2222, 0.5005, 0.777, 0.9991], dtype=F64)
        s, ref = model(x, t), exact(x, t)
        rel = (s - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)
        alpha, std = model.sde.scale_std(t)
        sigma = K * std / alpha
        n = model.sde.timestep(t)
        sigma_n = ((1 - ABAR[n]) / ABAR[n]).sqrt()
        bound = torch.exp((sigma_n / sigma).log().abs()) - 1
        assert (rel <= bound + 1e-9).all() and (rel[2:] < 0.005).all(), (rel, bound)
    # float32 in, float32 out, same numbers to float32 precision
    s32 = model(x.float(), t.float())
    assert s32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), model(x, t), rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    # a [-1, 1] network declared as [0, 1]: the score is wrong by far more than the tolerance above
    bad = wrapped(kind, data_range=(0.0, 1.0))
    err = ((bad(x, t) - exact(x, t)).norm() / exact(x, t).norm()).item()
    assert err > 0.1, err


def _check_law(x, mean, cov, label):
    """Sample mean within 4 SE (+ 0.01 sampler bias) of mean; covariance within 10 % (Frobenius)."""
    n = x.shape[0]
    se = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - mean).abs() <= 4 * se + 0.01 * cov.diagonal().sqrt()).all(), (label, x.mean(0), mean)
    rel = ((torch.cov(x.T) - cov).norm() / cov.norm()).item()
    assert rel < 0.1, f"{label}: relative covariance error {rel:.3f}"   # MC error with n = 4000 ~ 0.03


@pytest.mark.parametrize("kind", ["epsilon", "denoiser"])
def test_samplers_draw_the_gaussian_through_the_adapter(kind):
    """pc_sample and ode_sample with the wrapped networks reproduce N(mu, Sigma) in [0, 1] coordinates
    (measured: covariance error 0.02, mean within 1.2 SE)."""
    model = wrapped(kind)
    n = 4000
    x = pc_sample(model, (n, 1, 2, 2), steps=300, generator=torch.Generator().manual_seed(1), progress=False,
                  dtype=F64)
    _check_law(x.reshape(n, D), MU, COV, f"{kind} pc")
    x = ode_sample(model, (n, 1, 2, 2), steps=100, generator=torch.Generator().manual_seed(2), dtype=F64)
    _check_law(x.reshape(n, D), MU, COV, f"{kind} ode")


class ExactLinearGaussianLikelihood(ForwardModel):
    """y = H x0 + N(0, v I) with the exact log p_t(y | x_t) of the Gaussian prior under `sde`.

    A time-dependent model that declares neither its measurement shape nor its dtype: both come from forward.
    """

    time_dependent = True

    def __init__(self, H, noise_var, sde):
        super().__init__(image_shape=(1, 2, 2))
        self.H, self.noise_var, self.sde = H, noise_var, sde

    def forward(self, x):
        return x.flatten(1).double() @ self.H.T

    def log_likelihood(self, x, y, t=None):
        # x0 | x_t ~ N(m, C): C = (Sigma^-1 + a^2 / s^2 I)^-1, m = C (Sigma^-1 mu + a x_t / s^2)
        xf = x.flatten(1).double()
        a, s = self.sde.scale_std(time_vector(t, xf.shape[0], xf))
        prec = torch.linalg.inv(COV)
        c = torch.linalg.inv(prec[None] + (a ** 2 / s ** 2)[:, None, None] * EYE)
        m = (c @ (prec @ MU + (a / s ** 2)[:, None] * xf)[..., None])[..., 0]
        cov_y = self.H @ c @ self.H.T + self.noise_var * torch.eye(self.H.shape[0], dtype=F64)
        r = y.double() - m @ self.H.T
        return -0.5 * (r[:, None, :] @ torch.linalg.solve(cov_y, r[..., None]))[:, 0, 0]


@pytest.mark.parametrize("kind", ["epsilon", "denoiser"])
def test_solve_with_an_adapter_draws_the_exact_posterior(kind):
    """solve(method="bayes") with the adapter as prior and the exact p_t(y | x_t): the closed-form posterior
    of 2 noisy linear measurements of the 4 pixels."""
    model = wrapped(kind)
    g = torch.Generator().manual_seed(3)
    H = torch.randn(2, D, generator=g, dtype=F64)
    noise_var = 0.01
    x_true = MU + torch.linalg.cholesky(COV) @ torch.randn(D, generator=g, dtype=F64)
    y = H @ x_true + math.sqrt(noise_var) * torch.randn(2, generator=g, dtype=F64)
    fm = ExactLinearGaussianLikelihood(H, noise_var, model.sde)
    assert fm.measurement_shape() == (2,) and fm.measurement_dtype == F64
    n = 3000
    sol = solve(y, fm, model, steps=300, n_samples=n, seed=4, progress=False, dtype=F64)
    assert sol.settings["method"] == "bayes"
    s = H @ COV @ H.T + noise_var * torch.eye(2, dtype=F64)
    gain = COV @ H.T @ torch.linalg.inv(s)
    post_mean, post_cov = MU + gain @ (y - H @ MU), COV - gain @ H @ COV
    _check_law(sol.samples.reshape(n, D).double(), post_mean, post_cov, f"{kind} posterior")
    assert (post_mean - MU).norm() > 10 * (post_cov.diagonal() / n).sqrt().max()   # the data moved the law


def test_adapter_input_errors_are_value_errors():
    with pytest.raises(ValueError, match="decreasing"):
        from_epsilon(eps_net, ABAR.flip(0))
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        from_epsilon(eps_net, torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="data_range"):
        from_epsilon(eps_net, ABAR, data_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        from_denoiser(denoiser_net, sigma_min=1.0, sigma_max=0.5)
    model = from_epsilon(lambda x, n: x[:, :, :1], ABAR)
    with pytest.raises(ValueError, match=r"returned shape \(2, 1, 1, 2\); expected \(2, 1, 2, 2\)"):
        model(torch.rand(2, 1, 2, 2), torch.full((2,), 0.5))


def test_docs_priors_example_runs():
    """The runnable block of docs/priors.md (a diffusers-style UNet stand-in) wraps and solves."""
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "docs" / "priors.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "docs/priors.md", "exec"), namespace)
    sol, prior = namespace["sol"], namespace["prior"]
    assert sol.samples.shape == (1, 1, 3, 32, 32) and torch.isfinite(sol.samples).all()
    assert prior.sde.eps == pytest.approx(1e-3)
    op, y = namespace["op"], namespace["y"]
    obs = op.mask.bool().expand_as(y)
    torch.testing.assert_close(sol.samples[0][obs], y[obs], rtol=0, atol=1e-5)   # the data step kept y
