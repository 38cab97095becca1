"""THE image optimizer: one loop under every mode (dream, style, the gradient tools; stills, frames, live).

`optimize` takes an image, an objective (higher is better, `streamdream.objectives`) and a step rule,
and as options an octave schedule, a warm start's residual and the fast path (captured CUDA graphs).
Dream, style and the gradient tools are thin modes that build an objective and call it.

The octave pyramid with its detail re-injection is written once, in `optimize`.

The step rules are small frozen dataclasses (hashable: they are part of a captured graph's key):
- `NormalizedAscent`, DeepDream's step, for objectives that should keep growing: the image is rolled
  by a random shift (so tile seams and the network's stride grid never stay in one place), the
  gradient is computed tile by tile (so memory is bounded at any image size), unrolled, normalized
  (globally, or per Laplacian-pyramid band) and added; an optional light blur every few steps.
- `Adam` and `LBFGS`, for objectives with an optimum (style, inversion): descent on the negated
  objective over the whole image.
Every step ends clamped to the valid pixel range. Devices, autocast and memory layout are decided here
and only here; a rule's step is written over static buffers (`streamdream.cuda_graphs.static_step`), so
on CUDA a stream's repeated steps are replayed as captured graphs by the same code that runs eagerly.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Protocol

import torch
import torch.nn.functional as F

from .convert import upload
from .cuda_graphs import Captured, GraphCache, static_step
from .models import Backbone
from .objectives import Objective


Progress = Callable[[int], None]
Size = tuple[int, int]
Targets = Mapping[str, torch.Tensor]


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
    """`torch.roll(image, shift, (2, 3))` for (dy, dx) shifts held in a tensor: one (shape 2 or 1 x 2)
    for the whole batch, or one per sample (B x 2, the frames of several streams in one batch);
    `roll(roll(x, s), -s)` is `x`.

    On a CPU the shifts are read as numbers (nothing to wait for) and `torch.roll` copies whole rows:
    3-4x faster than `gather_roll` at 512 px on the 2-core Xeon. Elsewhere `gather_roll`.
    """
    if image.device.type != "cpu":
        return gather_roll(image, shift)
    shifts = shift.view(-1, 2).tolist()
    if len(shifts) == 1:
        return torch.roll(image, shifts[0], (2, 3))
    return torch.cat([torch.roll(sample, dydx, (2, 3)) for sample, dydx in zip(image.split(1), shifts)])


def gather_roll(image: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`roll` as a gather with indices computed on the device (`shift` lives on the image's device), so
    the shift is an input of a captured CUDA graph rather than a constant baked into it."""
    batch, channels, height, width = image.shape
    shift = shift.view(-1, 2, 1)
    rows = torch.remainder(torch.arange(height, device=image.device) - shift[:, 0], height)  # S x H
    cols = torch.remainder(torch.arange(width, device=image.device) - shift[:, 1], width)  # S x W
    if shift.shape[0] == 1:
        return image.index_select(2, rows[0]).index_select(3, cols[0])
    index = (rows[:, :, None] * width + cols[:, None, :]).view(batch, 1, height * width).expand(-1, channels, -1)
    return image.flatten(2).gather(2, index).view_as(image)


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
            patch = image[..., rows, cols].detach().contiguous(memory_format=model.memory_format)
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


def gradient_step(
    image: torch.Tensor, shift: torch.Tensor, step: torch.Tensor, model: Backbone, objective: Objective, rule: NormalizedAscent
) -> torch.Tensor:
    """One normalized gradient step of size `step` (per sample, B x 1 x 1 x 1) on `image` seen through
    a jitter roll by `shift`; returns the new image.

    The gradient is normalized per sample, so the samples of a batch move as they would alone. A pure
    function of tensors with no host synchronization, so the same code runs eagerly and as a captured
    CUDA graph.
    """
    grad, _ = objective_gradient(model, objective, roll(image, shift), rule.tile)
    grad = roll(grad, -shift)
    if rule.lapnorm:
        grad = laplacian_normalize(grad, rule.lapnorm_levels)
    grad = grad / (grad.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return (image + step * grad).clamp_(0.0, 1.0)


def descent_step(x: torch.Tensor, optimizer: torch.optim.Optimizer, objective: Objective, model: Backbone) -> None:
    """One optimizer step on the leaf `x` against the negated objective, then the clamp to [0, 1].

    The closure form serves both Adam and L-BFGS (which re-evaluates the loss in its line search).
    """

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device):
            loss = -objective(model(x, objective.layers))
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        x.clamp_(0.0, 1.0)


