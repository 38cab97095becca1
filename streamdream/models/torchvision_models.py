"""torchvision VGG16/VGG19, GoogLeNet and Inception-v3, used only with weights already on disk.

Nothing here downloads: the weights are looked up in the torch hub cache under torchvision's own file
name, or given with `--weights FILE`, and always loaded with `weights_only=True` (never unpickled).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn

from ..errors import StreamdreamError
from .backbone import LOGIT, Backbone, ModelDefaults

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# GoogLeNet and Inception-v3 were trained on inputs scaled to [-1, 1]; torchvision's `transform_input`
# converts ImageNet-normalized input to that, which is the same as normalizing with 0.5 / 0.5 directly.
HALF = (0.5, 0.5, 0.5)

WEIGHTS = {
    "vgg16": tvm.VGG16_Weights.IMAGENET1K_V1,
    "vgg19": tvm.VGG19_Weights.IMAGENET1K_V1,
    "googlenet": tvm.GoogLeNet_Weights.IMAGENET1K_V1,
    "inception_v3": tvm.Inception_V3_Weights.IMAGENET1K_V1,
}
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


def cached_weights_path(name: str) -> Path:
    """Where torchvision would have saved this model's ImageNet weights (torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(WEIGHTS[name].url).name


def find_weights(name: str, weights: Path | None) -> Path:
    path = Path(weights) if weights else cached_weights_path(name)
    if not path.is_file():
        raise StreamdreamError(
            f"{name} weights not found at {path}; copy {Path(WEIGHTS[name].url).name} there or pass --weights FILE"
        )
    return path


def load_weights(net: nn.Module, path: Path) -> None:
    """Load a state dict saved by torchvision (auxiliary classifiers dropped) into `net`, strictly."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a state dict
        raise StreamdreamError(f"cannot read weights file {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict):
        raise StreamdreamError(f"weights file {path} does not hold a state dict")
    state = {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES)}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip()
        raise StreamdreamError(f"weights file {path} does not fit this network: {detail}") from None


def vgg_stages(features: nn.Sequential) -> list[tuple[str, nn.Module]]:
    """Name VGG's flat feature list the way the style-transfer papers do (conv1_1, relu1_1, pool1, ...)."""
    stages, block, index = [], 1, 1
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            stages.append((f"conv{block}_{index}", layer))
        elif isinstance(layer, nn.ReLU):
            stages.append((f"relu{block}_{index}", nn.ReLU(inplace=False)))  # in-place would overwrite the conv output we return
            index += 1
        else:
            stages.append((f"pool{block}", layer))
            block, index = block + 1, 1
    return stages


def build_vgg(name: str, weights: Path | None) -> Backbone:
    path = find_weights(name, weights)  # before building: VGG19 allocates 550 MB of random weights
    net = getattr(tvm, name)(weights=None)
    load_weights(net, path)
    stages = vgg_stages(net.features)
    stages.append((LOGIT, nn.Sequential(net.avgpool, nn.Flatten(), net.classifier)))
    defaults = ModelDefaults(
        dream="relu4_3" if name == "vgg16" else "relu4_4",
        content=("relu4_2",),
        style=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    )
    return Backbone(name, stages, mean=IMAGENET_MEAN, std=IMAGENET_STD, defaults=defaults)


def build_children(name: str, weights: Path | None, make: Callable[[], nn.Module], defaults: ModelDefaults) -> Backbone:
    """GoogLeNet / Inception-v3: their top-level children already run in order (aux heads removed)."""
    path = find_weights(name, weights)
    net = make()
    load_weights(net, path)
    children = [(n, m) for n, m in net.named_children() if n not in ("avgpool", "dropout", "fc")]
    children.append((LOGIT, nn.Sequential(net.avgpool, nn.Flatten(), net.fc)))
    # Probed at the input size: Inception-v3's unpadded convolutions refuse inputs under 75 px, and
    # only near its native size do they trim few enough pixels for the strides to come out right.
    return Backbone(name, children, mean=HALF, std=HALF, defaults=defaults, probe_size=defaults.input_size)


def _inception(name: str, factory: Callable[[], nn.Module], defaults: ModelDefaults) -> Callable[[Path | None], Backbone]:
    """A builder for a torchvision Inception network, walked child by child (`build_children`)."""
    return lambda weights: build_children(name, weights, factory, defaults)


build_googlenet = _inception(
    "googlenet",
    lambda: tvm.googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=False),
    ModelDefaults(dream="inception4c", content=("inception4b",), style=("conv1", "conv3", "inception3a", "inception3b", "inception4a"), input_size=224),
)
build_inception_v3 = _inception(
    "inception_v3",
    lambda: tvm.inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False),
    ModelDefaults(dream="Mixed_5d", content=("Mixed_6b",), style=("Conv2d_1a_3x3", "Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5b", "Mixed_6a"), input_size=299),
)
