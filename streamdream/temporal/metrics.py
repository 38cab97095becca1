"""Numbers for comparing temporal-coherence settings: how much outputs flicker, how far they stray.

`warping_error` (Lai et al. 2018) measures flicker: how much each output frame differs from
the previous output carried along the motion of the input video, counted only where that
motion is trustworthy. `effect` measures how far the outputs are from the inputs, so a
method cannot score well on flicker merely by doing nothing. Both read frames one at a time,
so whole videos can be scored from a decoder without holding them in memory.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .consistency import in_frame_mask
from .flow import FlowEstimator, JudgeFlow, flow_to_tensor
from .motion import estimate_motion
from .warp import warp

_CPU = torch.device("cpu")


@dataclass
class TemporalStats:
    """Running weighted mean of per-pixel values, summed in float64 so long videos stay exact."""

    total: float = 0.0
    weight: float = 0.0

    def add(self, values: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Add `values`, each with its weight (1 for all when `weights` is None)."""
        if weights is None:
            self.total += values.sum(dtype=torch.float64).item()
            self.weight += values.numel()
        else:
            self.total += (values * weights).sum(dtype=torch.float64).item()
            self.weight += weights.sum(dtype=torch.float64).item()

    @property
    def mean(self) -> float:
        """The weighted mean so far; NaN while no weight has been added."""
        return self.total / self.weight if self.weight else math.nan


def warping_error(
    outputs: Iterable[np.ndarray],
    inputs: Iterable[np.ndarray] | None = None,
    *,
    flows: Iterable[np.ndarray] | None = None,
    estimator: FlowEstimator | None = None,
) -> float:
    """Return E = sum_t sum M_t (O_t - warp(O_{t-1}))^2 / sum_t sum M_t over frames t = 1..T-1.

    Pixel values are in [0, 1] and the squared difference is averaged over the 3 channels.
    O_{t-1} is warped along the backward flow t -> t-1 and M_t is 1 where that flow is trusted.
    Give exactly one source of motion:

    * `inputs`, the frames the outputs were made from: flows both ways between consecutive
      inputs are estimated with `estimator` (default `JudgeFlow`, full-resolution DIS) and M_t comes from the
      forward-backward `occlusion_mask`. Flow comes from the inputs, not the outputs, because
      stylised frames are what is being judged and would bias their own motion estimate.
    * `flows`, ground-truth backward flows (H x W x 2, t -> t-1) for t = 1..T-1; then M_t only
      drops pixels whose source lies outside the frame.

    Frames are H x W x 3 uint8 RGB (or float RGB already in [0, 1]); all iterables may be
    one-pass iterators, and only two frames are held at a time.
    """
    if (inputs is None) == (flows is None):
        raise ValueError("warping_error needs exactly one of inputs= or flows=")
    if flows is not None and estimator is not None:
        raise ValueError("estimator= is only used with inputs=; ground-truth flows need none")
    if inputs is not None:
        motion = _estimated_motion(inputs, estimator or JudgeFlow())
    else:
        motion = _given_motion(flows)
    outputs = iter(outputs)
    first = next(outputs, None)
    previous = None if first is None else _to_tensor(first)
    stats = TemporalStats()
    pairs = 0
    for output, (backward, mask) in zip(outputs, motion, strict=True):
        current = _to_tensor(output)
        if current.shape != previous.shape:
            raise ValueError(f"output frame {pairs + 1} changed size: {current.shape[-2:]}")
        stats.add(_warp_residual(current, previous, backward), mask)
        previous = current
        pairs += 1
    if pairs == 0:
        raise ValueError("warping_error needs at least two frames")
    return stats.mean


CUT_FACTOR = 10.0  # a pair whose input warping error exceeds this many times the clip's median is a cut
CUT_FLOOR = 1e-3  # ... and exceeds this (an RMS change of 8/255 along the flow), so still clips have no cuts


