"""Convolutions that carry their activation, and a CPU step that asks oneDNN for no more than it needs.

A dream or style step runs the frozen network forward and back to the image, never to the weights.
PyTorch's eager CPU path does more than that: each convolution and its ReLU6 are two passes over the
activation, each convolution reorders its weights into oneDNN's blocked layout on every call (forward
and backward), the backward runs oneDNN's backward-data kernels, and every layer is a module call and
an autograd node of its own. On a CPU, with the network frozen, `run_stages` runs the leading stages
that are chains of convolutions (`ConvChain`: EfficientNet-Lite's stem, blocks and head) as one
autograd function, which:

- runs each convolution and its ReLU6 as one oneDNN primitive (`torch.ops.mkldnn._convolution_pointwise`,
  the fused operator PyTorch's own compiler emits for inference), saving the activated output only;
- hands oneDNN its weights already reordered (`_reorder_convolution_weight`), once per input shape;
- takes the gradient to its input only, and for a stride-1 convolution (every 1x1 and depthwise layer
  of EfficientNet-Lite) as a forward convolution of the gradient with the transposed, flipped kernel,
  also reordered once: oneDNN's forward kernels are faster than its backward-data ones;
- pads unevenly (TensorFlow's "same" padding of a strided layer) without copying its input into a
  padded one: the kernel takes a zero row or column on the side padded less, and the convolution pads
  symmetrically (`FusedConv2d._unpadded`);
- walks the layers in a plain loop forward and back, with no module calls and no autograd node per
  layer, and lets go of each gradient as soon as the layer below has used it.

Measured on the 2-core Xeon (AVX-512), lite0 forward to `blocks.4` and back at 320x240, the rows
taking turns in one process (`benchmarks/cpu_paths.py`): with one autograd function per convolution
the step took 0.82-0.94x the time of PyTorch's eager path channels-last, and 0.65x in PyTorch's
default layout; one function for the whole run then took 0.76-0.86x of that (the gradient bit-identical).
Small pictures lose: the fused operator costs more per call (about 50 us against 20 for a small 1x1
convolution), and a small step is made of such costs, so a network run on fewer than
`FUSED_MIN_PIXELS` pixels runs eager. The gradient is the same as the eager one to float rounding (1e-6
of its mean), but where a rounding tips a ReLU6 over its edge, as PyTorch's two layouts also do.
Anything else (CUDA, another dtype, autocast, weights that want gradients, dilation) runs the plain
convolution and activation module by module, so the GPU path is unchanged.

`fuse_activations` sets the activation once BatchNorm is folded into the convolution (before that,
the activation does not directly follow the convolution).
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

PACKED_SHAPES = 4  # plans (reordered weights) kept per convolution: input shapes (a live server's few buckets and batch sizes)
# A network run on pictures of fewer pixels than this (height x width) runs eager: the fused operator's
# fixed cost per call is higher, and a small step is made of such costs. On the 2-core Xeon, the whole
# run fused against eager, four rounds taking turns in one process: 16x16 1.12-1.18x as long, 58x44
# 1.01-1.14x, 64x64 0.89-1.11x, 96x72 0.71-0.95x, 160x120 0.67-0.82x. Per picture, not per batch, so
# that a live frame takes the same path batched with other visitors' or alone (the two paths round
# differently, and a warm-started stream carries a difference on).
FUSED_MIN_PIXELS = 4_096
_PACKS: weakref.WeakKeyDictionary[nn.Module, OrderedDict] = weakref.WeakKeyDictionary()
_reference = False  # set by `reference_path`


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Within it, every network in the process runs PyTorch's plain eager convolutions and activations,
    module by module: the path the fused one is compared with (`benchmarks/cpu_paths.py`, the tests)."""
    global _reference
    before, _reference = _reference, True
    try:
        yield
    finally:
        _reference = before


class ConvChain(nn.Sequential):
    """Convolutions in a row (each carrying its activation, folded BatchNorms left as identities), with
    the chain's input added to its output when `residual`: a stage `run_stages` can run fused."""

    residual = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return x + y if self.residual else y

    def fused_convolutions(self) -> list[FusedConv2d] | None:
        """Its convolutions in order, or None while anything but fusable convolutions and identities is in it."""
        convolutions = [layer for layer in self if isinstance(layer, FusedConv2d) and layer.fusable()]
        return convolutions if len(convolutions) == sum(not isinstance(layer, nn.Identity) for layer in self) else None


