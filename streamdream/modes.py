"""The stream side of a mode (dream, style), written once: `FrameMode.next_frame` as a warm start.

Every frame after a stream's first carries something of the previous frame over the new one along
the backward flow (`Motion.carry`: where the consistency check failed, inpainted from the trusted
neighbours), in the share `settings.carry` (scaled toward a still's strength by the session's
`StrengthHold`, so a long clip neither burns in nor fades), and then spends a few cheap steps of the
one optimizer from there. What is carried (the change the mode made to the frame: a dream's residual,
a style's strokes) and what the steps are is the mode's own: `carried` and `warm_frame`.

A frame's model work can also be planned without running it (`plan_next_frame`, `plan_first_frame`):
the live engine plans the frames of many streams, then runs the ones that can share a batch together
(`streamdream.scheduler`). A mode whose work is one optimizer call says so by planning an
`OptimizeCall`; anything else is `Deferred` and runs alone.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from .cuda_graphs import GraphCache
from .optimize import Deferred, Work
from .session import FrameMode
from .settings import TemporalSettings


class WarmStartMode(FrameMode):
    """Base of the modes: the `FrameMode` protocol's `next_frame` (its types are declared there)."""

    graphs: GraphCache | None  # this mode's captured steps (CUDA); None: every step eager

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return self.plan_next_frame(image, previous_input, previous_output, motion, settings, generator).run()

    def plan_next_frame(self, image, previous_input, previous_output, motion, settings, generator) -> Work:
        """Warm start: `carried` laid over the new frame along the flow, trusted in the share `settings.carry`."""
        carried = motion.carry(self.carried(previous_input, previous_output))
        return self.warm_work(image, carried, motion.mask * settings.carry, settings, generator)

    def plan_first_frame(self, image: torch.Tensor, generator: torch.Generator) -> Work:
        """`first_frame` (the mode's own) as work to run."""
        return Deferred(lambda: self.first_frame(image, generator))

    def warm_work(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings, generator: torch.Generator) -> Work:
        """`warm_frame` as work to run; a mode whose steps can share a batch with other streams' returns an `OptimizeCall`."""
        return Deferred(lambda: self.warm_frame(image, carried, trust, settings, generator))

    def still_strength(self, image: torch.Tensor) -> float | None:
        """The strength (mean |result - picture|) of this mode's still of a picture like `image`,
        which a stream grown from nothing is held at (`session.StrengthHold`); None: not known."""
        return None

    @abstractmethod
    def carried(self, previous_input: torch.Tensor, previous_output: torch.Tensor) -> torch.Tensor:
        """What of the previous frame is laid over the new one (in the previous frame's geometry)."""

    @abstractmethod
    def warm_frame(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings, generator: torch.Generator) -> torch.Tensor:
        """The new frame's result from `carried` (now in its geometry) and `trust` (1 x 1 x H x W in [0, 1])."""
