"""The model zoo: real embedded weights, layer metadata, stop-at-deepest, offline-only loading."""

from __future__ import annotations

import pytest
import skimage.data
import torch
import torchvision

from streamdream.convert import to_tensor
from streamdream.errors import StreamdreamError
from streamdream.models import LOGIT, create_model, get_entry, imagenet_labels, list_models
from streamdream.models.efficientnet import map_state_dict
from streamdream.models.torchvision_models import cached_weights_path

from .conftest import small


def top1(model, photo) -> int:
    size = model.defaults.input_size
    with torch.no_grad():
        return int(model.logits(to_tensor(small(photo, size, size))).argmax())


def test_embedded_weights_are_real_imagenet_weights(model):
    assert 281 <= top1(model, skimage.data.chelsea()) <= 285  # a cat class
    assert top1(model, skimage.data.coffee()) == 967  # espresso
    assert imagenet_labels()[967] == "espresso"


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lites_are_real_too(name):
    if get_entry(name).weights_path() is None:
        pytest.skip(f"{name} weights package not installed")
    assert 281 <= top1(create_model(name), skimage.data.chelsea()) <= 285


def test_layers_report_channels_and_strides(model):
    assert model.layers["blocks.4"].channels == 112
    assert model.layers["blocks.4"].stride == 16
    assert model.layers["stem"].channels == 32
    assert model.layers[LOGIT].channels == 1000
    names = model.public_layers()
    assert names.index("stem") < names.index("blocks.3") < names.index("blocks.4") < names.index(LOGIT)
    assert model.defaults.dream in names


def test_forward_returns_requested_layers_with_right_shapes(model):
    x = torch.rand(1, 3, 64, 96)
    acts = model(x, ["blocks.4", "stem", "input"])
    assert set(acts) == {"blocks.4", "stem", "input"}
    assert acts["blocks.4"].shape == (1, 112, 4, 6)
    assert acts["stem"].shape == (1, 32, 32, 48)
    assert acts["input"] is x


def test_forward_stops_at_the_deepest_requested_layer(model):
    calls = []
    hooks = [stage.register_forward_hook(lambda *_, n=n: calls.append(n)) for n, stage in zip(model.stage_names, model.stages)]
    try:
        model(torch.rand(1, 3, 32, 32), ["blocks.2"])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls[-1] == model.resolve("blocks.2")
    assert "head" not in calls and LOGIT not in calls


def test_unknown_model_and_layer_list_valid_names(model):
    with pytest.raises(StreamdreamError, match="efficientnet_lite0"):
        create_model("resnet9000")
    with pytest.raises(StreamdreamError, match="blocks.4"):
        model.resolve("blocks.42")


def test_state_dict_mapping_refuses_mismatches():
    target = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)}
    assert map_state_dict({"x": torch.ones(2, 3), "y": torch.ones(4)}, target).keys() == target.keys()
    with pytest.raises(StreamdreamError, match="does not fit"):
        map_state_dict({"x": torch.ones(3, 2), "y": torch.ones(4)}, target)
    with pytest.raises(StreamdreamError, match="tensors"):
        map_state_dict({"x": torch.ones(2, 3)}, target)


def test_torchvision_models_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert get_entry("vgg19").weights_path() is None
    with pytest.raises(StreamdreamError, match="vgg19-dcbb9e9d.pth"):
        get_entry("vgg19").build(None)
    assert cached_weights_path("googlenet").parent == tmp_path / "checkpoints"


def test_torchvision_model_loads_a_weights_file_safely(tmp_path):
    # A torchvision-format state dict with random values stands in for the real file.
    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.pth"
    torch.save(net.state_dict(), path)
    model = get_entry("googlenet").build(path)
    assert model.layers["inception4c"].channels == 512
    assert model.logits(torch.rand(1, 3, 64, 64)).shape == (1, 1000)

    torch.save({"not": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(StreamdreamError, match="does not fit"):
        get_entry("googlenet").build(tmp_path / "wrong.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(StreamdreamError, match="cannot read"):
        get_entry("googlenet").build(tmp_path / "junk.pth")


def test_registry_lists_every_model_once():
    names = [entry.name for entry in list_models()]
    assert names[0] == "efficientnet_lite0"
    assert {"vgg19", "vgg16", "googlenet", "inception_v3"} <= set(names)
    assert len(names) == len(set(names))


def test_batchnorm_folding_keeps_outputs_and_activations():
    from timm.layers import BatchNormAct2d

    from streamdream.models.backbone import fold_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), BatchNormAct2d(8, act_layer=torch.nn.ReLU6), torch.nn.Conv2d(8, 4, 1, bias=False), torch.nn.BatchNorm2d(4))
    for bn in (net[1], net[3]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    expected = net(x)
    assert fold_batchnorm(net) == 2
    assert isinstance(net[1], torch.nn.ReLU6) and isinstance(net[3], torch.nn.Identity)
    assert torch.allclose(net(x), expected, atol=1e-5)
