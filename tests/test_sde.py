"""Forward SDEs against closed forms (docs/methods.md / Song et al. 2021) and against simulation.

Statistical checks use fixed seeds but tolerances of 5 Monte-Carlo standard errors
(a correct implementation fails with probability < 1e-6 per check for any seed); the
standard errors are those of Gaussian samples: SE(mean) = s / sqrt(N),
SE(sample std) = s / sqrt(2 (N - 1)).
"""
from __future__ import annotations

import math

import pytest
import torch

from sgm_inverse.sde import SDES, SubVPSDE, VESDE, VPSDE, sde_from_config

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
Z = 5.0  # z-score bound of every Monte-Carlo check in this file

SDE_FACTORIES = {
    "VE": lambda: VESDE(sigma_min=0.01, sigma_max=50.0),
    "VP": lambda: VPSDE(beta_min=0.1, beta_max=20.0),
    "subVP": lambda: SubVPSDE(beta_min=0.1, beta_max=20.0),
}


def tvec(*ts):
    return torch.tensor(ts, dtype=F64)


# --------------------------------------------------------------------------- closed forms
def closed_form(name: str, t: float) -> tuple[float, float]:
    """(alpha(t), std(t)) written directly from docs/methods.md (Song et al. 2021), independent of the library."""
    if name == "VE":
        return 1.0, 0.01 * (50.0 / 0.01) ** t
    bmin, bmax = 0.1, 20.0
    alpha = math.exp(-0.25 * t ** 2 * (bmax - bmin) - 0.5 * t * bmin)
    integral = 0.5 * t ** 2 * (bmax - bmin) + t * bmin          # int_0^t beta(s) ds
    if name == "VP":
        return alpha, math.sqrt(1.0 - math.exp(-integral))
    return alpha, 1.0 - math.exp(-integral)                       # sub-VP: no square root


def closed_form_sde(name: str, t: float) -> tuple[float, float]:
    """(drift coefficient a(t) with f = a(t) x, diffusion g(t)) from Song et al. 2021."""
    if name == "VE":
        return 0.0, 0.01 * (50.0 / 0.01) ** t * math.sqrt(2 * math.log(50.0 / 0.01))
    beta = 0.1 + t * (20.0 - 0.1)
    if name == "VP":
        return -0.5 * beta, math.sqrt(beta)
    integral = 0.5 * t ** 2 * (20.0 - 0.1) + t * 0.1
    return -0.5 * beta, math.sqrt(beta * (1 - math.exp(-2 * integral)))


@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_marginal_prob_matches_closed_form(name):
    sde = SDE_FACTORIES[name]()
    ts = [0.0, 1e-3, 0.1, 0.37, 0.5, 0.9, 1.0]
    x0 = torch.linspace(-2, 3, len(ts), dtype=F64)[:, None].expand(len(ts), 3).contiguous()
    mean, std = sde.marginal_prob(x0, tvec(*ts))
    assert mean.shape == x0.shape and std.shape == (len(ts),)
    assert mean.dtype == F64 and std.dtype == F64
    for i, t in enumerate(ts):
        alpha, s = closed_form(name, t)
        torch.testing.assert_close(mean[i], alpha * x0[i], rtol=1e-12, atol=1e-14)
        assert std[i].item() == pytest.approx(s, rel=1e-12, abs=1e-15), (name, t)


