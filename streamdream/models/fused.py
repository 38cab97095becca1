"""Convolutions that carry their activation, and a CPU step that asks oneDNN for no more than it needs.

A dream or style step runs the frozen network forward and back to the image, never to the weights.
PyTorch's eager CPU path does more than that: each convolution and its ReLU6 are two passes over the
activation, each convolution reorders its weights into oneDNN's blocked layout on every call (forward
and backward), and the backward runs oneDNN's backward-data kernels. On a CPU, with the network frozen,
`FusedConv2d` instead:

- runs convolution and ReLU6 as one oneDNN primitive (`torch.ops.mkldnn._convolution_pointwise`, the
  fused operator PyTorch's own compiler emits for inference), saving the activated output only;
- hands oneDNN its weights already reordered (`_reorder_convolution_weight`), once per input shape;
- takes the gradient to its input only, and for a stride-1 convolution (every 1x1 and depthwise layer
  of EfficientNet-Lite) as a forward convolution of the gradient with the transposed, flipped kernel,
  also reordered once: oneDNN's forward kernels are faster than its backward-data ones.

Measured on the 2-core Xeon (AVX-512), lite0 forward to `blocks.4` and back at 320x240, the rows
taking turns in one process (`benchmarks/cpu_paths.py`): the step took 0.82-0.94x the time of
PyTorch's eager path channels-last (0.95x in a slower hour), and 0.65x in PyTorch's default layout;
a live frame at 320x240 went from 15.5 to 17.6 fps in one run. Small pictures lose (16x16: 8.7
against 4.6 ms): the fused operator costs more per call, and a small step is made of such costs, so
a network run on fewer than `FUSED_MIN_PIXELS` pixels runs eager (`sized_for`). The gradient is the same to float rounding (1e-6
of its mean), but where a rounding tips a ReLU6 over its edge, as PyTorch's two layouts also do.
Anything else (CUDA, another dtype, autocast, weights that want gradients, dilation) runs the plain
convolution and activation, so the GPU path is unchanged.

`fuse_activations` sets the activation once BatchNorm is folded into the convolution (before that,
the activation does not directly follow the convolution).
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections import OrderedDict
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

PACKED_SHAPES = 4  # reordered weights kept per convolution: input shapes (a live server's few buckets and batch sizes)
# A network run on fewer pixels than this (batch x height x width) runs eager: the fused operator's
# fixed cost per call is higher (about 40-50 us against 17 us), and a small step is made of such
# costs. On the 2-core Xeon, fused against eager, rows taking turns: 58x44 1.59x as long, 114x86
# 1.12x, 160x120 1.06x (19.2k pixels), 240x180 0.83x (43.2k), four 160x120 frames 0.84x; a 160x120
# still-effect probe (`Dreamer.still_effect`) 0.63 against 0.50 s.
FUSED_MIN_PIXELS = 32_768
_PACKS: weakref.WeakKeyDictionary[nn.Module, OrderedDict] = weakref.WeakKeyDictionary()
_reference = False  # set by `reference_path`
_small = contextvars.ContextVar("small", default=False)  # set by `sized_for`, per thread


def sized_for(image: torch.Tensor) -> contextlib.AbstractContextManager:
    """Within it, on this thread, the convolutions run for `image` (B x C x H x W): fused only when it
    has at least `FUSED_MIN_PIXELS` pixels. `Backbone.forward` decides so once for the whole network,
    since a step's small deep layers pay the fixed cost either way and only its big ones gain. Off
    the CPU nothing runs fused and nothing is set: `torch.compile` traces the network without a break."""
    if image.device.type != "cpu":
        return contextlib.nullcontext()
    return _sized(image.shape[0] * image.shape[-2] * image.shape[-1] < FUSED_MIN_PIXELS)


@contextlib.contextmanager
def _sized(small: bool) -> Iterator[None]:
    token = _small.set(small)
    try:
        yield
    finally:
        _small.reset(token)


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Within it, every `FusedConv2d` in the process runs PyTorch's plain eager convolution and
    activation: the path the fused one is compared with (`benchmarks/cpu_paths.py`, the tests)."""
    global _reference
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


