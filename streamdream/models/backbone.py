"""A frozen ImageNet CNN seen as an ordered list of named stages.

Every mode (dream, style, saliency, inversion) asks the same question: "the activations of these
layers for this image". Seeing a network as a flat sequence of stages answers it with a plain loop
that stops at the deepest stage asked for, so a dream on `blocks.4` never pays for the classifier.
Input normalization lives here, so the rest of the code works on RGB in [0, 1].

The walk is hand-written on purpose: timm's `forward_intermediates(stop_early=True)` stops early but
only at whole stage groups (no `blocks.4.1`, `head` or `logit`) and exists for timm models only, and
torchvision's `create_feature_extractor` needs an FX trace per set of requested layers and renamed
nodes (`features.22` for `relu4_3`); one ordered stage list serves every model and every layer name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ..errors import StreamdreamError
from .fused import fuse_activations, run_stages

INPUT = "input"
"""Pseudo-layer: the image itself in [0, 1], for objectives on pixels (TV, L2)."""

LOGIT = "logit"
"""Pseudo-layer: the classifier's 1000 ImageNet logits."""


@dataclass(frozen=True)
class LayerInfo:
    """A layer's shape as the probe measured it, so checking a channel index or listing layers runs no network.

    `stride`: input pixels per activation (0 for the flat logits).
    """

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class ModelDefaults:
    """What a model is best used with; tuned per backbone because layer scales differ.

    Frozen: a builder's defaults are shared by every model it builds, so no caller may change them.
    """

    dream: str
    content: tuple[str, ...]
    style: tuple[str, ...]
    guide: str = ""  # layer matched by a guide image; post-activation features work best (empty: the dream layer)
    dream_step: float = 0.012
    input_size: int = 224


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm into the convolution registered just before it; returns the count.

    The network is frozen, so `bn(conv(x))` is exactly a convolution with rescaled weights and a bias
    (torch's `fuse_conv_bn_weights` does the arithmetic). Folding removes a full read and write of every
    activation, forward and backward (BatchNorm plus its fused activation were about a fifth of a CPU
    step). "Registered just before" is how `efficientnet` and torchvision build their blocks (conv, bn,
    ReLU6; BasicConv2d's conv, bn); a BatchNorm in training mode or without running statistics is left alone.
    """
    folded = 0
    for parent in module.modules():
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.running_var is not None):
                continue
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            setattr(parent, bn_name, nn.Identity())
            folded += 1
    return folded


class Backbone(nn.Module):
    """A frozen network with named stages, input normalization and layer metadata.

    `stages` run in order; each stage's output is the activation of the layer of the same name.
    `aliases` name a group of stages by its last one (`blocks.4` = `blocks.4.2`).
    """

    def __init__(
        self,
        name: str,
        stages: Sequence[tuple[str, nn.Module]],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        defaults: ModelDefaults,
        aliases: Mapping[str, str] | None = None,
        probe_size: int = 64,
    ) -> None:
        super().__init__()
        self.name = name
        self.probe_size = probe_size  # the side of the probe image `_describe` runs; the net must accept it
        self.stage_names = [n for n, _ in stages]
        self.stages = nn.ModuleList(m for _, m in stages)
        self.aliases = dict(aliases or {})
        self.defaults = defaults
        # How the convolution weights are laid out (`create_model` may store them channels-last);
        # the optimizer lays its inputs out the same way, so no layer converts one on the fly.
        self.memory_format = torch.contiguous_format
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)
        fold_batchnorm(self.stages)
        fuse_activations(self.stages)
        self.layers = self._describe()

    @torch.no_grad()
    def _describe(self) -> dict[str, LayerInfo]:
        """Run one small probe to learn every layer's channel count and stride.

        Strides are powers of two; rounding in log space absorbs the pixels that unpadded layers trim.
        The probe runs module by module: on the fused CPU path it would make oneDNN plans for a size
        nothing else uses (40 ms of a one-shot command).
        """
        size = self.probe_size
        feats = run_stages(self.stages, torch.zeros(1, 3, size, size), range(len(self.stages)), fused=False)
        info = {INPUT: LayerInfo(INPUT, 3, 1)}
        for index, n in enumerate(self.stage_names):
            f = feats[index]
            stride = 2 ** round(math.log2(size / f.shape[-1])) if f.dim() == 4 else 0
            info[n] = LayerInfo(n, f.shape[1], stride)
        for alias, target in self.aliases.items():
            info[alias] = LayerInfo(alias, info[target].channels, info[target].stride)
        return info

    def resolve(self, layer: str) -> str:
        """Map a user-facing layer name to the stage that produces it, or raise with the valid names."""
        if layer == INPUT or layer in self.stage_names:
            return layer
        if layer in self.aliases:
            return self.aliases[layer]
        raise StreamdreamError(
            f"unknown layer {layer!r} for model {self.name}; valid layers: {', '.join(self.public_layers())}"
        )

    def public_layers(self) -> list[str]:
        """Every layer name in depth order, each group alias right after the stage it stands for."""
        order = {n: i for i, n in enumerate(self.stage_names)}
        return sorted([*self.stage_names, *self.aliases], key=lambda n: (order[self.resolve(n)], n in self.aliases))

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Activations of `layers` (user names or stage names) for `image` in [0, 1].

        Stops after the deepest requested stage. The returned dict is keyed by the names asked for.
        """
        wanted = {layer: self.resolve(layer) for layer in layers}
        indices = {self.stage_names.index(stage) for stage in wanted.values() if stage != INPUT}
        out = {INPUT: image}
        if indices:
            outputs = run_stages(self.stages, self.normalize(image), indices)
            out.update((self.stage_names[index], activation) for index, activation in outputs.items())
        return {layer: out[stage] for layer, stage in wanted.items()}

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward(image, [LOGIT])[LOGIT]
