"""build_model: shapes, single logit, and that ImageNet-style weights are really loaded from a file."""

from __future__ import annotations

import pytest
import torch
import torchvision

from spinefx.errors import SpinefxError
from spinefx.learn.model import TORCHVISION_WEIGHT_FILES, build_model


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """Keep any real TORCH_HOME cache out of these tests."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def _reference_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    ref = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():  # make BN buffers distinctive too
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return ref.state_dict()


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_shapes_and_single_logit(arch, capfd):
    model = build_model(arch, in_channels=6).eval()
    assert model.mix.in_channels == 6 and model.mix.out_channels == 3
    assert model.mix.kernel_size == (1, 1)
    assert model.backbone.fc.out_features == 1
    with torch.no_grad():
        out = model(torch.randn(4, 6, 64, 64))
    assert out.shape == (4,)
    assert "starting from random weights" in capfd.readouterr().err


def test_pretrained_state_dict_is_loaded_into_backbone(tmp_path, capfd):
    ref = _reference_state("resnet18", seed=123)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(ref, path)
    model = build_model("resnet18", pretrained_weights=path)
    assert "loaded" in capfd.readouterr().err
    own = model.backbone.state_dict()
    for key, value in ref.items():
        if key.startswith("fc."):
            continue
        assert torch.equal(own[key], value), key
    assert own["fc.weight"].shape == (1, 512)
    random_model = build_model("resnet18")
    assert not torch.equal(random_model.backbone.conv1.weight, ref["conv1.weight"])
    # the loaded weights change the network's output, i.e. they are really used
    x = torch.randn(2, 6, 64, 64)
    model.eval()
    random_model.eval()
    random_model.mix.load_state_dict(model.mix.state_dict())
    random_model.backbone.fc.load_state_dict(model.backbone.fc.state_dict())
    with torch.no_grad():
        assert not torch.allclose(model(x), random_model(x))


def test_torch_home_cache_is_used(tmp_path, monkeypatch, capfd):
    ref = _reference_state("resnet18", seed=7)
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(ref, cache / TORCHVISION_WEIGHT_FILES["resnet18"][0])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    model = build_model("resnet18")
    assert torch.equal(model.backbone.layer4[1].conv2.weight, ref["layer4.1.conv2.weight"])
    assert str(cache) in capfd.readouterr().err


def test_wrong_weights_file_is_refused(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(_reference_state("resnet18", seed=1), path)
    with pytest.raises(SpinefxError, match="do not fit resnet34"):
        build_model("resnet34", pretrained_weights=path)
    with pytest.raises(SpinefxError, match="not found"):
        build_model("resnet18", pretrained_weights=tmp_path / "missing.pth")
    with pytest.raises(SpinefxError, match="unknown architecture"):
        build_model("vgg16")
