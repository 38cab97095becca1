"""Motion between two consecutive frames: where each current pixel was, and whether to trust it.

The carry rule of every warm-started mode needs the same two things from a frame pair: the
backward flow (current -> previous) to lay the previous result over the current frame, and the
forward-backward certainty mask that says where doing so is right. The flow is computed on the CPU
(DIS) and can run on another thread ahead of the optimizer (`frame_flows`); the tensors are then
made on the working device, where warping and the mask happen (`motion_from_flows`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .consistency import occlusion_mask
from .flow import FlowEstimator, flow_to_tensor
from .warp import warp


@dataclass(frozen=True)
class FramePairFlows:
    """CPU flows of one frame pair: backward (current -> previous) and, if checked, forward."""

    backward: np.ndarray
    forward: np.ndarray | None


@dataclass(frozen=True)
class Motion:
    backward: torch.Tensor  # 1 x 2 x H x W flow current -> previous, pixels
    mask: torch.Tensor  # 1 x 1 x H x W certainty in {0, 1}

    def carry(self, previous: torch.Tensor) -> torch.Tensor:
        """Lay a tensor of the previous frame (an output, a residual) over the current frame."""
        return warp(previous, self.backward)


def frame_flows(estimator: FlowEstimator, previous: np.ndarray, current: np.ndarray, *, check: bool = True) -> FramePairFlows:
    """DIS flow both ways between two uint8 RGB frames (forward only when the check needs it)."""
    return FramePairFlows(estimator(current, previous), estimator(previous, current) if check else None)


def motion_from_flows(flows: FramePairFlows, device: torch.device | str = "cpu") -> Motion:
    """Flows on the device plus the Ruder et al. certainty of the backward one.

    Without a forward flow every pixel that stays in frame is trusted: half the flow cost, and the
    ablation that shows what the consistency check is worth.
    """
    backward = flow_to_tensor(flows.backward, device)
    if flows.forward is None:
        return Motion(backward, torch.ones_like(backward[:, :1]))
    return Motion(backward, occlusion_mask(flow_to_tensor(flows.forward, device), backward))


def estimate_motion(estimator: FlowEstimator, previous: np.ndarray, current: np.ndarray, device: torch.device | str = "cpu", *, check: bool = True) -> Motion:
    """`frame_flows` then `motion_from_flows`, for callers with nothing to overlap."""
    return motion_from_flows(frame_flows(estimator, previous, current, check=check), device)


def no_motion(height: int, width: int, device: torch.device | str = "cpu", *, trusted: bool = True) -> Motion:
    """Zero flow: carrying in place (`--flow none`), or with `trusted=False` carrying nothing at all."""
    mask = torch.full((1, 1, height, width), float(trusted), device=device)
    return Motion(torch.zeros(1, 2, height, width, device=device), mask)
