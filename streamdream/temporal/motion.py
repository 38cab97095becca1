"""Motion between two consecutive frames: where each current pixel was, and whether to trust it.

The carry rule of every warm-started mode needs the same two things from a frame pair: the
backward flow (current -> previous) to lay the previous result over the current frame, and the
forward-backward certainty mask that says where doing so is right. Flow runs on the CPU (DIS);
the tensors land on the working device, where the warping happens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .consistency import occlusion_mask
from .flow import FlowEstimator, flow_to_tensor
from .warp import warp


@dataclass(frozen=True)
class Motion:
    backward: torch.Tensor  # 1 x 2 x H x W flow current -> previous, pixels
    mask: torch.Tensor  # 1 x 1 x H x W certainty in {0, 1}

    def carry(self, previous: torch.Tensor) -> torch.Tensor:
        """Lay a tensor of the previous frame (an output, a residual) over the current frame."""
        return warp(previous, self.backward)


def estimate_motion(estimator: FlowEstimator, previous: np.ndarray, current: np.ndarray, device: torch.device | str = "cpu", *, check: bool = True) -> Motion:
    """Flow both ways between two uint8 RGB frames and the Ruder et al. certainty of the backward one.

    `check=False` skips the forward flow and trusts every pixel that stays in frame: half the flow
    cost, and the ablation that shows what the consistency check is worth.
    """
    backward = flow_to_tensor(estimator(current, previous), device)
    if not check:
        return Motion(backward, torch.ones_like(backward[:, :1]))
    forward = flow_to_tensor(estimator(previous, current), device)
    return Motion(backward, occlusion_mask(forward, backward))


def no_motion(height: int, width: int, device: torch.device | str = "cpu") -> Motion:
    """Zero flow, everything trusted: carrying in place, for `--flow none`."""
    return Motion(torch.zeros(1, 2, height, width, device=device), torch.ones(1, 1, height, width, device=device))
