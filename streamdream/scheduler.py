"""Many live streams on one model: their planned frames run as batches.

On a GPU a live step is launch-bound (hundreds of small kernels per forward and backward pass), so
a batch of frames costs little more than one; on a small CPU frame a batch still pays for its
overheads once. The live engine therefore plans the pending frame of every stream
(`StreamSession.begin`) and hands the planned work here: works with the same `batch_key` (same
model, working size, step count, octaves and step rule but the step size) run as one
`optimize` call (`streamdream.optimize.run_stacked`), each sample with its own objective, strength,
warm start and jitter; the rest run one by one.

Frames of slightly different sizes would never share a batch, nor a captured CUDA graph; the engine
pads each frame to a size bucket (`to_bucket`) first and crops the result back.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .optimize import Work, run_stacked

BUCKET = 16
"""Working sides are multiples of this: cameras of nearly the same size (640x360 and 640x368) share
a batch and a captured graph, at the cost of at most 15 padded rows and columns."""


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
                outs = run_stacked([works[i] for i in indices])  # only `OptimizeCall`s have batch keys
        except Exception as error:  # noqa: BLE001 - handed to the streams of this group
            outs = [error] * len(indices)
        for index, out in zip(indices, outs):
            results[index] = out
    return results