def run_stages(stages: Sequence[nn.Module], x: torch.Tensor, keep: Collection[int], *, fused: bool = True) -> dict[int, torch.Tensor]:
    """Run `stages` in order on `x` up to the last index in `keep`; return the outputs of those in `keep`.

    On a CPU, with float32 pictures of at least `FUSED_MIN_PIXELS` pixels, the leading `ConvChain`
    stages run fused, as one autograd function (`_ChainRun`); every other stage, every stage
    elsewhere, and every stage with `fused` False (a probe of a size nothing else runs, which would
    only make plans), runs as a module. Nothing is checked off the CPU, so `torch.compile` traces the
    network without a break.
    """
    last = max(keep)
    chains: list[tuple[list[FusedConv2d], bool]] = []
    if fused and x.device.type == "cpu" and _fusable(x):
        for index in range(last + 1):
            stage = stages[index]
            convolutions = stage.fused_convolutions() if isinstance(stage, ConvChain) else None
            if convolutions is None:
                break
            chains.append((convolutions, stage.residual))
    out: dict[int, torch.Tensor] = {}
    if chains:
        returned = sorted({index for index in keep if index < len(chains)} | {len(chains) - 1})
        out = dict(zip(returned, _ChainRun.apply(x, chains, returned)))
        x = out[len(chains) - 1]
    for index in range(len(chains), last + 1):
        x = out[index] = stages[index](x)
    return {index: out[index] for index in keep}


def _fusable(x: torch.Tensor) -> bool:
    """Whether a network run on `x` (on the CPU) goes through oneDNN's fused operator."""
    return (
        not _reference and x.dim() == 4 and x.dtype == torch.float32 and x.shape[-2] * x.shape[-1] >= FUSED_MIN_PIXELS
        and not torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.is_available()
    )


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
    """A convolution that may carry the activation after it (`activation`: "relu6" or None), fused on a
    CPU when its `ConvChain` runs through `run_stages`; called as a module, the plain convolution and activation.

    `extra_padding` is what a subclass pads the input by first, uneven if it likes (TensorFlow's
    "same" padding); the convolution's own padding is symmetric.
    """

    activation: str | None = None

    def extra_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Zeros around an input of this size (left, right, top, bottom), before the convolution's own padding."""
        return 0, 0, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = self.extra_padding(*x.shape[-2:])
        y = super().forward(F.pad(x, pads) if any(pads) else x)
        return F.relu6(y) if self.activation == "relu6" else y

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", activation={self.activation}" if self.activation else "")

    def fusable(self) -> bool:
        """Whether oneDNN can run it as planned: frozen float32 weights, zero padding, no dilation."""
        return (
            self.weight.dtype == torch.float32 and not self.weight.requires_grad and self.padding_mode == "zeros"
            and self.dilation == (1, 1) and isinstance(self.padding, tuple)
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


class _ChainRun(torch.autograd.Function):
    """Chains of convolutions (+ ReLU6, + residual) forward as oneDNN primitives, backward to the input only.

    `forward(x, chains, returned)`: `chains` are (convolutions, residual) in order; the outputs of the
    chains at the indices `returned` come back. What the backward needs is kept per convolution: its
    plan, its input where oneDNN's backward wants it (a strided layer), its output where ReLU6's
    gradient does. The outputs handed back are detached twins of the kept tensors, so no kept tensor
    holds this function's node (a reference cycle that only Python's garbage collector would free).
    """

    @staticmethod
    def forward(ctx, x, chains, returned):
        ctx.set_materialize_grads(False)
        ctx.chains, ctx.returned, ctx.kept = chains, returned, []
        keep = ctx.needs_input_grad[0]
        outputs = []
        for index, (convolutions, residual) in enumerate(chains):
            start = x
            for conv in convolutions:
                plan = conv._plan(x)
                y = torch.ops.mkldnn._convolution_pointwise(
                    x, plan.packed, conv.bias, plan.padding, plan.stride, [1, 1], plan.groups, plan.activation, plan.scalars, ""
                )
                if keep:
                    ctx.kept.append((plan, x if plan.transposed is None else None, y if plan.scalars else None))
                x = y
            if residual:
                x = x + start
            if index in returned:
                outputs.append(x.detach())
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        kept, ctx.kept = ctx.kept, None  # each layer's tensors go as soon as it is through
        if kept is None:
            raise RuntimeError("the fused CPU path keeps its activations for one backward pass only")
        from_above = dict(zip(ctx.returned, grads))
        grad = None
        for index in reversed(range(len(ctx.chains))):
            convolutions, residual = ctx.chains[index]
            if from_above.get(index) is not None:
                grad = from_above[index] if grad is None else grad + from_above[index]
            layers = kept[len(kept) - len(convolutions):]
            del kept[len(kept) - len(convolutions):]
            if grad is None:  # nothing asked of this chain or any above it
                continue
            through = grad
            owned = False  # autograd's gradient, or the one the residual adds back: never written over
            for plan, x, y in reversed(layers):
                if y is not None:  # ReLU6 passes the gradient where its output is strictly inside (0, 6), as its input was
                    if owned:  # in place: 27-48% faster than into a new tensor (2-core Xeon)
                        torch.ops.aten.hardtanh_backward.grad_input(grad, y, 0.0, 6.0, grad_input=grad)
                    else:
                        grad = torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)
                if plan.transposed is not None:
                    grad = torch.ops.mkldnn._convolution_pointwise(grad, plan.transposed, None, plan.padding, [1, 1], [1, 1], plan.groups, "none", [], "")
                else:
                    grad = torch.ops.aten.convolution_backward(
                        grad, x, plan.weight, None, plan.stride, plan.padding, [1, 1], False, [0, 0], plan.groups, [True, False, False]
                    )[0]
                owned = True
            if residual:
                grad += through
        return grad, None, None


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