def video_scores(inputs: Iterable[np.ndarray], outputs: Iterable[np.ndarray], estimator: FlowEstimator | None = None) -> dict[str, float]:
    """Score a processed video against its input in one pass: what `streamdream evaluate` prints.

    Input frames of another size than the outputs are resized to the outputs' size first. Flow and
    occlusion masks come from the input frames only, by `estimator` (default `JudgeFlow`, not the
    renderer's DIS), forward-backward checked as in `occlusion_mask`.

    * `warping_error`: the outputs' flicker (Lai et al. 2018, masked), over the frame pairs that are
      not cuts; `input_warping_error`: the inputs' own over the same pairs and pixels, the floor
      (flow and interpolation error alone).
    * `cuts`: pairs left out because the input's own warping error jumps there (above `CUT_FACTOR`
      times the clip's median and `CUT_FLOOR`) or no pixel could be judged: across a scene cut the
      flow means nothing, and one such pair would outweigh the rest of the clip.
    * `judged`: the share of pixels of the counted pairs whose flow passed the check.
    * `effect`: mean |output - input| over all frames.
    """
    estimator = estimator or JudgeFlow()
    distance = TemporalStats()
    pairs: list[tuple[float, float, float]] = []  # per frame pair: output and input error sums, mask sum
    previous: tuple[np.ndarray, torch.Tensor, torch.Tensor] | None = None
    frames, pixels = 0, 0
    for input_rgb, output_rgb in itertools.zip_longest(inputs, outputs):
        if input_rgb is None or output_rgb is None:
            raise ValueError(f"the videos have different frame counts (they part after {frames} frames)")
        if input_rgb.shape != output_rgb.shape:  # e.g. rendered with --max-side: judge at the output's size
            input_rgb = cv2.resize(input_rgb, output_rgb.shape[1::-1], interpolation=cv2.INTER_AREA)
        current_in, current_out = _to_tensor(input_rgb), _to_tensor(output_rgb)
        distance.add((current_out - current_in).abs())
        if previous is not None:
            motion = estimate_motion(estimator, previous[0], input_rgb, _CPU)
            out_error = _warp_residual(current_out, previous[2], motion.backward)
            in_error = _warp_residual(current_in, previous[1], motion.backward)
            pairs.append(tuple((values * motion.mask).sum(dtype=torch.float64).item() for values in (out_error, in_error, torch.ones_like(in_error))))
        previous = (input_rgb, current_in, current_out)
        pixels = input_rgb.shape[0] * input_rgb.shape[1]
        frames += 1
    if frames < 2:
        raise ValueError("scoring a video needs at least two frames")
    input_means = [in_sum / weight if weight else math.inf for _, in_sum, weight in pairs]
    finite = [m for m in input_means if math.isfinite(m)]
    limit = max(CUT_FACTOR * float(np.median(finite)), CUT_FLOOR) if finite else 0.0
    kept = [pair for pair, mean in zip(pairs, input_means) if mean <= limit]
    weight = sum(w for _, _, w in kept)
    return {
        "frames": frames,
        "warping_error": sum(o for o, _, _ in kept) / weight if weight else math.nan,
        "input_warping_error": sum(i for _, i, _ in kept) / weight if weight else math.nan,
        "effect": distance.mean,
        "judged": weight / (pixels * len(kept)) if kept else 0.0,
        "cuts": len(pairs) - len(kept),
    }


def _warp_residual(current: torch.Tensor, previous: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared difference between a frame and the previous one carried along the flow."""
    return (current - warp(previous, backward)).pow(2).mean(dim=1, keepdim=True)


def effect(outputs: Iterable[np.ndarray], inputs: Iterable[np.ndarray]) -> float:
    """Return the mean |O - I| over all pixels, channels and frames, in [0, 1].

    Frames are H x W x 3 uint8 RGB (or float RGB in [0, 1]), paired in order; iterators work.
    """
    stats = TemporalStats()
    for output, input_ in zip(outputs, inputs, strict=True):
        out, inp = _to_tensor(output), _to_tensor(input_)
        if out.shape != inp.shape:
            raise ValueError(f"output {out.shape[-2:]} and input {inp.shape[-2:]} differ in size")
        stats.add((out - inp).abs())
    if stats.weight == 0:
        raise ValueError("effect needs at least one frame")
    return stats.mean


def _estimated_motion(
    inputs: Iterable[np.ndarray], estimator: FlowEstimator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (backward flow t -> t-1, occlusion mask) for t = 1..T-1 of the input frames."""
    inputs = iter(inputs)
    previous = next(inputs, None)
    for current in inputs:
        motion = estimate_motion(estimator, previous, current, _CPU)
        yield motion.backward, motion.mask
        previous = current


def _given_motion(flows: Iterable[np.ndarray]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (backward flow, in-frame mask) for ground-truth flows, which need no occlusion test."""
    for flow in flows:
        backward = flow_to_tensor(flow, _CPU)
        yield backward, in_frame_mask(backward)


def _to_tensor(frame: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 (or float in [0, 1]) RGB frame -> 1 x 3 x H x W float32 tensor in [0, 1]."""
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be H x W x 3 RGB, got shape {frame.shape}")
    if frame.dtype == np.uint8:
        array = frame.astype(np.float32) / 255.0
    elif np.issubdtype(frame.dtype, np.floating):
        array = frame.astype(np.float32)
    else:
        raise ValueError(f"frames must be uint8 or float, got {frame.dtype}")
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
