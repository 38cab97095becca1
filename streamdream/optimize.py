"""The image optimizer shared by every mode: normalized gradient ascent on an objective.

Each step rolls the image by a random shift (so tile seams and the network's stride grid never stay
in one place), computes the objective's gradient tile by tile (so memory is bounded at any image
size), undoes the roll, normalizes the gradient (globally, or per Laplacian-pyramid band), takes a
step and clamps to the valid pixel range. Octaves run the same ascent from coarse to fine, carrying
the dream residual up the pyramid. Devices, autocast and memory layout are decided here and only here;
on CUDA a stream's repeated steps are replayed as captured graphs (`streamdream.cuda_graphs`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import torch.nn.functional as F

from .convert import upload
from .cuda_graphs import Captured, GraphCache
from .models import Backbone
from .objectives import Objective


Progress = Callable[[int], None]


@dataclass(frozen=True)
class Ascent:
    """How one octave is optimized."""

    iterations: int = 10
    step: float = 0.012
    jitter: int = 32
    tile: int = 512
    lapnorm: bool = False
    lapnorm_levels: int = 4

    def with_(self, **changes) -> Ascent:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator for jitter and noise: shifts are drawn on the host, so results do not depend on the device."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the step is bandwidth- and launch-bound, bf16 halves both); fp32 elsewhere.

    The cast-weights cache is off: a CUDA graph must not capture tensors the cache frees on exit, and
    the frozen weights are cast once per forward either way.
    """
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def jitter_shifts(generator: torch.Generator, jitter: int, count: int) -> torch.Tensor:
    """`count` random (dy, dx) roll shifts in [-jitter, jitter], drawn on the host from the seeded generator.

    Drawing on the host keeps results independent of the device and needs no GPU synchronization;
    the shifts reach the device as data, so a captured step stays random under replay.
    """
    return torch.randint(-jitter, jitter + 1, (count, 2), generator=generator)


