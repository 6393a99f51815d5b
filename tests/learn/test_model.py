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


def test_dropout_sits_before_the_final_linear_layer_in_training_only():
    """Oracle by hand: with p = 1 every fc input is dropped (the logit is the bias); with p = 0.5 about
    half are kept, each scaled by 2; in eval mode the layer is the plain linear map."""
    from spinefx.learn.model import DropoutLinear

    layer = DropoutLinear(512, 1, p=1.0)
    x = torch.randn(8, 512)
    layer.train()
    assert torch.equal(layer(x), layer.bias.expand(8, 1))
    layer.eval()
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    half = DropoutLinear(512, 1, p=0.5).train()
    with torch.no_grad():
        half.weight.fill_(1.0)
        half.bias.zero_()
    torch.manual_seed(0)
    kept = half(torch.ones(200, 512)) / 2.0  # each kept input contributes 1 / (1 - p) = 2
    assert torch.equal(kept, kept.round()) and abs(float(kept.mean()) / 512 - 0.5) < 0.01
    with pytest.raises(SpinefxError, match="dropout"):
        DropoutLinear(4, 1, p=1.5)


def test_model_with_dropout_has_the_same_keys_and_eval_outputs():
    plain = build_model("resnet18", load_pretrained=False)
    dropped = build_model("resnet18", load_pretrained=False, dropout=0.5)
    assert dropped.backbone.fc.p == 0.5 and plain.backbone.fc.p == 0.0
    assert list(plain.state_dict()) == list(dropped.state_dict())  # model files stay interchangeable
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(4, 6, 64, 64)
    plain.eval()
    dropped.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x), rtol=0, atol=0)
        dropped.train()
        plain.train()
        torch.manual_seed(1)
        a = dropped(x)
        torch.manual_seed(2)
        b = dropped(x)
        torch.manual_seed(1)
        c = plain(x)
        torch.manual_seed(2)
        d = plain(x)
    assert not torch.equal(a, b) and torch.equal(c, d)  # only dropout is random in training mode