@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_sde_coefficients_match_closed_form(name):
    sde = SDE_FACTORIES[name]()
    ts = [1e-3, 0.2, 0.5, 1.0]
    x = torch.randn(len(ts), 2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    drift, g = sde.sde(x, tvec(*ts))
    assert drift.shape == x.shape and g.shape == (len(ts),)
    for i, t in enumerate(ts):
        a, gg = closed_form_sde(name, t)
        torch.testing.assert_close(drift[i], a * x[i], rtol=1e-12, atol=1e-14)
        assert g[i].item() == pytest.approx(gg, rel=1e-12)


def test_time_range_constants():
    assert VESDE().T == 1.0 and VPSDE().T == 1.0 and SubVPSDE().T == 1.0
    assert VESDE().eps == pytest.approx(1e-5)
    assert VPSDE().eps == pytest.approx(1e-3) and SubVPSDE().eps == pytest.approx(1e-3)


# --------------------------------------------------------------- moment ODEs (deterministic)
@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_moment_odes_by_finite_differences(name):
    """For dx = a(t) x dt + g(t) dw the kernel moments obey  d alpha/dt = a alpha,
    d var/dt = 2 a var + g^2  (var = std^2; for sub-VP: d var/dt = -beta var + g^2, the x0 = 0 process).
    Central differences with h = 1e-5 in float64 have relative error ~h^2 + 1e-16/h ~ 1e-10."""
    sde = SDE_FACTORIES[name]()
    h = 1e-5
    for t in [0.01, 0.1, 0.3, 0.6, 0.95]:
        tt = tvec(t - h, t, t + h)
        alpha, std = sde.scale_std(tt)
        var = std ** 2
        drift, g = sde.sde(torch.ones(3, 1, dtype=F64), tt)
        a = drift[1, 0]
        dalpha = (alpha[2] - alpha[0]) / (2 * h)
        dvar = (var[2] - var[0]) / (2 * h)
        assert dalpha.item() == pytest.approx((a * alpha[1]).item(), rel=1e-6, abs=1e-12), (name, t)
        assert dvar.item() == pytest.approx((2 * a * var[1] + g[1] ** 2).item(), rel=1e-6), (name, t)


def test_subvp_g2_relation_and_variance_below_vp():
    sde, vp = SubVPSDE(0.1, 20.0), VPSDE(0.1, 20.0)
    t = torch.linspace(0.01, 1.0, 50, dtype=F64)
    beta = 0.1 + t * 19.9
    integral = 0.1 * t + 0.5 * 19.9 * t ** 2
    _, g = sde.sde(torch.zeros(50, 1, dtype=F64), t)
    torch.testing.assert_close(g ** 2, beta * (1 - torch.exp(-2 * integral)), rtol=1e-12, atol=0)
    # sub-VP's std is bounded by VP's (its name): (1 - e^-B) <= sqrt(1 - e^-B).
    assert torch.all(sde.scale_std(t)[1] <= vp.scale_std(t)[1])


# ------------------------------------------------------------------- forward simulation
@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_euler_maruyama_simulation_matches_marginals(name):
    """20k paths, 1000 Euler-Maruyama steps (coefficients at mid-step times) from x0 ~ N(1.5, 0.5^2).

    Truth: x_t ~ N(alpha m0, alpha^2 s0^2 + std^2). The EM time-discretisation bias of the
    variance is O(dt * int beta^2) < 0.2% here, i.e. < 0.3 SE, so 5 SE bounds are fair.
    VE convention (Song et al.): marginal std(0) = sigma_min, so paths start at x0 + sigma_min z.
    """
    sde = SDE_FACTORIES[name]()
    n, steps, m0, s0 = 20000, 1000, 1.5, 0.5
    gen = torch.Generator().manual_seed(1234)
    x = m0 + s0 * torch.randn(n, 1, generator=gen, dtype=F64)
    x = x + sde.scale_std(tvec(0.0))[1] * torch.randn(n, 1, generator=gen, dtype=F64)
    dt = 1.0 / steps
    checks = {100: 0.1, 300: 0.3, 600: 0.6, 1000: 1.0}
    for k in range(steps):
        tm = torch.full((n,), (k + 0.5) * dt, dtype=F64)
        drift, g = sde.sde(x, tm)
        x = x + drift * dt + g[:, None] * math.sqrt(dt) * torch.randn(n, 1, generator=gen, dtype=F64)
        if k + 1 in checks:
            t = checks[k + 1]
            alpha, std = closed_form(name, t)
            mean_true = alpha * m0
            sd_true = math.sqrt(alpha ** 2 * s0 ** 2 + std ** 2)
            mean_lib, std_lib = sde.marginal_prob(torch.full((1, 1), m0, dtype=F64), tvec(t))
            sd_lib = math.sqrt(alpha ** 2 * s0 ** 2 + std_lib.item() ** 2)
            assert mean_lib.item() == pytest.approx(mean_true, rel=1e-12, abs=1e-15)
            assert sd_lib == pytest.approx(sd_true, rel=1e-12)
            m_hat, s_hat = x.mean().item(), x.std().item()
            assert abs(m_hat - mean_lib.item()) < Z * sd_lib / math.sqrt(n), (name, t, m_hat, mean_lib.item())
            assert abs(s_hat - sd_lib) < Z * sd_lib / math.sqrt(2 * (n - 1)), (name, t, s_hat, sd_lib)


@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_discretize_forward_chain_variance(name):
    """The discrete chain x_{t_i} = x_{t_{i-1}} + f_i + G_i z built from `discretize` has, starting
    from x0 = 0, variance v_i = (1 + f_i/x)^2 v_{i-1} + G_i^2 (deterministic recursion). It must
    reproduce std(t)^2 of the continuous SDE: exactly for VE (telescoping sigma_i^2 - sigma_{i-1}^2),
    to O(dt) for VP's DDPM chain and sub-VP's Euler step (dt = 1e-3: relative error < 2%)."""
    sde = SDE_FACTORIES[name]()
    steps = 1000
    dt = 1.0 / steps
    v = 0.0
    one = torch.ones(1, 1, dtype=F64)
    for i in range(1, steps + 1):
        t = tvec(i * dt)
        f, G = sde.discretize(one, t, dt)
        assert G.shape == (1,)
        v = (1 + f.item()) ** 2 * v + G.item() ** 2
        if i in (100, 500, 1000):
            std = sde.scale_std(t)[1].item()
            if name == "VE":
                assert v == pytest.approx(std ** 2, rel=1e-10)
            else:
                assert v == pytest.approx(std ** 2, rel=2e-2, abs=1e-6), (name, i * dt, v, std ** 2)


# ------------------------------------------------------------------------------- prior
@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_prior_sampling_statistics(name):
    sde = SDE_FACTORIES[name]()
    alpha_T, std_T = closed_form(name, 1.0)
    assert sde.prior_std() == pytest.approx(std_T, rel=1e-12)
    assert sde.prior_std() == pytest.approx(sde.marginal_prob(torch.zeros(1, 1, dtype=F64), tvec(1.0))[1].item(),
                                            rel=1e-12)
    shape = (50000, 4)
    z = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(7), dtype=F64)
    assert z.shape == shape and z.dtype == F64
    n = z.numel()
    assert abs(z.mean().item()) < Z * std_T / math.sqrt(n)
    assert abs(z.std().item() / std_T - 1) < Z / math.sqrt(2 * (n - 1))
    # Per-coordinate means too (catches a shared offset per column).
    assert torch.all(z.mean(0).abs() < Z * std_T / math.sqrt(shape[0]))


