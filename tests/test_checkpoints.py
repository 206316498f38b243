"""Checkpoints: safetensors + JSON round trip, pickles refused (and never executed), clear errors."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from sgm_inverse import VESDE, VPSDE, ScoreModel, load_score_model, save_score_model
from sgm_inverse.checkpoints import SHIPPED, WEIGHTS_DIR
from sgm_inverse.nets import UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model(sde=None, embedding="fourier", seed=0):
    torch.manual_seed(seed)
    net = UNet(UNetConfig(in_channels=2, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                          attn_resolutions=(4,), image_size=8, embedding=embedding))
    with torch.no_grad():   # the zero-initialised layers would make every output 0: perturb all weights
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return ScoreModel(net, sde or VPSDE(0.1, 20.0), sigma_data=0.6).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 2, 8, 8, generator=g), torch.tensor([0.01, 0.4, 0.9])


@pytest.mark.parametrize("layout", ["dir", "file"])
@pytest.mark.parametrize("sde,embedding", [(VPSDE(0.1, 20.0), "fourier"), (VESDE(0.02, 30.0), "sinusoidal")])
def test_round_trip_identical_outputs(tmp_path, layout, sde, embedding):
    model = tiny_model(sde, embedding)
    path = tmp_path / ("ckpt" if layout == "dir" else "ckpt.safetensors")
    save_score_model(model, path, data={"name": "unit-test"})
    if layout == "dir":
        assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    else:
        assert path.exists() and path.with_suffix(".json").exists()
    loaded = load_score_model(path)
    x, t = inputs()
    with torch.no_grad():
        out, out2 = model(x, t), loaded(x, t)
    assert torch.equal(out, out2) and out.abs().max() > 0
    assert type(loaded.sde) is type(sde) and loaded.sde.config() == sde.config()
    assert loaded.sigma_data == 0.6 and loaded.image_shape == (2, 8, 8)
    assert loaded.network.config == model.network.config
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    cfg = json.loads(((path / "config.json") if layout == "dir" else path.with_suffix(".json")).read_text())
    assert cfg["data"] == {"name": "unit-test"} and cfg["sde"] == sde.config()
    # Saved weights are the network's full state (buffers such as Fourier frequencies included).
    for k, v in model.network.state_dict().items():
        assert torch.equal(v, loaded.network.state_dict()[k]), k


def test_save_file_layout_creates_missing_directories(tmp_path):
    """The directory layout creates missing parents (mkdir parents=True); the `.safetensors` file layout
    must too, instead of failing inside the atomic temporary-file write."""
    path = tmp_path / "new" / "sub" / "m.safetensors"
    save_score_model(tiny_model(), path)
    assert path.exists() and path.with_suffix(".json").exists()
    x, t = inputs()
    with torch.no_grad():
        assert torch.equal(load_score_model(path)(x, t), tiny_model()(x, t))


def test_load_to_device_argument(tmp_path):
    model = tiny_model()
    save_score_model(model, tmp_path / "m")
    loaded = load_score_model(tmp_path / "m", device="cpu")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    loaded = load_score_model(str(tmp_path / "m"))       # str paths work too
    assert isinstance(loaded, ScoreModel)


class Payload:
    """Unpickling this object runs code: it writes `marker` (a harmless stand-in for an exploit)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_payload_is_live(tmp_path):
    """Guard for the tests below: unpickling the payload really does write its file."""
    marker = tmp_path / "proof.txt"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("name", ["evil.pt", "evil.pth", "evil.ckpt", "evil.safetensors", "evil_no_suffix"])
def test_torch_save_file_is_refused_and_not_executed(tmp_path, name):
    marker = tmp_path / "marker.txt"
    path = tmp_path / name
    torch.save({"state_dict": Payload(marker)}, path)
    if name == "evil.safetensors":    # give it a config so the only thing wrong is the pickle
        path.with_suffix(".json").write_text("{}")
    with pytest.raises(ValueError, match="pickle"):
        load_score_model(path)
    assert not marker.exists()


def test_raw_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "weights.bin"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=4))
    with pytest.raises(ValueError):
        load_score_model(path)
    assert not marker.exists()


def test_pickle_inside_checkpoint_directory_is_refused(tmp_path):
    """A directory checkpoint whose model.safetensors is really a torch.save pickle: refused with a
    ValueError like a pickle file given directly, and never executed."""
    good = tmp_path / "good"
    save_score_model(tiny_model(), good)
    marker = tmp_path / "marker.txt"
    torch.save({"state_dict": Payload(marker)}, good / "model.safetensors")
    with pytest.raises(ValueError):
        load_score_model(good)
    assert not marker.exists()


def test_missing_path_is_file_not_found_naming_it(tmp_path):
    missing = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_score_model(missing)


def test_directory_missing_config(tmp_path):
    save_score_model(tiny_model(), tmp_path / "m")
    os.remove(tmp_path / "m" / "config.json")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_score_model(tmp_path / "m")


def test_unknown_name_lists_shipped_names():
    with pytest.raises(FileNotFoundError) as err:
        load_score_model("ellipses65")
    msg = str(err.value)
    assert "ellipses65" in msg
    for name in SHIPPED:
        assert name in msg


def test_shipped_names_are_known():
    assert {"ellipses64", "brain64", "digits32", "patches32"} <= set(SHIPPED)


def test_bad_format_in_config_is_value_error(tmp_path):
    save_score_model(tiny_model(), tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["format"] = "someone-else/9"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format"):
        load_score_model(tmp_path / "m")


def test_training_cost_includes_the_fine_tuning_parent():
    from sgm_inverse.checkpoints import training_cost
    own = {"training": {"step": 5, "images_seen": 40, "seconds": 2.0}}
    assert training_cost(own) == {"images_seen": 40, "seconds": 2.0}
    assert training_cost({**own, "init_from": {"checkpoint": "p", "step": 3, "images_seen": 24, "seconds": 1.5}}) \
        == {"images_seen": 64, "seconds": 3.5}
    assert training_cost({"training": {"step": 5}}) == {} and training_cost({}) == {}


def test_weights_folder_from_the_environment_comes_first(tmp_path, monkeypatch):
    """$SGM_INVERSE_WEIGHTS holds weights for shipped names that override the package's, name by name."""
    from sgm_inverse.checkpoints import WEIGHTS_ENV
    shipped = load_score_model("digits32")
    save_score_model(tiny_model(), tmp_path / "digits32.safetensors")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    staged = load_score_model("digits32")
    x, t = torch.rand(2, *tiny_model().image_shape), torch.tensor([0.3, 0.6])
    assert torch.equal(staged.network(x, t), tiny_model().network(x, t))
    assert staged.config.get("training") != shipped.config.get("training")
    # names the folder does not hold still load from the package
    assert load_score_model("brain64").config["training"] == json.loads(
        (WEIGHTS_DIR / "brain64.json").read_text())["training"]
