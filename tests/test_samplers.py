"""Samplers against exact targets, plus the single-step formulas and the loop's bookkeeping.

Targets (float64, exact p_t scores so only the sampler is under test):
  (a) a correlated 16-D Gaussian N(mu, Sigma): random rotation, eigenvalues log-spaced in [0.1, 1]
      (condition number 10), nonzero mean;
  (b) a 2-D mixture of three well separated isotropic Gaussians with weights 0.2 / 0.5 / 0.3.

Statistics and tolerances (N samples, D = 16, W = Sigma^{-1/2} whitening):
  * mean:  N ||W (m_hat - mu)||^2 ~ chi^2_D for exact samples; bound 52.2 = its 1 - 1e-5 quantile.
  * isotropic covariance bias  b = tr(W S W)/D - 1 has SE sqrt(2 / (N D)) (D independent chi^2_{N-1}/(N-1)
    diagonals); bound |b| <= allow + 5 SE, where `allow` is the known systematic error of the scheme:
      - first-order predictors have relative variance bias ~ C / steps (measured on this target:
        Euler-Maruyama |C| <= 4, reverse diffusion C ~ 9, ancestral C ~ -13; it halves when steps
        double, see test_ancestral_bias_is_first_order); allowed C = 6 / 12 / 16;
      - Langevin-type correctors (unadjusted Langevin) inflate the variance by ~ snr^2 (the stationary
        variance of x + eps s + sqrt(2 eps) z with eps = 2 snr^2 v is v / (1 - snr^2)); allowed snr^2;
      - the adaptive ODE solver is high order: allow 1 %; Heun with 100 steps: 2 %.
  * anisotropic part  R = N ||W S W - (1 + b) I||_F^2 has mean ~ D (D + 1) = 272 and sd 2 sqrt(D (D + 1)) = 33
    for exact samples; bound: sqrt(R) <= sqrt(272 + 5 * 33) + sqrt(N D) a (triangle inequality), with
    a = snr^2 for Langevin-type correctors (their inflation ~ snr^2 H / v_i depends on the direction's
    variance v_i, H the harmonic mean: RMS spread ~ snr^2 on this spectrum) and a = 0 otherwise.
  * mixture weights: binomial SE sqrt(w (1 - w) / N); bound 5 SE (N = 5000: <= 3.5 points).
"""
from __future__ import annotations

import math

import pytest
import torch

from sgm_inverse import GaussianMixtureScore, GaussianScore, SubVPSDE, VESDE, VPSDE
from sgm_inverse.samplers import Conditioner, ode_sample, pc_sample
from sgm_inverse.samplers.correctors import ald, langevin
from sgm_inverse.samplers.predictors import ancestral, euler_maruyama, reverse_diffusion
from sgm_inverse.utils import time_vector

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64
D = 16
CHI2_16_TAIL = 52.24   # scipy.stats.chi2.ppf(1 - 1e-5, 16)

SDES = {"VE": lambda: VESDE(0.01, 100.0), "VP": lambda: VPSDE(0.1, 20.0), "subVP": lambda: SubVPSDE(0.1, 20.0)}
PREDICTORS = ["euler_maruyama", "reverse_diffusion", "ancestral"]
CORRECTORS = ["langevin", "ald", "none"]
FIRST_ORDER_C = {"euler_maruyama": 6.0, "reverse_diffusion": 12.0, "ancestral": 16.0}
SNR = 0.16


# ------------------------------------------------------------------------------ targets
def make_gaussian():
    g = torch.Generator().manual_seed(2024)
    q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=F64))
    lam = torch.logspace(-1, 0, D, dtype=F64)
    mu = 0.5 * torch.randn(D, generator=g, dtype=F64)
    return mu, q, lam


MU, Q, LAM = make_gaussian()
COV = Q @ torch.diag(LAM) @ Q.T
W = Q @ torch.diag(LAM ** -0.5) @ Q.T        # Sigma^{-1/2}


class EigenGaussianScore:
    """The same exact score as `GaussianScore`, via the eigendecomposition (a matmul, not a
    batched solve), so 10^4-sample runs stay cheap. Checked against GaussianScore below."""

    def __init__(self, sde):
        self.sde = sde

    def __call__(self, x, t):
        t = time_vector(t, x.shape[0], x)
        alpha, std = self.sde.scale_std(t)
        y = (x - alpha[:, None] * MU) @ Q
        return -(y / (alpha[:, None] ** 2 * LAM + std[:, None] ** 2)) @ Q.T