def roll(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`torch.roll(image, shift, (2, 3))` for a (dy, dx) shift held in a tensor.

    A gather with indices computed on the device (`shift` lives on the image's device), so the shift is
    an input of a captured graph rather than a constant baked into it; `roll(roll(x, s), -s)` is `x`.
    """
    height, width = image.shape[-2:]
    rows = torch.remainder(torch.arange(height, device=image.device) - shift[0], height)
    cols = torch.remainder(torch.arange(width, device=image.device) - shift[1], width)
    return image.index_select(2, rows).index_select(3, cols)


def tile_slices(length: int, tile: int) -> list[slice]:
    """Split `length` into the fewest near-equal pieces no longer than `tile` (no sliver at the end)."""
    count = max(1, math.ceil(length / tile))
    edges = [round(i * length / count) for i in range(count + 1)]
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def objective_gradient(
    model: Backbone, objective: Objective, image: torch.Tensor, tile: int, *, with_grad: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Gradient of `objective` w.r.t. `image` and its value, computed tile by tile.

    The value is the area-weighted mean of the tiles' values (objectives are means over positions).
    Only one tile's activations are alive at a time, which is what bounds memory.
    """
    height, width = image.shape[-2:]
    grad = torch.zeros_like(image) if with_grad else None
    total = torch.zeros((), device=image.device)
    for rows in tile_slices(height, tile):
        for cols in tile_slices(width, tile):
            patch = image[..., rows, cols].detach()
            if image.device.type == "cuda":
                patch = patch.contiguous(memory_format=torch.channels_last)
            with torch.set_grad_enabled(with_grad), autocast(image.device):
                patch.requires_grad_(with_grad)
                value = objective(model(patch, objective.layers))
            if grad is not None:
                (grad[..., rows, cols],) = torch.autograd.grad(value, patch)
            total = total + value.detach().float() * (patch.shape[-2] * patch.shape[-1])
    return grad, total / (height * width)


def evaluate(model: Backbone, objective: Objective, image: torch.Tensor, tile: int = 512) -> float:
    """The objective's value for `image` (no gradient), as the optimizer sees it."""
    return float(objective_gradient(model, objective, image, tile, with_grad=False)[1])


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _kernel(image: torch.Tensor) -> torch.Tensor:
    return _kernel_on(image.device, image.dtype).expand(image.shape[1], 1, 5, 5)


@lru_cache(maxsize=16)
def _kernel_on(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 5x5 binomial kernel, uploaded once per device: a host copy inside a CUDA graph capture would fail."""
    return torch.outer(_BINOMIAL, _BINOMIAL).to(device, dtype)


def _pyramid_down(image: torch.Tensor) -> torch.Tensor:
    padded = F.pad(image, (2, 2, 2, 2), mode="replicate")
    return F.conv2d(padded, _kernel(image), stride=2, groups=image.shape[1])


def _pyramid_up(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    pad = [s - (2 * n - 1) for s, n in zip(size, image.shape[-2:])]
    return F.conv_transpose2d(image, 4 * _kernel(image), stride=2, padding=2, output_padding=pad, groups=image.shape[1])


def laplacian_split(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass images, finest first, then the low-pass residual; `laplacian_merge` inverts it exactly."""
    bands = []
    for _ in range(levels - 1):
        if min(image.shape[-2:]) < 4:
            break
        low = _pyramid_down(image)
        bands.append(image - _pyramid_up(low, image.shape[-2:]))
        image = low
    return [*bands, image]


def laplacian_merge(bands: Sequence[torch.Tensor]) -> torch.Tensor:
    image = bands[-1]
    for band in reversed(bands[:-1]):
        image = band + _pyramid_up(image, band.shape[-2:])
    return image


def laplacian_normalize(grad: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Give every frequency band of the gradient the same RMS, so coarse structure grows as fast as fine texture."""
    bands = laplacian_split(grad, levels)
    return laplacian_merge([b / (b.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-8) for b in bands])


def gradient_step(image: torch.Tensor, shift: torch.Tensor, model: Backbone, objective: Objective, ascent: Ascent) -> torch.Tensor:
    """One normalized gradient step on `image` seen through a jitter roll by `shift`; returns the new image.

    A pure function of tensors with no host synchronization, so the same code runs eagerly and as a
    captured CUDA graph.
    """
    grad, _ = objective_gradient(model, objective, roll(image, shift), ascent.tile)
    grad = roll(grad, -shift)
    if ascent.lapnorm:
        grad = laplacian_normalize(grad, ascent.lapnorm_levels)
    grad = grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return (image + ascent.step * grad).clamp_(0.0, 1.0)


def ascend(
    image: torch.Tensor,
    model: Backbone,
    objective: Objective,
    ascent: Ascent,
    generator: torch.Generator,
    progress: Progress | None = None,
    graphs: GraphCache | None = None,
) -> torch.Tensor:
    """`ascent.iterations` normalized gradient steps on `image` (B x 3 x H x W in [0, 1]).

    With `graphs` (CUDA), sizes seen before run as replays of a captured step; everything else eagerly.
    """
    shifts = upload(jitter_shifts(generator, ascent.jitter, ascent.iterations), image.device)
    if graphs is not None and len(shifts):
        replayed = _replayed_ascent(graphs, image, shifts, model, objective, ascent, progress)
        if replayed is not None:
            return replayed
    for shift in shifts:
        image = gradient_step(image, shift, model, objective, ascent)
        if progress is not None:
            progress(1)
    return image


def _replayed_ascent(
    graphs: GraphCache, image: torch.Tensor, shifts: torch.Tensor, model: Backbone, objective: Objective, ascent: Ascent, progress: Progress | None
) -> torch.Tensor | None:
    """`ascend` as replays of one captured `gradient_step` per shift, or None when it should run eagerly."""

    def build() -> Captured:
        buffers = {"image": image.clone(), "shift": torch.zeros(2, dtype=torch.long, device=image.device)}
        return Captured(lambda: buffers["image"].copy_(gradient_step(buffers["image"], buffers["shift"], model, objective, ascent)), buffers, image.device)

    key = ("ascend", tuple(image.shape), image.dtype, image.device, id(model), id(objective), replace(ascent, iterations=0))
    with graphs.use(key, build) as captured:
        if captured is None:
            return None
        captured.buffers["image"].copy_(image)
        for shift in shifts:
            captured.buffers["shift"].copy_(shift)
            captured.replay()
            if progress is not None:
                progress(1)
        return captured.buffers["image"].clone()


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_side: int = 32) -> list[tuple[int, int]]:
    """Sizes of the octave pyramid, smallest first, ending at (height, width); none below `min_side`."""
    sizes = [(height, width)]
    for i in range(1, octaves):
        h, w = round(height / scale**i), round(width / scale**i)
        if min(h, w) < min_side:
            break
        sizes.append((h, w))
    return sizes[::-1]


def resize(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2]
    return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)


def dream_octaves(
    base: torch.Tensor,
    model: Backbone,
    objective: Objective,
    ascent: Ascent,
    *,
    octaves: int,
    octave_scale: float,
    generator: torch.Generator,
    residual: torch.Tensor | None = None,
    progress: Progress | None = None,
    graphs: GraphCache | None = None,
) -> torch.Tensor:
    """Ascend over an octave pyramid of `base`, coarse to fine; returns the dreamed image at full size.

    The dream lives in a residual over the (resized) base image: each octave starts from its own
    resize of `base`, never from an upscaled blur of it, so the photo's detail stays sharp. A given
    `residual` (a warm start, e.g. the previous video frame's dream carried along the flow) seeds the
    pyramid; moving up an octave adds back the fine part of it that the coarser octave could not hold.
    """
    detail: torch.Tensor | None = None
    carried_prev: torch.Tensor | None = None
    image = base
    for size in octave_sizes(*base.shape[-2:], octaves, octave_scale):
        start = resize(base, size)
        carried = resize(residual, size) if residual is not None else None
        if detail is None:
            detail = carried
        else:
            detail = resize(detail, size)
            if carried is not None:
                detail = detail + carried - resize(carried_prev, size)
        image = start if detail is None else (start + detail).clamp(0.0, 1.0)
        image = ascend(image, model, objective, ascent, generator, progress, graphs)
        detail, carried_prev = image - start, carried
    return image


LossFn = Callable[[torch.Tensor], torch.Tensor]


def descent_step(x: torch.Tensor, optimizer: torch.optim.Optimizer, loss_fn: LossFn) -> None:
    """One optimizer step on the leaf `x` against `loss_fn(x)`, then the clamp to [0, 1].

    The closure form serves both Adam and L-BFGS (which re-evaluates the loss in its line search).
    """

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device):
            loss = loss_fn(x)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        x.clamp_(0.0, 1.0)


def minimize(
    image: torch.Tensor,
    loss_fn: LossFn,
    *,
    steps: int,
    lr: float = 0.02,
    method: str = "adam",
    progress: Progress | None = None,
) -> torch.Tensor:
    """Descend `loss_fn(image)` with Adam or L-BFGS, keeping pixels in [0, 1]; returns the new image.

    This is the second optimizer of the project (losses that should reach a minimum: style, feature
    inversion), beside `ascend` (objectives that should keep growing: dreams). The loss sees the whole
    image, so it is for sizes that fit in memory; autocast follows the device as in `ascend`.
    """
    x = image.detach().clone().requires_grad_(True)
    if method == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam([x], lr=lr)
    elif method == "lbfgs":
        optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=20, line_search_fn="strong_wolfe")
    else:
        raise ValueError(f"unknown method {method!r}; use adam or lbfgs")
    for _ in range(steps):
        descent_step(x, optimizer, loss_fn)
        if progress is not None:
            progress(1)
    return x.detach()


def replayed_minimize(
    graphs: GraphCache,
    key: Hashable,
    image: torch.Tensor,
    targets: dict[str, torch.Tensor],
    make_loss: Callable[[dict[str, torch.Tensor]], LossFn],
    *,
    steps: int,
    lr: float,
) -> torch.Tensor | None:
    """`minimize` with Adam as replays of one captured `descent_step`, or None when it should run eagerly.

    A captured loss cannot close over one frame's tensors, so it is built once by `make_loss` from
    static copies of `targets` (same names), and each call copies its own `targets` into them. The
    Adam state is zeroed for every call, which is exactly a fresh optimizer. `key` names the loss and
    size for the cache (the learning rate is added here).
    """

    def build() -> Captured:
        buffers = {name: t.detach().clone() for name, t in targets.items()}
        x = image.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr, capturable=image.device.type == "cuda")
        loss_fn = make_loss(buffers)
        return Captured(lambda: descent_step(x, optimizer, loss_fn), {**buffers, "x": x}, image.device, state=optimizer)

    with graphs.use((key, lr), build) as captured:
        if captured is None:
            return None
        with torch.no_grad():
            for name, target in {**targets, "x": image}.items():
                captured.buffers[name].copy_(target)
            for state in captured.state.state.values():
                for value in state.values():
                    value.zero_()
        for _ in range(steps):
            captured.replay()
        return captured.buffers["x"].detach().clone()
