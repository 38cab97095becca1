"""The model zoo: real embedded weights, layer metadata, stop-at-deepest, offline-only loading."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import skimage.data
import torch
import torchvision

from streamdream.convert import to_tensor
from streamdream.errors import StreamdreamError
from streamdream.models import DEFAULT_MODEL, LOGIT, create_model, get_entry, imagenet_labels, layout, list_models
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


def without_weights(monkeypatch):
    """Build torchvision models with their random initial weights: layer names need no weights file."""
    import streamdream.models.torchvision_models as tvmodels

    monkeypatch.setattr(tvmodels, "find_weights", lambda name, weights: Path(os.devnull))
    monkeypatch.setattr(tvmodels, "load_weights", lambda net, path: None)


@pytest.mark.parametrize(
    "name",
    [
        *(entry.name for entry in list_models() if not entry.name.startswith("vgg")),
        *(pytest.param(name, marks=pytest.mark.slow) for name in ("vgg16", "vgg19")),  # 550 MB of random weights each
    ],
)
def test_every_model_builds_and_its_default_layers_exist(name, monkeypatch):
    """What `--model NAME` uses without further options must exist, or the first run fails for a user."""
    if name.startswith("efficientnet") and get_entry(name).weights_path() is None:
        pytest.skip(f"{name} weights package not installed")
    without_weights(monkeypatch)
    backbone = get_entry(name).build(None)
    defaults = backbone.defaults
    for layer in (defaults.dream, *defaults.content, *defaults.style, *([defaults.guide] if defaults.guide else [])):
        assert backbone.layers[backbone.resolve(layer)].channels > 0, layer
    assert backbone.layers[LOGIT].channels == 1000
    strides = [backbone.layers[n].stride for n in backbone.public_layers() if n != LOGIT]
    assert strides == sorted(strides) and strides[-1] == 32  # every ImageNet CNN here ends at 1/32 resolution


def test_inception_defaults_carry_their_input_size_and_stay_frozen(monkeypatch):
    """A builder's defaults are shared by every model it builds: they hold the native size it is probed at, unchangeable."""
    without_weights(monkeypatch)
    for name, size in (("googlenet", 224), ("inception_v3", 299)):
        backbone = get_entry(name).build(None)
        assert backbone.defaults.input_size == backbone.probe_size == size
    with pytest.raises(dataclasses.FrozenInstanceError):
        backbone.defaults.input_size = 224


def test_default_model_comes_first():
    assert list_models()[0].name == DEFAULT_MODEL == "efficientnet_lite0"


def test_batchnorm_folding_keeps_outputs_and_activations():
    from streamdream.models.backbone import fold_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                              torch.nn.Conv2d(8, 4, 1, bias=False), torch.nn.BatchNorm2d(4))
    for bn in (net[1], net[4]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
        bn.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    expected = net(x)
    assert fold_batchnorm(net) == 2
    assert isinstance(net[1], torch.nn.Identity) and isinstance(net[4], torch.nn.Identity)
    assert torch.allclose(net(x), expected, atol=1e-5)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_efficientnet_lite_matches_timm(variant):
    """The network written out in `efficientnet` is timm's tf_efficientnet_lite: the same weights by
    position give the same activations (folding BatchNorm moves them by ~1e-5), TF padding included."""
    timm = pytest.importorskip("timm")
    from streamdream.models.backbone import Backbone, ModelDefaults
    from streamdream.models.efficientnet import MEAN, STD, VARIANTS, efficientnet_lite_stages

    torch.manual_seed(variant)
    reference = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False).eval()
    for bn in (m for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2)
    stages = efficientnet_lite_stages(variant)
    net = torch.nn.Sequential(*(module for _, module in stages))
    net.load_state_dict(map_state_dict(reference.state_dict(), net.state_dict()))
    ours = Backbone("lite", stages, mean=MEAN, std=STD, defaults=ModelDefaults(dream="blocks.4.0", content=(), style=()))
    assert (MEAN, STD, VARIANTS[variant][2]) == (reference.pretrained_cfg["mean"], reference.pretrained_cfg["std"], reference.pretrained_cfg["input_size"][-1])

    image = torch.rand(1, 3, 75, 102)  # odd and even sides: both halves of TF's "same" padding
    with torch.no_grad():
        x = reference.bn1(reference.conv_stem((image - 0.5) / 0.5))
        expected = {"stem": x}
        for i, group in enumerate(reference.blocks):
            for j, block in enumerate(group):
                x = expected[f"blocks.{i}.{j}"] = block(x)
        expected["logit"] = reference((image - 0.5) / 0.5)
        got = ours(image, list(expected))
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        assert torch.allclose(got[name], value, atol=1e-4, rtol=1e-4), name


