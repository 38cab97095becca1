"""One stream's warm state: the previous frame in and out, the motion between frames, the carry rule.

A video or webcam stream is processed frame by frame. The first frame (and every scene cut, and
every frame with `independent=True`) starts fresh: the mode's full still treatment, or for live
presets the cheap per-frame settings with nothing carried. Every later frame is warm-started: the
previous result is carried along the backward optical flow, kept only where the forward-backward
check trusts the flow, and the mode then spends a few cheap iterations on it. Which tensor is
carried (a dream residual, a stylized frame) is the mode's business; this module only owns state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from .convert import to_rgb, to_tensor
from .errors import StreamdreamError
from .optimize import make_generator
from .temporal import FlowEstimator, FramePairFlows, Motion, frame_flows, motion_from_flows, no_motion


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
    scene_cut: float = 0.3  # below this share of trusted flow pixels the carry is dropped (a cut)
    fresh_start: str = "still"  # first frames and cuts: "still" (full still quality) or "frame" (frame settings, nothing carried)

    def __post_init__(self) -> None:
        if not 0.0 <= self.carry <= 1.0:
            raise StreamdreamError(f"carry must be between 0 and 1, got {self.carry}")
        if self.frame_iterations < 0 or self.frame_octaves < 1:
            raise StreamdreamError("frame iterations must be >= 0 and frame octaves >= 1")
        if self.flow not in ("dis", "none"):
            raise StreamdreamError(f"unknown flow method {self.flow!r}; use dis or none")
        if self.fresh_start not in ("still", "frame"):
            raise StreamdreamError(f"fresh_start must be still or frame, got {self.fresh_start!r}")
        if not 0.0 < self.flow_scale <= 1.0:
            raise StreamdreamError(f"flow scale must be in (0, 1], got {self.flow_scale}")

    def with_(self, **changes) -> TemporalSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS: dict[str, TemporalSettings] = {
    # Live on a CPU: one cheap step per frame, coarse fast flow, and no multi-second still dream on
    # the first frame or after a cut (the picture would freeze); the dream builds up over frames.
    "fast": TemporalSettings(frame_iterations=1, frame_octaves=1, flow_preset="ultrafast", flow_scale=0.5, fresh_start="frame"),
    "balanced": TemporalSettings(),
    "quality": TemporalSettings(frame_iterations=5, frame_octaves=3, flow_preset="medium", flow_scale=1.0),
}


def preset(name: str) -> TemporalSettings:
    try:
        return PRESETS[name]
    except KeyError:
        raise StreamdreamError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}") from None


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


@dataclass
class FrameTimings:
    """Where the last frame's time went, in milliseconds (CUDA work is waited for before timing)."""

    flow_ms: float = 0.0
    optimize_ms: float = 0.0
    io_ms: float = 0.0


class StreamSession:
    """One stream's warm state. Feed frames in order with `process`; `reset` forgets the past.

    `settings` may be replaced between frames (a UI slider, a preset switch) without losing the
    warm state. A frame whose flow is trusted on less than `settings.scene_cut` of its pixels is a
    cut (or a flash, or a jump): it is processed afresh, like a first frame, and counted in `cuts`.
    """

    def __init__(self, mode: FrameMode, settings: TemporalSettings | None = None, *, seed: int | None = 0) -> None:
        self.mode = mode
        self.generator = make_generator(seed)
        self.frames = 0
        self.cuts = 0
        self.timings = FrameTimings()
        self._previous: tuple[np.ndarray, torch.Tensor, torch.Tensor] | None = None
        self.settings = settings or TemporalSettings()

    @property
    def settings(self) -> TemporalSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: TemporalSettings) -> None:
        self._settings = settings
        self.flow = FlowEstimator(settings.flow_preset, settings.flow_scale)

    def reset(self) -> None:
        self._previous = None

    def _carries_from(self, previous: np.ndarray | None, current: np.ndarray) -> bool:
        """Whether `current` can be warm-started from the input frame before it."""
        return previous is not None and previous.shape == current.shape and not self.settings.independent

    def wants_flow(self, previous: np.ndarray | None, current: np.ndarray) -> bool:
        """Whether this frame will be warm-started along an optical flow from `previous`."""
        return self._carries_from(previous, current) and self.settings.flow == "dis"

    def process(self, rgb: np.ndarray, flows: FramePairFlows | None = None) -> np.ndarray:
        """The next frame's result, H x W x 3 uint8 in and out.

        `flows` between the previous and this input frame may be computed ahead on another thread
        (see `streamdream.pipeline`); otherwise they are computed here when needed.
        """
        started = time.perf_counter()
        image = to_tensor(rgb, self.mode.device)
        converted = time.perf_counter()
        motion = self._motion(rgb, flows)
        flowed = time.perf_counter()
        if motion is not None:
            _, previous_input, previous_output = self._previous
            out = self.mode.next_frame(image, previous_input, previous_output, motion, self.settings, self.generator)
        elif self.settings.fresh_start == "frame":  # per-frame settings with nothing carried
            nothing = no_motion(*rgb.shape[:2], self.mode.device, trusted=False)
            out = self.mode.next_frame(image, image, image, nothing, self.settings, self.generator)
        else:
            out = self.mode.first_frame(image, self.generator)
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        optimized = time.perf_counter()
        result = to_rgb(out)
        self._previous = (rgb, image, out)
        self.frames += 1
        finished = time.perf_counter()
        self.timings = FrameTimings(
            flow_ms=1000 * (flowed - converted),
            optimize_ms=1000 * (optimized - flowed),
            io_ms=1000 * (converted - started + finished - optimized),
        )
        return result

    def _motion(self, rgb: np.ndarray, flows: FramePairFlows | None) -> Motion | None:
        """The motion to warm-start from, or None when this frame starts afresh."""
        previous = self._previous
        if previous is None or not self._carries_from(previous[0], rgb):
            return None
        if self.settings.flow == "none":
            return no_motion(*rgb.shape[:2], self.mode.device)
        if flows is None:
            flows = frame_flows(self.flow, previous[0], rgb, check=self.settings.check)
        motion = motion_from_flows(flows, self.mode.device)
        if float(motion.mask.mean()) < self.settings.scene_cut:
            self.cuts += 1
            return None
        return motion