MIX_W = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
# Means chosen so the mixture mean is 0 (the N(0, sigma_max^2) prior then matches p_T to O(1/sigma_max^2)).
MIX_MU = torch.tensor([[-5.0, 0.0], [2.0, -2.0], [0.0, 10.0 / 3.0]], dtype=F64)
MIX_S = torch.tensor([0.3, 0.5, 0.4], dtype=F64)


def mixture_score(sde):
    return GaussianMixtureScore(sde, MIX_W, MIX_MU, MIX_S)


# --------------------------------------------------------------------------- statistics
def check_gaussian(x, allow, aniso, label):
    n = x.shape[0]
    assert x.shape == (n, D) and x.dtype == F64 and torch.isfinite(x).all(), label
    m = x.mean(0)
    chi2 = n * (W @ (m - MU)).pow(2).sum().item()
    sw = W @ torch.cov(x.T) @ W
    b = (torch.diagonal(sw).mean() - 1).item()
    se_b = math.sqrt(2 / (n * D))
    r = n * (sw - (1 + b) * torch.eye(D, dtype=F64)).pow(2).sum().item()
    rel_frob = ((torch.cov(x.T) - COV).norm() / COV.norm()).item()
    msg = f"{label}: mean chi2={chi2:.1f}, var bias={b:+.4f} (allowed {allow:.4f}+5*{se_b:.4f}), " \
          f"aniso R={r:.0f}, rel Frobenius cov error={rel_frob:.3f}"
    assert chi2 < CHI2_16_TAIL, msg
    assert abs(b) < allow + 5 * se_b, msg
    r_max = (math.sqrt(D * (D + 1) + 5 * 2 * math.sqrt(D * (D + 1))) + math.sqrt(n * D) * aniso) ** 2
    assert r < r_max, msg + f" (R bound {r_max:.0f})"


def check_mixture(x, allow, label):
    n = x.shape[0]
    assert x.shape == (n, 2) and torch.isfinite(x).all(), label
    k = torch.cdist(x, MIX_MU).argmin(1)
    for j in range(3):
        sel = x[k == j]
        w_hat, w = sel.shape[0] / n, MIX_W[j].item()
        se_w = math.sqrt(w * (1 - w) / n)
        # Within-component spread: pooled std over the 2 coordinates, SE ~ s / sqrt(2 * 2 n_j).
        s_hat, s = (sel - MIX_MU[j]).pow(2).mean().sqrt().item(), MIX_S[j].item()
        se_s = 1 / math.sqrt(4 * sel.shape[0])
        msg = f"{label}: component {j}: weight {w_hat:.3f} vs {w:.3f} (5 SE={5 * se_w:.3f}); " \
              f"std {s_hat:.3f} vs {s:.3f}"
        assert abs(w_hat - w) < 5 * se_w, msg
        assert abs(s_hat / s - 1) < allow / 2 + 5 * se_s, msg   # std bias = half the variance bias


def allowance(predictor, corrector, steps):
    return FIRST_ORDER_C[predictor] / steps + (SNR ** 2 if corrector != "none" else 0.0)