@dataclass(frozen=True, eq=False)
class Targeted:
    """An objective built from named target tensors (a stream frame's content features, its carried image).

    A captured step cannot close over one frame's tensors: it is built once over static copies of
    `targets` (same names) and every later call copies its own in, so one graph serves every frame of
    a size. `key` names what `build` makes, for the graph cache.
    """

    build: Callable[[Targets], Objective]
    targets: Targets
    key: Hashable


ObjectiveLike = Objective | Targeted | Callable[[Size], Objective]
"""What `optimize` takes: an Objective, a `Targeted` one, or the Objective at an octave's (height, width)."""


Generators = torch.Generator | Sequence[torch.Generator] | None
"""The jitter's random source: one for the whole batch, or one per sample (the streams of a batch)."""


class StepRule(Protocol):
    """How the image moves, step by step, at one octave."""

    def run(
        self, image: torch.Tensor, model: Backbone, objective: Targeted, steps: int, generator: Generators, graphs: GraphCache | None, progress: Progress | None
    ) -> torch.Tensor:
        """`steps` steps on `image` (left as it was); the new image. With `graphs`, as a captured step
        from a size's second use on (`static_step`)."""
        ...


def _key(rule: StepRule, image: torch.Tensor, model: Backbone, objective: Targeted) -> Hashable:
    """What a captured step depends on: the rule, the image's shape and type, the model and the objective."""
    return (rule, tuple(image.shape), image.dtype, image.device, id(model), objective.key)


@dataclass(frozen=True)
class NormalizedAscent:
    """DeepDream's step: `x += step * g / mean|g|` on the jitter-rolled, tiled gradient (see `gradient_step`).

    No defaults for the tunable numbers: the modes build their rules from `streamdream.settings`.
    `step` may be one size per sample (a batch of live streams at different strengths); it is an
    input of the captured step, not part of its key, so a strength slider never causes a new capture.

    `blur_every` > 0 blurs the image (Gaussian, `blur_sigma` px) after every that many steps and at
    the end of each octave: with Laplacian normalization it keeps an image grown from noise free of
    the high-frequency patterns a class gradient prefers.
    """

    step: float | tuple[float, ...]
    jitter: int
    tile: int
    lapnorm: bool = False
    lapnorm_levels: int = 4
    blur_every: int = 0  # 0: never
    blur_sigma: float = 0.0

    def run(self, image, model, objective, steps, generator, graphs, progress):  # typed in StepRule
        generators = generator if isinstance(generator, Sequence) else [generator]
        shifts = upload(torch.stack([jitter_shifts(g, self.jitter, steps) for g in generators], 1), image.device)  # steps x G x 2
        sizes = torch.tensor(self.step if isinstance(self.step, tuple) else (self.step,), dtype=image.dtype)
        inputs = {**objective.targets, "image": image, "shift": shifts[0], "step": upload(sizes.view(-1, 1, 1, 1), image.device)}

        def build(buffers: dict[str, torch.Tensor], capture: bool) -> Captured:
            loss = objective.build(buffers)

            def step() -> None:
                buffers["image"].copy_(gradient_step(buffers["image"], buffers["shift"], buffers["step"], model, loss, self))

            return Captured(step, buffers, image.device, capture=capture)

        with static_step(graphs, _key(replace(self, step=0.0), image, model, objective), build, inputs) as captured:
            for done, shift in enumerate(shifts, 1):
                captured.buffers["shift"].copy_(shift)
                captured.replay()
                if self.blur_every and (done % self.blur_every == 0 or done == steps):
                    captured.buffers["image"].copy_(_blur(captured.buffers["image"], self.blur_sigma))
                if progress is not None:
                    progress(1)
            return captured.buffers["image"].clone()


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    import torchvision.transforms.functional as TF  # here: only class visualizations blur (see `models.efficientnet`)

    return TF.gaussian_blur(image, 2 * math.ceil(3 * sigma) + 1, sigma)


