"""The stream side of a mode (dream, style), written once: `FrameMode.next_frame` as a warm start.

Every frame after a stream's first carries something of the previous frame over the new one along
the backward flow (`Motion.carry`), trusted where the consistency check passed and in the share
`settings.carry` (below 1 a long clip settles instead of burning in), and then spends a few cheap
steps of the one optimizer from there. What is carried (a dream's residual, a styled frame) and
what the steps are is the mode's own: `carried` and `warm_frame`.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from .cuda_graphs import GraphCache
from .session import FrameMode
from .settings import TemporalSettings


class WarmStartMode(FrameMode):
    """Base of the modes: the `FrameMode` protocol's `next_frame` (its types are declared there)."""

    graphs: GraphCache | None  # this mode's captured steps (CUDA); None: every step eager

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        """Warm start: `carried` laid over the new frame along the flow, trusted in the share `settings.carry`."""
        carried = motion.carry(self.carried(previous_input, previous_output))
        return self.warm_frame(image, carried, motion.mask * settings.carry, settings, generator)

    @abstractmethod
    def carried(self, previous_input: torch.Tensor, previous_output: torch.Tensor) -> torch.Tensor:
        """What of the previous frame is laid over the new one (in the previous frame's geometry)."""

    @abstractmethod
    def warm_frame(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings, generator: torch.Generator) -> torch.Tensor:
        """The new frame's result from `carried` (now in its geometry) and `trust` (1 x 1 x H x W in [0, 1])."""