# --------------------------------------------------------------------- exact scores
@pytest.mark.parametrize("sde_name", SDES)
def test_gaussian_score_matches_autograd(sde_name):
    sde = SDES[sde_name]()
    score = GaussianScore(sde, MU, COV)
    gen = torch.Generator().manual_seed(0)
    for t in [sde.eps, 0.05, 0.3, 1.0]:
        x = 2 * torch.randn(5, D, generator=gen, dtype=F64)
        tt = torch.full((5,), t, dtype=F64)
        alpha, std = sde.scale_std(tt[:1])
        dist = torch.distributions.MultivariateNormal(alpha * MU, alpha ** 2 * COV + std ** 2 * torch.eye(D, dtype=F64))
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(dist.log_prob(xr).sum(), xr)
        torch.testing.assert_close(score(x, tt), grad, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(EigenGaussianScore(sde)(x, tt), grad, rtol=1e-9, atol=1e-9)
    # Image-shaped use: mean (1, 4, 4), x (B, 1, 4, 4); a scalar t is accepted.
    img = GaussianScore(sde, MU.reshape(1, 4, 4), COV)
    out = img(x.reshape(5, 1, 4, 4), 0.3)
    torch.testing.assert_close(out.reshape(5, D), score(x, torch.full((5,), 0.3, dtype=F64)))
    assert img(x.reshape(5, 1, 4, 4).float(), 0.3).dtype == torch.float32


@pytest.mark.parametrize("sde_name", SDES)
def test_mixture_score_matches_autograd(sde_name):
    sde = SDES[sde_name]()
    score = mixture_score(sde)
    gen = torch.Generator().manual_seed(1)
    for t in [sde.eps, 0.02, 0.2, 0.7, 1.0]:
        # Points near the modes, between them and far away (responsibilities saturate there).
        x = torch.cat([MIX_MU + 0.3 * torch.randn(3, 2, generator=gen, dtype=F64),
                       4 * torch.randn(6, 2, generator=gen, dtype=F64), torch.tensor([[40.0, -30.0]], dtype=F64)])
        tt = torch.full((x.shape[0],), t, dtype=F64)
        alpha, std = sde.scale_std(tt[:1])
        var = alpha ** 2 * MIX_S ** 2 + std ** 2                                   # (K,)
        xr = x.clone().requires_grad_(True)
        diff = xr[:, None, :] - alpha * MIX_MU[None]
        logp = torch.logsumexp(MIX_W.log() - 0.5 * diff.pow(2).sum(-1) / var - torch.log(2 * math.pi * var), dim=1)
        (grad,) = torch.autograd.grad(logp.sum(), xr)
        torch.testing.assert_close(score(x, tt), grad, rtol=1e-8, atol=1e-9)


# ----------------------------------------------------------------- single-step formulas
def toy_score(x, t):
    return -x / (0.5 + t[:, None]) + 0.2


def noise_check(noise, std, label):
    """noise = std * z with z ~ N(0, 1) iid: z-tests of its mean and std (5 SE)."""
    n = noise.numel()
    assert abs(noise.mean().item()) < 5 * std / math.sqrt(n), label
    assert abs(noise.std().item() / std - 1) < 5 / math.sqrt(2 * n), label


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("predictor", [euler_maruyama, reverse_diffusion, ancestral])
def test_predictor_step_formulas(sde_name, predictor):
    """x_mean and the noise std of one step, written from docs/methods.md (Song et al. 2021 / DDPM)."""
    sde = SDES[sde_name]()
    gen = torch.Generator().manual_seed(3)
    n, t0, dt = 20000, 0.5, 0.01
    x = torch.randn(n, 4, generator=gen, dtype=F64)
    t = torch.full((n,), t0, dtype=F64)
    s = toy_score(x, t)
    out, x_mean = predictor(sde, toy_score, x, t, dt, gen)
    f, g = sde.sde(x, t)
    alpha_t, std_t = (v.item() for v in sde.scale_std(torch.tensor([t0], dtype=F64)))
    alpha_s, std_s = (v.item() for v in sde.scale_std(torch.tensor([t0 - dt], dtype=F64)))
    beta_i = (0.1 + t0 * 19.9) * dt
    if predictor is euler_maruyama or (predictor is reverse_diffusion and sde_name == "subVP"):
        # sub-VP has no special discretisation: its reverse-diffusion step is Euler-Maruyama.
        mean, std = x - (f - g[:, None] ** 2 * s) * dt, g[0].item() * math.sqrt(dt)
    elif predictor is reverse_diffusion and sde_name == "VE":
        d = std_t ** 2 - std_s ** 2
        mean, std = x + d * s, math.sqrt(d)
    elif predictor is reverse_diffusion:   # VP
        mean, std = (2 - math.sqrt(1 - beta_i)) * x + beta_i * s, math.sqrt(beta_i)
    elif sde_name == "VE":                 # ancestral, Song et al.
        d = std_t ** 2 - std_s ** 2
        mean, std = x + d * s, math.sqrt(std_s ** 2 * d / std_t ** 2)
    else:                                  # ancestral = DDPM posterior q(x_s | x_t, x0_hat), abar = alpha^2
        abar_t, abar_s = alpha_t ** 2, alpha_s ** 2
        a_step = abar_t / abar_s
        b_step = std_t ** 2 - a_step * std_s ** 2       # VP: 1 - a_step
        x0 = (x + std_t ** 2 * s) / alpha_t
        mean = (alpha_s * b_step / std_t ** 2) * x0 + (math.sqrt(a_step) * std_s ** 2 / std_t ** 2) * x
        std = math.sqrt(b_step * std_s ** 2 / std_t ** 2)
    torch.testing.assert_close(x_mean, mean, rtol=1e-10, atol=1e-12)
    noise_check(out - x_mean, std, f"{sde_name} {predictor.__name__}")


@pytest.mark.parametrize("sde_name", ["VE", "VP"])
def test_langevin_step_formula(sde_name):
    """eps = 2 alpha (snr ||z|| / ||s||)^2 with batch-averaged norms, x <- x + eps s + sqrt(2 eps) z.

    eps is read off x_mean = x + eps s, z off (x - x_mean) / sqrt(2 eps); then the eps formula must hold
    exactly with that z, and z must be N(0, 1) (5-SE z-tests) -- which pins the sqrt(2 eps) factor."""
    sde = SDES[sde_name]()
    gen = torch.Generator().manual_seed(5)
    n, t0, dt, snr = 20000, 0.4, 0.002, 0.3
    x = torch.randn(n, 4, generator=gen, dtype=F64)
    t = torch.full((n,), t0, dtype=F64)
    s = toy_score(x, t)
    out, x_mean = langevin(sde, toy_score, x, t, dt, snr, gen)
    eps = ((x_mean - x) / s).mean().item()
    torch.testing.assert_close(x_mean, x + eps * s, rtol=1e-10, atol=1e-12)
    z = (out - x_mean) / math.sqrt(2 * eps)
    noise_check(z, 1.0, "langevin z")
    alpha = 1.0 if sde_name == "VE" else 1 - (0.1 + t0 * 19.9) * dt
    expected = 2 * alpha * (snr * z.norm(dim=1).mean() / s.norm(dim=1).mean()).item() ** 2
    assert eps == pytest.approx(expected, rel=1e-9)


def test_langevin_groups_average_norms_within_each_group():
    """groups: eps_i = 2 alpha (snr mean_{g(j) = g(i)} ||z_j|| / mean_{g(j) = g(i)} ||s_j||)^2, recomputed by hand."""
    sde = VPSDE(0.1, 20.0)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, D, generator=gen, dtype=F64) * torch.tensor([1, 1, 30, 30, 1, 1], dtype=F64)[:, None]
    groups = torch.tensor([0, 0, 1, 1, 2, 0])
    t, dt, snr = torch.full((6,), 0.3, dtype=F64), 0.004, 0.2
    out, x_mean = langevin(sde, toy_score, x, t, dt, snr, torch.Generator().manual_seed(1), groups=groups)
    z = torch.randn(6, D, generator=torch.Generator().manual_seed(1), dtype=F64)
    s = toy_score(x, t)
    alpha = 1 - (0.1 + 0.3 * 19.9) * dt
    for i in range(6):
        same = groups == groups[i]
        eps = 2 * alpha * (snr * z[same].norm(dim=1).mean() / s[same].norm(dim=1).mean()) ** 2
        torch.testing.assert_close(x_mean[i], x[i] + eps * s[i], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out[i], x_mean[i] + (2 * eps).sqrt() * z[i], rtol=1e-12, atol=1e-12)


