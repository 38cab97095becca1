"""The scheduler: a frame's model work, planned, and many live streams' planned frames run as batches.

On a GPU a live step is launch-bound (hundreds of small kernels per forward and backward pass), so
a batch of frames costs little more than one; on a small CPU frame a batch still pays for its
overheads once. So a stream's frame is not run where it is decided: the stream plans it (`Work`,
`StreamSession.begin`), and one `tick` gathers the plans of every stream with a pending frame and
runs them. Works with the same `batch_key` run as one batch: optimizer calls with the same model,
working size, step count, octaves and step rule but the step size as one `optimize` call
(`run_stacked`), each sample with its own objective, strength, warm start and jitter; a style
network's frames of one size as one pass (`streamdream.style_net.PaintCall`). The rest run one by one.

Frames of slightly different sizes would never share a batch, nor a captured CUDA graph; `tick` pads
each frame to a size bucket (`to_bucket`) first and crops the result back.

The live engine (`streamdream.engine`) calls `tick` for every round of its worker and the capacity
probe (`streamdream.admission.probe_capacity`) for its measurements, so what the probe measures is
what the engine runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from .cuda_graphs import GraphCache
from .models import Backbone
from .objectives import Objective, per_sample
from .optimize import NormalizedAscent, Octaves, Progress, Targeted, optimize

BUCKET = 16
"""Working sides are multiples of this: cameras of nearly the same size (640x360 and 640x368) share
a batch and a captured graph, at the cost of at most 15 padded rows and columns."""


# ---- planned work ---------------------------------------------------------------------------------


class Work(Protocol):
    """A frame's model work, planned but not yet run (`streamdream.carry.FrameMode.plan_next_frame`).

    Works with equal, non-None `batch_key`s may run as one batch (`run_planned`): theirs is the
    static `run_batch(works) -> results`.
    """

    batch_key: Hashable | None

    def run(self) -> torch.Tensor: ...


@dataclass(frozen=True, eq=False)
class Deferred:
    """Work that can only run alone: a function to call."""

    fn: Callable[[], torch.Tensor]
    batch_key = None

    def run(self) -> torch.Tensor:
        return self.fn()


@dataclass(frozen=True, eq=False)
class OptimizeCall:
    """One `optimize` call, planned: its arguments, kept so that the calls of several streams (each on
    one 1 x 3 x H x W frame) can be stacked into one (`run_stacked`)."""

    image: torch.Tensor
    model: Backbone
    objective: Objective
    rule: NormalizedAscent
    steps: int
    schedule: Octaves | None = None
    residual: torch.Tensor | None = None
    generator: torch.Generator | None = None
    graphs: GraphCache | None = None

    def run(self, progress: Progress | None = None) -> torch.Tensor:
        return optimize(
            self.image, self.model, self.objective, self.rule, steps=self.steps, schedule=self.schedule,
            residual=self.residual, generator=self.generator, graphs=self.graphs, progress=progress,
        )

    @staticmethod
    def run_batch(calls: Sequence[OptimizeCall]) -> list[torch.Tensor]:
        return run_stacked(calls)

    @property
    def batch_key(self) -> Hashable | None:
        """Calls that can share every step: same model, size, step count, octaves and rule but the step size."""
        image = self.image
        if image.shape[0] != 1:
            return None
        return (id(self.model), replace(self.rule, step=0.0), self.steps, self.schedule, tuple(image.shape), image.dtype, image.device)


def run_stacked(calls: Sequence[OptimizeCall]) -> list[torch.Tensor]:
    """Run calls of equal `batch_key` as one batch: each optimizer step runs once for all of them.

    Each sample keeps its own objective (the batch objective is the sum of the samples' own, so each
    sample's gradient is its own), its own step size, warm start and jitter (drawn from its own
    generator, as it would be alone): the results equal those of the calls run one by one, up to
    float rounding in batched convolutions. The first call's graph cache serves the batch.
    """
    if len(calls) == 1:
        return [calls[0].run()]
    first = calls[0]
    objectives = [c.objective for c in calls]
    # keyed by the samples' objectives (a captured step keeps them alive, so their ids stay theirs)
    objective = Targeted(lambda _: per_sample(objectives), {}, ("per-sample", *map(id, objectives)))
    residual = None
    if any(c.residual is not None for c in calls):
        residual = torch.cat([c.residual if c.residual is not None else torch.zeros_like(c.image) for c in calls])
    out = optimize(
        torch.cat([c.image for c in calls]),
        first.model,
        objective,
        replace(first.rule, step=tuple(float(c.rule.step) for c in calls)),
        steps=first.steps,
        schedule=first.schedule,
        residual=residual,
        generator=[c.generator for c in calls],
        graphs=first.graphs,
    )
    return list(out.split(1))


def batches(works: Sequence[Work]) -> list[list[int]]:
    """The positions of `works` grouped into batches: equal `batch_key`s together, the rest alone."""
    groups: dict[object, list[int]] = {}
    for index, work in enumerate(works):
        key = work.batch_key
        groups.setdefault(("alone", index) if key is None else key, []).append(index)
    return list(groups.values())


def run_planned(works: Sequence[Work], groups: list[list[int]] | None = None) -> list[torch.Tensor | BaseException]:
    """Run planned works, each group of equal `batch_key` as one batch; results (or the group's error) in order.

    `groups`: `batches(works)`, when the caller has it already. A failing batch fails only its own
    streams: the error is returned in their places.
    """
    results: list[torch.Tensor | BaseException] = [None] * len(works)  # type: ignore[list-item]
    for indices in batches(works) if groups is None else groups:
        try:
            if len(indices) == 1:
                outs = [works[indices[0]].run()]
            else:
                outs = works[indices[0]].run_batch([works[i] for i in indices])
        except Exception as error:  # noqa: BLE001 - handed to the streams of this group
            outs = [error] * len(indices)
        for index, out in zip(indices, outs):
            results[index] = out
    return results


# ---- size buckets ---------------------------------------------------------------------------------


def bucket_size(height: int, width: int) -> tuple[int, int]:
    """The working size of a frame: each side rounded up to a multiple of `BUCKET`."""
    return -(-height // BUCKET) * BUCKET, -(-width // BUCKET) * BUCKET


def to_bucket(rgb: np.ndarray) -> np.ndarray:
    """`rgb` padded at the bottom and right to its bucket size by mirroring its edge (itself when it fits).

    Padding, not resizing: the picture a visitor sees is never resampled, and cropping the result
    back (`rgb[:height, :width]`) is exact. The mirrored margin gives the flow and the dream plausible
    content there, so the frame's own edge is not treated as a border.
    """
    height, width = bucket_size(*rgb.shape[:2])
    if (height, width) == rgb.shape[:2]:
        return rgb
    return cv2.copyMakeBorder(rgb, 0, height - rgb.shape[0], 0, width - rgb.shape[1], cv2.BORDER_REFLECT_101)


# ---- the tick -------------------------------------------------------------------------------------


class Stream(Protocol):
    """What `tick` needs of a stream: `streamdream.session.StreamSession`'s two halves of a frame."""

    def prepare(self, rgb: np.ndarray, *, at_once: bool = False) -> Any: ...

    def begin(self, prepared: Any) -> Any: ...  # a `StartedFrame`, whose `work` is planned

    def finish(self, frame: Any, out: torch.Tensor) -> np.ndarray: ...


@dataclass(frozen=True)
class Tick:
    """What one `tick` did: each stream's result (H x W x 3 uint8, its frame's own size) or its error,
    in order, and how many batches and frames the model ran."""

    results: list[np.ndarray | BaseException]
    batches: int
    frames: int


def tick(frames: Sequence[tuple[Stream, np.ndarray]], *, map_: Callable[..., Iterable[Any]] = map,
         lock: contextlib.AbstractContextManager | None = None) -> Tick:
    """One round of the scheduler: every stream's frame (H x W x 3 uint8) in, every stream's result out.

    Each frame is padded to its bucket and prepared (its optical flow) through `map_` (the engine
    passes a thread pool's `map`: OpenCV's flow releases the GIL, so the streams' flows run in
    parallel, and each stream's two flows at once while there is a core for every flow); then, on
    the calling thread, each is planned and the plans run as batches, under `lock` (the engine's
    compute lock) when given; then each stream keeps its result and the padding is
    cropped off. Every torch operation stays on the calling thread: a pool thread that ran one would
    keep an OpenMP team of its own and slow every step down (`runtime.on_own_thread`). A stream whose
    frame fails gets its error in its place; the others are served.
    """

    at_once = 2 * len(frames) <= (os.cpu_count() or 1)  # each stream's two flows on two cores, while there are enough

    def prepare(item: tuple[Stream, np.ndarray]) -> Any:
        stream, rgb = item
        try:
            return stream.prepare(to_bucket(rgb), at_once=at_once)
        except Exception as error:  # noqa: BLE001 - handed to this stream's owner
            return error

    def begin(stream: Stream, prepared: Any) -> Any:
        try:
            return prepared if isinstance(prepared, BaseException) else stream.begin(prepared)
        except Exception as error:  # noqa: BLE001 - handed to this stream's owner
            return error

    started = [begin(stream, prepared) for (stream, _), prepared in zip(frames, map_(prepare, frames))]
    planned = [i for i, frame in enumerate(started) if not isinstance(frame, BaseException)]
    works = [started[i].work for i in planned]
    groups = batches(works)
    with lock if lock is not None else contextlib.nullcontext():
        outputs = run_planned(works, groups)
    results: list[np.ndarray | BaseException] = list(started)
    for i, out in zip(planned, outputs):
        stream, rgb = frames[i]
        try:
            if isinstance(out, BaseException):
                raise out
            height, width = rgb.shape[:2]
            results[i] = np.ascontiguousarray(stream.finish(started[i], out)[:height, :width])
        except Exception as error:  # noqa: BLE001 - handed to this stream's owner
            results[i] = error
    return Tick(results, len(groups), len(works))
