"""One stream's warm state: the previous frame in and out, the motion between frames, the carry rule.

A video or webcam stream is processed frame by frame. The first frame (and every frame with
`independent=True`) gets the mode's full still treatment. Every later frame is warm-started: the
previous result is carried along the backward optical flow, kept only where the forward-backward
check trusts the flow, and the mode then spends a few cheap iterations on it. Which tensor is
carried (a dream residual, a stylized frame) is the mode's business; this module only owns state.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from .convert import to_rgb, to_tensor
from .errors import StreamdreamError
from .optimize import make_generator
from .temporal import FlowEstimator, Motion, estimate_motion, no_motion


@dataclass(frozen=True)
class TemporalSettings:
    """How frames after the first are made (defaults chosen by `benchmarks/temporal.py`)."""

    carry: float = 0.9  # share of the previous result carried over; < 1 lets a long clip settle instead of burning in
    frame_iterations: int = 3
    frame_octaves: int = 2
    flow: str = "dis"  # "dis" (OpenCV DIS optical flow) or "none" (carry in place)
    flow_preset: str = "fast"
    flow_scale: float = 0.5  # flow is computed at this fraction of the frame size
    check: bool = True  # forward-backward consistency mask (Ruder et al. 2016)
    independent: bool = False  # every frame from scratch with the still settings: the flicker baseline

    def __post_init__(self) -> None:
        if not 0.0 <= self.carry <= 1.0:
            raise StreamdreamError(f"carry must be between 0 and 1, got {self.carry}")
        if self.frame_iterations < 0 or self.frame_octaves < 1:
            raise StreamdreamError("frame iterations must be >= 0 and frame octaves >= 1")
        if self.flow not in ("dis", "none"):
            raise StreamdreamError(f"unknown flow method {self.flow!r}; use dis or none")
        if not 0.0 < self.flow_scale <= 1.0:
            raise StreamdreamError(f"flow scale must be in (0, 1], got {self.flow_scale}")

    def with_(self, **changes) -> TemporalSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class FrameMode(Protocol):
    """What a mode (dream, style) provides to run on a stream."""

    device: torch.device

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def next_frame(
        self,
        image: torch.Tensor,
        previous_input: torch.Tensor,
        previous_output: torch.Tensor,
        motion: Motion,
        settings: TemporalSettings,
        generator: torch.Generator,
    ) -> torch.Tensor: ...


class StreamSession:
    """Feed frames in order with `process`; `reset` forgets the past (a new clip, a scene cut)."""

    def __init__(self, mode: FrameMode, settings: TemporalSettings | None = None, *, seed: int | None = 0) -> None:
        self.mode = mode
        self.settings = settings or TemporalSettings()
        self.generator = make_generator(seed)
        self.flow = FlowEstimator(self.settings.flow_preset, self.settings.flow_scale)
        self.frames = 0
        self._previous: tuple[np.ndarray, torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        self._previous = None

    def process(self, rgb: np.ndarray) -> np.ndarray:
        """The next frame's result, H x W x 3 uint8 in and out."""
        image = to_tensor(rgb, self.mode.device)
        previous = self._previous
        if previous is None or self.settings.independent or previous[0].shape != rgb.shape:
            out = self.mode.first_frame(image, self.generator)
        else:
            previous_rgb, previous_input, previous_output = previous
            motion = self._motion(previous_rgb, rgb)
            out = self.mode.next_frame(image, previous_input, previous_output, motion, self.settings, self.generator)
        self._previous = (rgb, image, out)
        self.frames += 1
        return to_rgb(out)

    def _motion(self, previous: np.ndarray, current: np.ndarray) -> Motion:
        if self.settings.flow == "none":
            return no_motion(*current.shape[:2], self.mode.device)
        return estimate_motion(self.flow, previous, current, self.mode.device, check=self.settings.check)