def test_langevin_step_does_not_depend_on_other_groups():
    """One corrector step of sample 0 alone and next to a sample (another group) whose score is 10^4 times
    larger: the same result (the generator draws the same noise for sample 0: 16 values per sample fill whole
    blocks of torch's CPU normal sampler). With one group the step of sample 0 shrinks ~10^8-fold."""
    sde = VESDE(0.01, 10.0)
    x0 = torch.randn(1, D, generator=torch.Generator().manual_seed(0), dtype=F64)
    pair = torch.cat([x0, torch.full((1, D), 1e4, dtype=F64)])
    t1, t2 = torch.full((1,), 0.5, dtype=F64), torch.full((2,), 0.5, dtype=F64)
    z = torch.randn(2, D, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert torch.equal(z[:1], torch.randn(1, D, generator=torch.Generator().manual_seed(1), dtype=F64))
    alone, alone_mean = langevin(sde, toy_score, x0, t1, 0.01, SNR, torch.Generator().manual_seed(1))
    both, both_mean = langevin(sde, toy_score, pair, t2, 0.01, SNR, torch.Generator().manual_seed(1),
                               groups=torch.tensor([0, 1]))
    torch.testing.assert_close(both[:1], alone, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(both_mean[:1], alone_mean, rtol=1e-12, atol=1e-12)
    s = toy_score(x0, t1)
    eps = 2 * (SNR * z[0].norm() / s.norm()) ** 2                # VE: alpha = 1
    torch.testing.assert_close(alone_mean, x0 + eps * s, rtol=1e-12, atol=1e-12)
    assert (alone_mean - x0).abs().max() > 1e-3                  # the step is not negligible
    _, pooled_mean = langevin(sde, toy_score, pair, t2, 0.01, SNR, torch.Generator().manual_seed(1))
    assert (pooled_mean[:1] - x0).abs().max() < 1e-6 * (alone_mean - x0).abs().max()


@pytest.mark.parametrize("sde_name", ["VE", "VP"])
def test_ald_step_formula(sde_name):
    """Annealed Langevin (NCSN): eps = 2 alpha (snr std(t))^2, noise sqrt(2 eps) z."""
    sde = SDES[sde_name]()
    gen = torch.Generator().manual_seed(6)
    n, t0, dt, snr = 20000, 0.4, 0.002, 0.3
    x = torch.randn(n, 4, generator=gen, dtype=F64)
    t = torch.full((n,), t0, dtype=F64)
    s = toy_score(x, t)
    out, x_mean = ald(sde, toy_score, x, t, dt, snr, gen)
    std_t = sde.scale_std(torch.tensor([t0], dtype=F64))[1].item()
    alpha = 1.0 if sde_name == "VE" else 1 - (0.1 + t0 * 19.9) * dt
    eps = 2 * alpha * (snr * std_t) ** 2
    torch.testing.assert_close(x_mean, x + eps * s, rtol=1e-10, atol=1e-12)
    noise_check(out - x_mean, math.sqrt(2 * eps), "ald noise")


# ------------------------------------------------------------- end to end: Gaussian
N_GAUSS, STEPS = 10000, 300
GAUSS_CASES = [("VE", p, c) for p in PREDICTORS for c in CORRECTORS] + [
    ("VP", "ancestral", "langevin"), ("VP", "reverse_diffusion", "ald"),
    ("subVP", "euler_maruyama", "langevin"), ("subVP", "ancestral", "none")]


@pytest.mark.parametrize("sde_name,predictor,corrector", GAUSS_CASES)
def test_pc_sampler_gaussian(sde_name, predictor, corrector):
    sde = SDES[sde_name]()
    info = {}
    x = pc_sample(EigenGaussianScore(sde), (N_GAUSS, D), steps=STEPS, predictor=predictor, corrector=corrector,
                  snr=SNR, generator=torch.Generator().manual_seed(11), progress=False, dtype=F64, info=info)
    assert info["nfe"] == STEPS * (1 + (corrector != "none")) + 1
    check_gaussian(x, allowance(predictor, corrector, STEPS), SNR ** 2 if corrector != "none" else 0.0,
                   f"{sde_name}/{predictor}/{corrector}")


@pytest.mark.parametrize("sde_name", SDES)
@pytest.mark.parametrize("steps", [None, 100], ids=["rk45", "heun100"])
def test_ode_sampler_gaussian(sde_name, steps):
    """Probability-flow ODE. The map is deterministic, so the prior mismatch p_T != N(0, std(T)^2)
    is carried to t = eps instead of being forgotten: for VE the whitened mean offset is ~|mu| / sigma_max
    = 0.02 (adds ~4 to the chi^2 of 16); sigma_max = 100 keeps that negligible."""
    sde = SDES[sde_name]()
    info = {}
    x = ode_sample(EigenGaussianScore(sde), (N_GAUSS, D), steps=steps, rtol=1e-5, atol=1e-5,
                   generator=torch.Generator().manual_seed(12), dtype=F64, info=info)
    if steps is None:
        assert 10 < info["nfe"] < 1000
    else:
        assert info["nfe"] == 2 * steps + 1
    check_gaussian(x, 0.01 if steps is None else 0.02, 0.0, f"{sde_name}/ode/{steps}")


def test_ancestral_bias_is_first_order():
    """Justifies the C / steps allowance: VP ancestral sampling's variance bias (~ -13/steps) must shrink
    at least 2x when the step count goes 150 -> 600 (first order: 4x). SE of b at N=5000 is 0.005."""
    sde = VPSDE(0.1, 20.0)
    biases = []
    for steps in (150, 600):
        x = pc_sample(EigenGaussianScore(sde), (5000, D), steps=steps, predictor="ancestral", corrector="none",
                      generator=torch.Generator().manual_seed(13), progress=False, dtype=F64)
        biases.append((torch.diagonal(W @ torch.cov(x.T) @ W).mean() - 1).item())
    assert abs(biases[0]) > 0.04, biases           # a real, measurable first-order bias at 150 steps ...
    assert abs(biases[1]) < abs(biases[0]) / 2, biases   # ... that shrinks with the step count


# -------------------------------------------------------------- end to end: mixture
N_MIX = 5000
MIX_CASES = [("VE", p, c) for p in PREDICTORS for c in CORRECTORS] + [
    ("VP", "ancestral", "langevin"), ("subVP", "reverse_diffusion", "none")]


@pytest.mark.parametrize("sde_name,predictor,corrector", MIX_CASES)
def test_pc_sampler_mixture(sde_name, predictor, corrector):
    sde = VESDE(0.01, 50.0) if sde_name == "VE" else SDES[sde_name]()
    x = pc_sample(mixture_score(sde), (N_MIX, 2), steps=STEPS, predictor=predictor, corrector=corrector, snr=SNR,
                  generator=torch.Generator().manual_seed(21), progress=False, dtype=F64)
    check_mixture(x, allowance(predictor, corrector, STEPS), f"{sde_name}/{predictor}/{corrector}")


@pytest.mark.parametrize("steps", [None, 100], ids=["rk45", "heun100"])
@pytest.mark.parametrize("sde_name", ["VE", "VP"])
def test_ode_sampler_mixture(sde_name, steps):
    sde = VESDE(0.01, 50.0) if sde_name == "VE" else SDES[sde_name]()
    x = ode_sample(mixture_score(sde), (N_MIX, 2), steps=steps, generator=torch.Generator().manual_seed(22), dtype=F64)
    check_mixture(x, 0.02, f"{sde_name}/ode/{steps}")


# ------------------------------------------------------------------ loop bookkeeping
class CountingScore:
    """An independent NFE counter around the library's exact score."""

    def __init__(self, inner):
        self.inner, self.sde, self.calls = inner, inner.sde, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.inner(x, t)


def small_score(sde=None):
    return CountingScore(GaussianScore(sde or VESDE(0.01, 100.0), MU, COV))


@pytest.mark.parametrize("corrector,corrector_steps", [("langevin", 1), ("ald", 2), ("none", 3)])
@pytest.mark.parametrize("denoise", [True, False])
def test_pc_nfe(corrector, corrector_steps, denoise):
    score, info, steps = small_score(), {}, 7
    pc_sample(score, (4, D), steps=steps, corrector=corrector, corrector_steps=corrector_steps, denoise=denoise,
              generator=torch.Generator().manual_seed(0), progress=False, dtype=F64, info=info)
    per_step = 1 + (corrector_steps if corrector != "none" else 0)
    assert info["nfe"] == score.calls == steps * per_step + int(denoise)


def test_ode_nfe():
    for steps in (5, 12):
        score, info = small_score(), {}
        ode_sample(score, (4, D), steps=steps, generator=torch.Generator().manual_seed(0), dtype=F64, info=info)
        assert info["nfe"] == score.calls == 2 * steps + 1
    score, info = small_score(), {}
    ode_sample(score, (4, D), generator=torch.Generator().manual_seed(0), dtype=F64, info=info)
    assert info["nfe"] == score.calls > 7    # adaptive: at least one 6-stage step + FSAL + denoise


@pytest.mark.parametrize("predictor", PREDICTORS)
def test_pc_same_seed_bit_identical(predictor):
    kw = dict(steps=20, predictor=predictor, corrector="langevin", progress=False)
    a = pc_sample(small_score(), (6, D), generator=torch.Generator().manual_seed(42), **kw)
    b = pc_sample(small_score(), (6, D), generator=torch.Generator().manual_seed(42), **kw)
    c = pc_sample(small_score(), (6, D), generator=torch.Generator().manual_seed(43), **kw)
    assert a.dtype == torch.float32 and a.shape == (6, D)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ode_same_seed_bit_identical():
    for steps in (None, 10):
        a = ode_sample(small_score(), (6, D), steps=steps, generator=torch.Generator().manual_seed(42), dtype=F64)
        b = ode_sample(small_score(), (6, D), steps=steps, generator=torch.Generator().manual_seed(42), dtype=F64)
        assert torch.equal(a, b)


def test_callback_sees_every_step():
    seen = []
    steps, sde = 9, VPSDE()

    def cb(i, t, x, x_mean):
        seen.append((i, t.clone(), x.shape, x_mean.shape))

    pc_sample(small_score(sde), (3, D), steps=steps, generator=torch.Generator().manual_seed(0), progress=False,
              callback=cb, dtype=F64)
    assert [s[0] for s in seen] == list(range(steps))
    times = torch.stack([s[1] for s in seen])
    assert times.shape == (steps, 3)
    grid = torch.linspace(sde.T, sde.eps, steps + 1, dtype=F64)
    torch.testing.assert_close(times[:, 0], grid[:-1])          # t = T first, decreasing, never below eps
    assert all(s[2] == (3, D) and s[3] == (3, D) for s in seen)


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="predictor"):
        pc_sample(small_score(), (2, D), steps=2, predictor="heun", progress=False)
    with pytest.raises(ValueError, match="corrector"):
        pc_sample(small_score(), (2, D), steps=2, corrector="mala", progress=False)
    with pytest.raises(ValueError):
        pc_sample(small_score(), (2, D), steps=0, progress=False)


def test_callable_predictor_and_corrector_accepted():
    calls = {"p": 0, "c": 0}

    def my_predictor(sde, score_fn, x, t, dt, generator=None):
        calls["p"] += 1
        return reverse_diffusion(sde, score_fn, x, t, dt, generator)

    def my_corrector(sde, score_fn, x, t, dt, snr, generator=None):
        calls["c"] += 1
        return langevin(sde, score_fn, x, t, dt, snr, generator)

    kw = dict(steps=6, progress=False, dtype=F64)
    a = pc_sample(small_score(), (3, D), predictor=my_predictor, corrector=my_corrector,
                  generator=torch.Generator().manual_seed(1), **kw)
    b = pc_sample(small_score(), (3, D), predictor="reverse_diffusion", corrector="langevin",
                  generator=torch.Generator().manual_seed(1), **kw)
    assert calls == {"p": 6, "c": 6}
    assert torch.equal(a, b)


class CountingConditioner(Conditioner):
    def __init__(self):
        self.counts = {"score": 0, "before": 0, "after": 0, "final": 0}
        self.before_t = []

    def score(self, score_fn):
        self.counts["score"] += 1
        return score_fn

    def before(self, x, t, generator=None):
        self.counts["before"] += 1
        self.before_t.append(float(t[0]))
        return x

    def after(self, x, t, generator=None):
        self.counts["after"] += 1
        return x

    def final(self, x, generator=None):
        self.counts["final"] += 1
        return x


@pytest.mark.parametrize("corrector,corrector_steps", [("langevin", 2), ("none", 1)])
def test_conditioner_hook_counts(corrector, corrector_steps):
    steps, cond = 5, CountingConditioner()
    pc_sample(small_score(), (3, D), steps=steps, corrector=corrector, corrector_steps=corrector_steps,
              conditioner=cond, generator=torch.Generator().manual_seed(0), progress=False, dtype=F64)
    updates = steps * (1 + (corrector_steps if corrector != "none" else 0))
    assert cond.counts == {"score": 1, "before": updates, "after": updates, "final": 1}
    assert cond.before_t == sorted(cond.before_t, reverse=True)    # time only goes down


def test_conditioner_output_is_used():
    """A conditioner that pins coordinate 0 to 3.0 after every update must be obeyed by the loop."""

    class Pin(Conditioner):
        def after(self, x, t, generator=None):
            x = x.clone()
            x[:, 0] = 3.0
            return x

        def final(self, x, generator=None):
            x = x.clone()
            x[:, 0] = 3.0
            return x

    x = pc_sample(small_score(), (4, D), steps=4, conditioner=Pin(), generator=torch.Generator().manual_seed(0),
                  progress=False, dtype=F64)
    assert torch.all(x[:, 0] == 3.0)


def test_image_shaped_sampling():
    """Analytic scores work on (B, C, H, W) tensors like a trained model does."""
    score = GaussianScore(VESDE(0.01, 100.0), MU.reshape(1, 4, 4), COV)
    x = pc_sample(score, (3, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0), progress=False)
    y = ode_sample(score, (3, 1, 4, 4), steps=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 1, 4, 4) and torch.isfinite(x).all() and torch.isfinite(y).all()