class Descent(ABC):
    """Descent on the negated objective with a torch optimizer (a fresh one per octave and call). The
    loss sees the whole image, so it is for sizes that fit in memory."""

    replayable = True  # whether the step may run as a captured graph

    @abstractmethod
    def optimizer(self, x: torch.Tensor, capture: bool) -> torch.optim.Optimizer:
        """The optimizer of the leaf `x`; `capture`: it will be captured in a CUDA graph."""

    def run(self, image, model, objective, steps, generator, graphs, progress):  # typed in StepRule
        def build(buffers: dict[str, torch.Tensor], capture: bool) -> Captured:
            x = buffers["x"].requires_grad_(True)
            optimizer = self.optimizer(x, capture)
            loss = objective.build(buffers)

            def reset() -> None:  # a replayed step's state, zeroed: exactly a fresh Adam (L-BFGS never replays)
                for state in optimizer.state.values():
                    for value in state.values():
                        value.zero_()

            return Captured(lambda: descent_step(x, optimizer, loss, model), buffers, image.device, reset=reset, capture=capture)

        graphs = graphs if self.replayable else None
        with static_step(graphs, _key(self, image, model, objective), build, {**objective.targets, "x": image}) as captured:
            for _ in range(steps):
                captured.replay()
                if progress is not None:
                    progress(1)
            return captured.buffers["x"].detach().clone()


@dataclass(frozen=True)
class Adam(Descent):
    """Adam at learning rate `lr`, about how far a pixel moves per step."""

    lr: float

    def optimizer(self, x: torch.Tensor, capture: bool) -> torch.optim.Optimizer:
        return torch.optim.Adam([x], lr=self.lr, capturable=capture and x.device.type == "cuda")


@dataclass(frozen=True)
class LBFGS(Descent):
    """L-BFGS with a strong-Wolfe line search, one iteration per step: far fewer steps than Adam on
    smooth losses (feature inversion). The line search reads the loss on the host, so it runs eagerly."""

    history: int = 20
    replayable = False

    def optimizer(self, x: torch.Tensor, capture: bool) -> torch.optim.Optimizer:
        return torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=self.history, line_search_fn="strong_wolfe")


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_side: int = 32) -> list[Size]:
    """Sizes of the octave pyramid, smallest first, ending at (height, width); none below `min_side`."""
    sizes = [(height, width)]
    for i in range(1, octaves):
        h, w = round(height / scale**i), round(width / scale**i)
        if min(h, w) < min_side:
            break
        sizes.append((h, w))
    return sizes[::-1]


@dataclass(frozen=True)
class Octaves:
    """An octave schedule: up to `count` sizes, each `scale` times the one before, coarse to fine."""

    count: int
    scale: float

    def sizes(self, height: int, width: int) -> list[Size]:
        return octave_sizes(height, width, self.count, self.scale)


def resize(image: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2]
    return F.interpolate(image, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrinking)


def optimize(
    image: torch.Tensor,
    model: Backbone,
    objective: ObjectiveLike,
    rule: StepRule,
    *,
    steps: int,
    schedule: Octaves | None = None,
    residual: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    graphs: GraphCache | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Optimize `image` (B x 3 x H x W in [0, 1]) for `objective`: `steps` steps of `rule` per octave of
    `schedule` (default: the image's size only), coarse to fine; returns the result at full size.

    `objective`: an Objective; a `Targeted` one (the fast path of stream frames); or a function from
    an octave's (height, width) to its Objective, when its targets depend on the size (style).
    The change each octave makes lives in a detail image over the (resized) input: each octave starts
    from its own resize of `image` plus the detail of the octave before, upsampled, never from an
    upscaled blur of the result, so the picture's own fine detail stays sharp. `residual`, a warm
    start (e.g. the previous video frame's dream carried along the flow), seeds the detail; moving up
    an octave adds back the fine part of it that the coarser octave could not hold. `generator` draws
    the jitter. With `graphs` (CUDA), sizes seen before run as replays of a captured step. `steps`
    may be 0: the warm start alone.
    """
    detail: torch.Tensor | None = None
    carried_prev: torch.Tensor | None = None
    result = image
    sizes = schedule.sizes(*image.shape[-2:]) if schedule is not None else [tuple(image.shape[-2:])]
    for size in sizes:
        start = resize(image, size)
        carried = resize(residual, size) if residual is not None else None
        if detail is None:
            detail = carried
        else:
            detail = resize(detail, size)
            if carried is not None:
                detail = detail + carried - resize(carried_prev, size)
        result = start if detail is None else (start + detail).clamp(0.0, 1.0)
        if steps > 0:
            result = rule.run(result, model, _targeted(objective, size), steps, generator, graphs, progress)
        detail, carried_prev = result - start, carried
    return result


def _targeted(objective: ObjectiveLike, size: Size) -> Targeted:
    if isinstance(objective, Targeted):
        return objective
    if not isinstance(objective, Objective):
        objective = objective(size)
    return Targeted(lambda _: objective, {}, id(objective))
