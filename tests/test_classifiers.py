"""Digit classifiers: shipped accuracy, checkpoint round trip, pickle refusal, guidance direction."""
from __future__ import annotations

import json

import pytest
import torch

from forward_models import ClassifierGuidance
from sgm_inverse.checkpoints import WEIGHTS_DIR
from sgm_inverse.classifiers import SHIPPED_CLASSIFIERS, build_classifier, load_classifier, save_classifier
from sgm_inverse.nets.classifier import CleanClassifier, NoiseConditionalClassifier
from sgm_inverse.sde import VESDE, VPSDE

from conftest import prepared

DIGITS32_SDE = {"type": "VESDE", "sigma_min": 0.01, "sigma_max": 25.0}


def _shipped(name):
    # Shipped weights are part of the package: missing ones are a failure, not a skip.
    assert (WEIGHTS_DIR / f"{name}.safetensors").exists(), \
        f"{name} weights missing; build them with python data_scripts/train_digit_classifiers.py"
    return load_classifier(name)


@pytest.fixture(scope="module")
def test_digits():
    from sgm_inverse.data import Digits
    d = prepared(lambda: Digits("test", with_labels=True), "digits")
    return d.images, d.labels


@pytest.fixture(scope="module")
def guidance_clf():
    return _shipped("digits32_classifier")


def _noisy(x, sigma, seed):
    g = torch.Generator().manual_seed(seed)
    return x + sigma * torch.randn(x.shape, generator=g)


def _t_of_sigma(sde, sigma, n):
    return torch.full((n,), torch.log(torch.tensor(sigma / sde.sigma_min)).item()
                      / torch.log(torch.tensor(sde.sigma_max / sde.sigma_min)).item())


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.1])
def test_guidance_classifier_accurate_at_small_noise(guidance_clf, test_digits, sigma, single_thread):
    x, y = test_digits
    sde = guidance_clf.sde
    assert sde.config() == DIGITS32_SDE  # same perturbation as the digits32 score model
    t = _t_of_sigma(sde, sigma, len(x))
    assert torch.allclose(sde.scale_std(t)[1], torch.full_like(t, sigma), rtol=1e-4)
    with torch.no_grad():
        acc = (guidance_clf(_noisy(x, sigma, 0), t).argmax(-1) == y).float().mean().item()
    assert acc > 0.95, f"accuracy {acc:.3f} on held-out digits at sigma={sigma}"


def test_guidance_classifier_degrades_to_chance_at_prior(guidance_clf, test_digits, single_thread):
    # At sigma_max = 25 the digits are invisible: the classifier must not be confident.
    x, _ = test_digits
    t = torch.ones(len(x))
    with torch.no_grad():
        p = torch.softmax(guidance_clf(_noisy(x, 25.0, 1), t), -1)
    assert p.max(-1).values.mean() < 0.5


def test_judge_clean_accuracy(test_digits, single_thread):
    judge = _shipped("digits32_judge")
    x, y = test_digits
    assert not hasattr(judge, "sde")
    with torch.no_grad():
        acc = (judge(x).argmax(-1) == y).float().mean().item()
    assert acc > 0.97, f"judge accuracy {acc:.3f} on clean held-out digits"


@pytest.mark.parametrize("name", sorted(SHIPPED_CLASSIFIERS))
def test_shipped_files_small_and_described(name):
    weights = WEIGHTS_DIR / f"{name}.safetensors"
    _shipped(name)
    assert weights.stat().st_size < 3 * 2 ** 20
    cfg = json.loads(weights.with_suffix(".json").read_text())
    assert cfg["image_shape"] == [1, 32, 32] and cfg["num_classes"] == 10
    assert cfg["data"]["split"] == "train"


def _small_models():
    torch.manual_seed(0)
    return [NoiseConditionalClassifier(base_channels=8, channel_mult=(1, 2), image_size=16, num_classes=3,
                                       sde=VESDE(0.01, 25.0)),
            CleanClassifier(base_channels=8, image_size=16, num_classes=3)]