class FusedConv2d(nn.Conv2d):
    """A convolution that may carry the activation after it (`activation`: "relu6" or None), fused on a CPU.

    `pad` is what a subclass does to the input first (TensorFlow's "same" padding); the convolution's
    own padding is symmetric.
    """

    activation: str | None = None

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)
        if not self._fusable(x):
            y = super().forward(x)
            return F.relu6(y) if self.activation == "relu6" else y
        packed = self._packed(x)
        return _ConvActivation.apply(x, self.bias, packed, self)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", activation={self.activation}" if self.activation else "")

    def _fusable(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu" and not _reference and not _small.get() and x.dim() == 4 and x.dtype == self.weight.dtype == torch.float32
            and not self.weight.requires_grad and self.padding_mode == "zeros" and self.dilation == (1, 1)
            and isinstance(self.padding, tuple) and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
        )

    def transposable(self) -> bool:
        """Whether the input gradient is a forward convolution of the output gradient (stride 1, odd
        kernel padded by half, groups of one channel or one group): the same geometry both ways."""
        return (
            self.stride == (1, 1) and all(2 * p + 1 == k for p, k in zip(self.padding, self.kernel_size))
            and (self.groups == 1 or self.groups == self.in_channels == self.out_channels)
        )

    def _packed(self, x: torch.Tensor, *, transposed: bool = False) -> torch.Tensor:
        """The weights reordered for oneDNN for inputs like `x`: the forward convolution's, or with
        `transposed` the input gradient's (`transposed_weight`, stride 1); made once per input shape
        and kept, new ones for weights changed in place."""
        packs = _PACKS.setdefault(self, OrderedDict())
        key = (transposed, tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last), self.weight.data_ptr(), self.weight._version)
        if key in packs:
            packs.move_to_end(key)
            return packs[key]
        weight, stride = (self.transposed_weight(), [1, 1]) if transposed else (self.weight, list(self.stride))
        packed = torch.ops.mkldnn._reorder_convolution_weight(weight, list(self.padding), stride, [1, 1], self.groups, list(x.shape))
        packs[key] = packed
        while len(packs) > 2 * PACKED_SHAPES:
            packs.popitem(last=False)
        return packed

    def transposed_weight(self) -> torch.Tensor:
        """The kernel of the input gradient's forward convolution: channels swapped (one group) and flipped."""
        weight = self.weight if self.groups > 1 else self.weight.transpose(0, 1)
        return weight.flip(-1, -2).contiguous(memory_format=torch.channels_last)


class _ConvActivation(torch.autograd.Function):
    """Convolution (+ ReLU6) forward as one oneDNN primitive; backward to the input only."""

    @staticmethod
    def forward(ctx, x, bias, packed, conv):
        relu6 = conv.activation == "relu6"
        y = torch.ops.mkldnn._convolution_pointwise(
            x, packed, bias, list(conv.padding), list(conv.stride), [1, 1], conv.groups,
            "hardtanh" if relu6 else "none", [0.0, 6.0] if relu6 else [], "",
        )
        ctx.conv = conv
        ctx.save_for_backward(None if conv.transposable() else x, y if relu6 else None)  # x: only its shape, for oneDNN's backward
        return y

    @staticmethod
    def backward(ctx, grad):
        conv: FusedConv2d = ctx.conv
        x, y = ctx.saved_tensors
        if y is not None:  # ReLU6 passes the gradient where its output is strictly inside (0, 6), as its input was
            grad = torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
        if conv.transposable():
            packed = conv._packed(grad, transposed=True)
            grad_x = torch.ops.mkldnn._convolution_pointwise(grad, packed, None, list(conv.padding), [1, 1], [1, 1], conv.groups, "none", [], "")
        else:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, conv.weight, None, list(conv.stride), list(conv.padding), [1, 1], False, [0, 0], conv.groups, [True, False, False]
            )[0]
        return grad_x, None, None, None


def fuse_activations(module: nn.Module) -> int:
    """Move every ReLU6 that directly follows a `FusedConv2d` (folded BatchNorms, now identities, between
    them are skipped) into the convolution; returns the count."""
    fused = 0
    for parent in module.modules():
        conv: FusedConv2d | None = None
        for name, child in list(parent.named_children()):
            if isinstance(child, FusedConv2d):
                conv = child if child.activation is None else None
            elif isinstance(child, nn.ReLU6) and conv is not None:
                conv.activation = "relu6"
                setattr(parent, name, nn.Identity())
                conv, fused = None, fused + 1
            elif not isinstance(child, nn.Identity):
                conv = None
    return fused