def test_the_default_model_never_imports_torchvision_or_timm():
    """A command on the default model does not pay for importing torchvision and timm (about 2 s at
    every start on the 2-core Xeon): building the model and dreaming import neither."""
    code = (
        "import sys, numpy as np; from streamdream import dream; "
        "dream(np.full((48, 64, 3), 120, np.uint8), octaves=1, iterations=1); "
        "print(sorted(m for m in ('torchvision', 'timm', 'torch._dynamo') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_batchnorm_folding_covers_plain_batchnorm_and_skips_training_mode():
    from streamdream.models.backbone import fold_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4, affine=False), torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    net.eval()
    net[3].train()  # batch statistics: not a fixed affine map, so it must stay
    x = torch.randn(2, 3, 8, 8)
    expected = net(x)
    assert fold_batchnorm(net) == 1
    assert isinstance(net[1], torch.nn.Identity) and isinstance(net[3], torch.nn.BatchNorm2d)
    assert torch.allclose(net(x), expected, atol=1e-5)


def test_create_model_layout_follows_the_request():
    """channels_last False or True is what was asked; None on a CPU is the machine's faster layout
    (`models.layout`, pinned by the tests' STREAMDREAM_CPU_LAYOUT)."""
    nchw, nhwc = create_model(device="cpu", channels_last=False), create_model(device="cpu", channels_last=True)
    assert nchw.stages[0][0].weight.is_contiguous() and nchw.memory_format == torch.contiguous_format
    assert nhwc.stages[0][0].weight.is_contiguous(memory_format=torch.channels_last) and nhwc.memory_format == torch.channels_last
    assert create_model(device="cpu").memory_format == layout.LAYOUTS[os.environ["STREAMDREAM_CPU_LAYOUT"]]
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(nhwc(x, ["blocks.2"])["blocks.2"], nchw(x, ["blocks.2"])["blocks.2"], atol=1e-4)


def test_configure_sets_threads_and_returns_the_device(monkeypatch):
    from streamdream import runtime
    from streamdream.runtime import configure

    kept = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: kept.append(True))
    before = torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    try:
        assert configure("cpu", threads=1) == torch.device("cpu")
        assert torch.get_num_threads() == 1 and kept  # and the CPU's memory is kept for the next step
        assert configure("auto").type in ("cpu", "cuda", "mps")
        assert torch.get_num_threads() == 1  # threads=None leaves them alone
        if not torch.cuda.is_available():
            # CPU-only settings never touch the CUDA switches
            assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before[1:]
        with pytest.raises(StreamdreamError, match="threads"):
            configure("cpu", threads=0)
        with pytest.raises(StreamdreamError, match="unknown device"):
            configure("tpu")
    finally:
        torch.set_num_threads(before[0])
        torch.backends.cudnn.benchmark = before[1]
        torch.set_float32_matmul_precision(before[2])


@pytest.mark.cuda
def test_configure_on_cuda_turns_on_autotuning_and_tf32():
    from streamdream.runtime import configure

    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    try:
        assert configure("cuda").type == "cuda"
        assert torch.backends.cudnn.benchmark and torch.get_float32_matmul_precision() == "high"
        assert create_model(device="cuda").stages[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    finally:
        torch.backends.cudnn.benchmark = before[0]
        torch.set_float32_matmul_precision(before[1])


ROOT = Path(__file__).resolve().parent.parent


def test_only_streamdream_is_installed_and_every_package_folder_is_listed():
    """pyproject lists packages explicitly (apps/ and samples/ install as streamdream.apps / .samples),
    so a new package folder must be added there or it is missing from the installed distribution."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools_config = config["tool"]["setuptools"]
    listed = set(setuptools_config["packages"])
    assert {name.split(".")[0] for name in listed} == {"streamdream"}
    assert config["project"]["scripts"]["streamdream"] == "streamdream.apps.cli:main"
    found = set()
    for prefix, folder in setuptools_config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            if ".venv" not in init.parts and "__pycache__" not in init.parts:
                found.add(".".join([prefix, *relative]))
    assert found == listed