def test_prior_sampling_generator_dtype_device():
    sde = VESDE()
    a = sde.prior_sampling((3, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    b = sde.prior_sampling((3, 1, 4, 4), generator=torch.Generator().manual_seed(3))
    c = sde.prior_sampling((3, 1, 4, 4), generator=torch.Generator().manual_seed(4))
    assert a.dtype == torch.float32 and a.shape == (3, 1, 4, 4) and a.device.type == "cpu"
    assert torch.equal(a, b) and not torch.equal(a, c)
    d = sde.prior_sampling((2, 3), device="cpu", dtype=F64)
    assert d.dtype == F64


# ------------------------------------------------------------------------------ reverse
def toy_score(x, t):
    # Any smooth function of (x, t) will do; depends on both so a mix-up shows.
    return -x / (1 + t[:, None]) + 0.3 * t[:, None]


@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_reverse_drift_and_probability_flow(name):
    sde = SDE_FACTORIES[name]()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=gen, dtype=F64)
    t = torch.rand(6, generator=gen, dtype=F64) * 0.98 + 0.01
    f, g = sde.sde(x, t)
    s = toy_score(x, t)
    drift, diff = sde.reverse(toy_score).sde(x, t)
    torch.testing.assert_close(drift, f - g[:, None] ** 2 * s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(diff, g, rtol=0, atol=0)
    drift_pf, diff_pf = sde.reverse(toy_score, probability_flow=True).sde(x, t)
    torch.testing.assert_close(drift_pf, f - 0.5 * g[:, None] ** 2 * s, rtol=1e-12, atol=1e-12)
    assert torch.all(diff_pf == 0)

    dt = 0.01
    fi, Gi = sde.discretize(x, t, dt)
    frev, Grev = sde.reverse(toy_score).discretize(x, t, dt)
    torch.testing.assert_close(frev, fi - Gi[:, None] ** 2 * s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Grev, Gi, rtol=0, atol=0)
    frev_pf, Grev_pf = sde.reverse(toy_score, probability_flow=True).discretize(x, t, dt)
    torch.testing.assert_close(frev_pf, fi - 0.5 * Gi[:, None] ** 2 * s, rtol=1e-12, atol=1e-12)
    assert torch.all(Grev_pf == 0)


def test_ve_reverse_diffusion_step_coefficients():
    """VE discretisation: f_i = 0, G_i^2 = sigma(t)^2 - sigma(t - dt)^2 (Song et al., reverse diffusion)."""
    sde = VESDE(0.01, 50.0)
    t, dt = tvec(0.5, 0.8), 0.01
    f, G = sde.discretize(torch.ones(2, 1, dtype=F64), t, dt)
    sig = lambda u: 0.01 * (50.0 / 0.01) ** u  # noqa: E731
    assert torch.all(f == 0)
    for i, ti in enumerate([0.5, 0.8]):
        assert G[i].item() ** 2 == pytest.approx(sig(ti) ** 2 - sig(ti - dt) ** 2, rel=1e-10)


def test_vp_discretize_is_ddpm_chain():
    """VP: x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z with beta_i = beta(t) dt."""
    sde = VPSDE(0.1, 20.0)
    t, dt = tvec(0.3, 0.9), 0.002
    x = torch.tensor([[2.0], [-1.0]], dtype=F64)
    f, G = sde.discretize(x, t, dt)
    beta_i = (0.1 + t * 19.9) * dt
    torch.testing.assert_close(x + f, torch.sqrt(1 - beta_i)[:, None] * x, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(G, beta_i.sqrt(), rtol=1e-12, atol=0)
    # Langevin alpha_i = 1 - beta_i for VP, 1 for VE.
    torch.testing.assert_close(sde.corrector_alpha(t, dt), 1 - beta_i, rtol=1e-12, atol=0)
    torch.testing.assert_close(VESDE().corrector_alpha(t, dt), torch.ones(2, dtype=F64))


# ------------------------------------------------------------------- config / validation
@pytest.mark.parametrize("name", SDE_FACTORIES)
def test_config_round_trip(name):
    sde = SDE_FACTORIES[name]()
    cfg = sde.config()
    assert cfg["type"] in SDES
    clone = sde_from_config(cfg)
    assert type(clone) is type(sde) and clone.config() == cfg
    t = tvec(0.3, 0.7)
    torch.testing.assert_close(clone.scale_std(t), sde.scale_std(t), rtol=0, atol=0)


def test_sde_from_config_unknown_type():
    with pytest.raises(ValueError, match="unknown SDE type"):
        sde_from_config({"type": "EDMSDE"})


@pytest.mark.parametrize("args", [(0.0, 1.0), (-0.1, 1.0), (2.0, 1.0), (1.0, 1.0), (float("nan"), 1.0),
                                  (0.01, float("nan"))])
def test_vesde_bad_args(args):
    with pytest.raises(ValueError):
        VESDE(*args)


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE])
@pytest.mark.parametrize("args", [(-0.1, 20.0), (20.0, 0.1), (5.0, 5.0), (float("nan"), 20.0),
                                  (0.1, float("nan"))])
def test_beta_sde_bad_args(cls, args):
    with pytest.raises(ValueError):
        cls(*args)


@pytest.mark.parametrize("make", [lambda: VESDE(0.01, float("inf")), lambda: VPSDE(0.1, float("inf")),
                                  lambda: SubVPSDE(0.1, float("inf"))], ids=["VE", "VP", "subVP"])
def test_infinite_parameters_rejected(make):
    """An infinite sigma_max / beta_max passes `0 < a < b` but makes every std NaN or inf;
    it should be refused at construction like the other bad values."""
    with pytest.raises(ValueError):
        make()
