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
  also reordered once: oneDNN's forward kernels are faster than its backward-data ones;
- pads unevenly (TensorFlow's "same" padding of a strided layer) without copying its input into a
  padded one: the kernel takes a zero row or column on the side padded less, and the convolution pads
  symmetrically (`FusedConv2d._unpadded`).

Measured on the 2-core Xeon (AVX-512), lite0 forward to `blocks.4` and back at 320x240, the rows
taking turns in one process (`benchmarks/cpu_paths.py`): the step took 0.82-0.94x the time of
PyTorch's eager path channels-last (0.95x in a slower hour), and 0.65x in PyTorch's default layout;
a live frame at 320x240 went from 15.5 to 17.6 fps in one run. Small pictures lose (16x16: 8.1
against 5.1 ms): the fused operator costs more per call, and a small step is made of such costs, so
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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

PACKED_SHAPES = 4  # plans (reordered weights) kept per convolution: input shapes (a live server's few buckets and batch sizes)
# A network run on fewer pixels than this (batch x height x width) runs eager: the fused operator's
# fixed cost per call is higher (about 50 us), and a small step is made of such costs. On the 2-core
# Xeon, fused against eager, in one process: 16x16 1.6x as long, 64x64 1.2x, 100x75 (7.5k pixels)
# 1.0x, 114x86 0.95x, 160x120 0.89x, three 160x120 frames 0.85x; a 160x120 still-effect probe
# (`Dreamer.still_effect`, octaves down to 58x44) 0.88x of its time with the bound at 32k.
FUSED_MIN_PIXELS = 8_192
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


class _Plan(NamedTuple):
    """Everything one convolution needs to run fused on inputs of one shape, made once: oneDNN's
    reordered weights for the forward convolution and (stride 1) for the input gradient's, the kernel
    and symmetric padding they were made from, and the operator's arguments."""

    packed: torch.Tensor
    transposed: torch.Tensor | None  # the input gradient's weights; None: oneDNN's backward from `weight`
    weight: torch.Tensor
    padding: list[int]
    stride: list[int]
    groups: int
    activation: str
    scalars: list[float]


class FusedConv2d(nn.Conv2d):
    """A convolution that may carry the activation after it (`activation`: "relu6" or None), fused on a CPU.

    `extra_padding` is what a subclass pads the input by first, uneven if it likes (TensorFlow's
    "same" padding); the convolution's own padding is symmetric.
    """

    activation: str | None = None

    def extra_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Zeros around an input of this size (left, right, top, bottom), before the convolution's own padding."""
        return 0, 0, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fusable(x):
            pads = self.extra_padding(*x.shape[-2:])
            y = super().forward(F.pad(x, pads) if any(pads) else x)
            return F.relu6(y) if self.activation == "relu6" else y
        return _ConvActivation.apply(x, self.bias, self._plan(x))

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

    def _plan(self, x: torch.Tensor) -> _Plan:
        """The plan for inputs like `x`, made once per input shape and kept; new ones for weights changed in place."""
        packs = _PACKS.get(self)
        if packs is None:
            packs = _PACKS[self] = OrderedDict()
        key = (x.shape, x.is_contiguous(memory_format=torch.channels_last), self.weight.data_ptr(), self.weight._version)
        plan = packs.get(key)
        if plan is not None:
            packs.move_to_end(key)
            return plan
        weight, padding = self._unpadded(*x.shape[-2:])
        reorder = torch.ops.mkldnn._reorder_convolution_weight
        transposed = None
        if self.transposable():  # the output has the input's size
            gradient_shape = [x.shape[0], self.out_channels, *x.shape[-2:]]
            transposed = reorder(self.transposed_weight(), padding, [1, 1], [1, 1], self.groups, gradient_shape)
        relu6 = self.activation == "relu6"
        plan = packs[key] = _Plan(
            reorder(weight, padding, list(self.stride), [1, 1], self.groups, list(x.shape)), transposed, weight, padding,
            list(self.stride), self.groups, "hardtanh" if relu6 else "none", [0.0, 6.0] if relu6 else [],
        )
        while len(packs) > PACKED_SHAPES:
            packs.popitem(last=False)
        return plan

    def _unpadded(self, height: int, width: int) -> tuple[torch.Tensor, list[int]]:
        """A kernel and symmetric padding that give this convolution on an input of this size not
        padded by `extra_padding`: where the padding is uneven, the kernel takes zero taps on the
        side padded less. The input is then never copied into a padded one, a copy that took as long
        as the depthwise convolution it fed (blocks.1's at 320x240 on the 2-core Xeon: 1.1 ms forward
        and 1.6 ms back with the copy, 0.45 and 0.5 ms without)."""
        left, right, top, bottom = self.extra_padding(height, width)
        top, bottom = top + self.padding[0], bottom + self.padding[0]
        left, right = left + self.padding[1], right + self.padding[1]
        rows, columns = max(top, bottom), max(left, right)
        if (top, left) == (bottom, right):
            return self.weight, [rows, columns]
        return F.pad(self.weight, (columns - left, columns - right, rows - top, rows - bottom)), [rows, columns]

    def transposed_weight(self) -> torch.Tensor:
        """The kernel of the input gradient's forward convolution: channels swapped (one group) and flipped."""
        weight = self.weight if self.groups > 1 else self.weight.transpose(0, 1)
        return weight.flip(-1, -2).contiguous(memory_format=torch.channels_last)


class _ConvActivation(torch.autograd.Function):
    """Convolution (+ ReLU6) forward as one oneDNN primitive; backward to the input only."""

    @staticmethod
    def forward(ctx, x, bias, plan):
        y = torch.ops.mkldnn._convolution_pointwise(x, plan.packed, bias, plan.padding, plan.stride, [1, 1], plan.groups, plan.activation, plan.scalars, "")
        ctx.plan = plan
        # x is kept only where oneDNN's backward wants it (its shape); y for ReLU6's gradient
        ctx.save_for_backward(x if plan.transposed is None else None, y if plan.scalars else None)
        return y

    @staticmethod
    def backward(ctx, grad):
        plan: _Plan = ctx.plan
        x, y = ctx.saved_tensors
        if y is not None:  # ReLU6 passes the gradient where its output is strictly inside (0, 6), as its input was
            grad = torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
        if plan.transposed is not None:
            grad_x = torch.ops.mkldnn._convolution_pointwise(grad, plan.transposed, None, plan.padding, [1, 1], [1, 1], plan.groups, "none", [], "")
        else:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, plan.weight, None, plan.stride, plan.padding, [1, 1], False, [0, 0], plan.groups, [True, False, False]
            )[0]
        return grad_x, None, None


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