@pytest.mark.parametrize("as_dir", [False, True])
def test_save_load_round_trip(tmp_path, as_dir):
    x, t = torch.rand(4, 1, 16, 16), torch.rand(4)
    for i, model in enumerate(_small_models()):
        model.eval()
        path = tmp_path / (f"m{i}" if as_dir else f"m{i}.safetensors")
        save_classifier(model, path, note="round trip")
        loaded = load_classifier(path)
        assert type(loaded) is type(model) and loaded.config == model.config
        with torch.no_grad():
            if isinstance(model, NoiseConditionalClassifier):
                assert loaded.sde.config() == model.sde.config()
                assert torch.equal(loaded(x, t), model(x, t))
            else:
                assert torch.equal(loaded(x), model(x))
        assert not any(p.requires_grad for p in loaded.parameters())
        assert not list(tmp_path.glob("**/*.tmp"))  # atomic writes leave no temporaries


def test_pickle_refused(tmp_path):
    model = _small_models()[1]
    pt = tmp_path / "judge.pt"
    torch.save(model.state_dict(), pt)
    with pytest.raises(ValueError, match="pickle"):
        load_classifier(pt)
    disguised = tmp_path / "judge.safetensors"  # a torch.save zip under a safetensors name
    disguised.write_bytes(pt.read_bytes())
    disguised.with_suffix(".json").write_text("{}")
    with pytest.raises(ValueError, match="pickle"):
        load_classifier(disguised)


def test_unknown_name_and_bad_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits32_classifier"):
        load_classifier("no_such_classifier")
    with pytest.raises(ValueError, match="format"):
        build_classifier({"format": "something-else"})
    with pytest.raises(ValueError, match="unknown classifier type"):
        build_classifier({"format": "sgm-inverse-classifier/1", "network": {"type": "Pickled"}})


def test_noise_conditioning_finite_for_any_sde():
    # t = 0 has std = 0 for VP: t is clamped to eps, so c_noise = ln(sigma~)/4 stays finite.
    torch.manual_seed(0)
    for sde in (VESDE(0.01, 25.0), VPSDE()):
        clf = NoiseConditionalClassifier(base_channels=8, channel_mult=(1, 2), image_size=16, sde=sde).eval()
        x = torch.rand(3, 1, 16, 16)
        for t in (torch.zeros(3), torch.ones(3), torch.tensor(0.5)):
            out = clf(x, t)
            assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert clf.image_shape == (1, 16, 16) and clf.num_classes == 10


def test_guidance_gradient_finite_and_points_to_target(guidance_clf, test_digits, single_thread):
    x0, labels = test_digits
    # Ten digits, each steered towards the next class from a moderately noisy start.
    x0, labels = x0[:10], labels[:10]
    target = (labels + 1) % 10
    sigma = 0.5
    t = _t_of_sigma(guidance_clf.sde, sigma, len(x0))
    x = _noisy(x0, sigma, 2)
    guide = ClassifierGuidance(guidance_clf, scale=1.0)
    assert guide.time_dependent and guide.image_shape == (1, 32, 32) and guide.num_classes == 10

    def logp_and_grad(x):
        x = x.detach().requires_grad_(True)
        ll = guide.log_likelihood(x, target, t)
        (grad,) = torch.autograd.grad(ll.sum(), x)
        return ll.detach(), grad

    ll0, grad = logp_and_grad(x)
    assert ll0.shape == (10,) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    for _ in range(10):  # normalised gradient ascent, step 0.05 * sqrt(D) * sigma per iteration
        _, grad = logp_and_grad(x)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x = x + 0.05 * sigma * 32 * grad / norm
    ll1, _ = logp_and_grad(x)
    assert (ll1 > ll0).all(), (ll0, ll1)
    assert ll1.exp().mean() > ll0.exp().mean() + 0.3  # target probability clearly raised
